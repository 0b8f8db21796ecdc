"""Training step time of a config with its data loaded in N worker processes, side by side.

On a machine with few cores, loader workers compete with torch's compute threads; this measures
the whole step (loading included) and the loader alone, for each worker count, in one run:

    python benchmarks/train_loader_workers.py --config visionkit/configs/yolo_v1_shapes.yaml --workers 0 1 2
"""

from __future__ import annotations

import argparse
import time

import torch

from visionkit.checkpoints import place_model
from visionkit.config import load_config
from visionkit.data import build_dataloader, build_dataset
from visionkit.models import build_model, model_task


def measure(config: str, workers: int, iterations: int) -> tuple[float, float]:
    """Seconds per training iteration (loading included) and per batch of the loader alone."""
    cfg = load_config(config, [f"data.num_workers={workers}"])
    task = model_task(cfg.model.name)
    size = tuple(cfg.model.input_size)
    dataset = build_dataset(cfg.data.train, cfg.data.augment, size, train=True, task=task)
    loader = build_dataloader(dataset, cfg.data.batch_size, workers, shuffle=True)
    model = place_model(build_model(cfg.model), torch.device("cpu"), cfg.train.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), cfg.train.lr)
    batches = iter(loader)
    for i in range(iterations + 3):  # 3 warm-up iterations
        if i == 3:
            start = time.perf_counter()
        images, targets = next(batches)
        loss = sum(model.loss(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    step = (time.perf_counter() - start) / iterations
    start = time.perf_counter()
    for _ in range(iterations):
        next(batches)
    return step, (time.perf_counter() - start) / iterations


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default="visionkit/configs/yolo_v1_shapes.yaml")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=50)
    args = p.parse_args()
    print(
        f"| workers | s / iteration | loader alone, s / batch | (torch threads: {torch.get_num_threads()})"
    )
    print("| --- | --- | --- |")
    for w in args.workers:
        step, load = measure(args.config, w, args.iterations)
        print(f"| {w} | {step:.3f} | {load:.3f} |", flush=True)


if __name__ == "__main__":
    main()
