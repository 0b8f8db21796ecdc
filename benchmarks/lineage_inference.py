"""Inference time per image across the R-CNN lineage, end to end, side by side in one run.

For each run folder (``config.yaml`` and a checkpoint, as ``tools/train.py`` writes them), builds
the model, loads the checkpoint and times ``model.predict`` on the same validation images, one
image per call (latency, not throughput). Fast R-CNN, SPPNet and R-CNN get no precomputed
proposals here, so their time includes visionkit's selective search on the image, as a user
applying them to a new image pays it. Models run in turn on each image, so drifts in the
machine's load hit all alike. Prints a markdown table with each model's seconds per image and
its ratio to the first run's.

    python benchmarks/lineage_inference.py runs/faster_rcnn_shapes runs/fast_rcnn_shapes \\
        runs/sppnet_shapes runs/rcnn_shapes --images 30
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from visionkit.checkpoints import load_checkpoint, load_model_weights
from visionkit.config import load_config
from visionkit.data import build_dataset
from visionkit.models import build_model


def load_run(run: Path, weights: str) -> tuple[str, torch.nn.Module]:
    """(model name, the run's model in eval mode with ``weights`` loaded)."""
    cfg = load_config(run / "config.yaml", [])
    model = build_model(cfg.model)
    path = run / weights
    load_model_weights(model, load_checkpoint(path), cfg.model.name, str(path))
    return cfg.model.name, model.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run folders; the first is the reference")
    p.add_argument("--weights", default="best.pth", help="checkpoint file name in each run")
    p.add_argument("--images", type=int, default=30, help="validation images to time")
    args = p.parse_args()
    models = [load_run(run, args.weights) for run in args.runs]
    cfg = load_config(args.runs[0] / "config.yaml", [])
    val = build_dataset(cfg.data.val, cfg.data.augment, None, train=False, task="detection")
    seconds = [0.0] * len(models)
    with torch.inference_mode():
        for i in range(min(args.images, len(val))):
            image = val[i][0]
            for k, (_, model) in enumerate(models):
                start = time.perf_counter()
                model.predict([image])
                seconds[k] += time.perf_counter() - start
    count = min(args.images, len(val))
    print(f"{count} shapes val images, one per call, {torch.get_num_threads()} threads\n")
    print("| run | model | seconds per image | ratio |\n|---|---|---|---|")
    for run, (name, _), total in zip(args.runs, models, seconds, strict=True):
        print(f"| {run} | {name} | {total / count:.3f} | {total / seconds[0]:.1f} |")


if __name__ == "__main__":
    main()
