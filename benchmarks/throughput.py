"""Images per second of each model (training step, batched inference) and of its data pipeline
with 0, 1 and 2 loader workers, side by side in one run, as a markdown table.

    python benchmarks/throughput.py                                   # every visionkit/configs/*_shapes.yaml
    python benchmarks/throughput.py --config visionkit/configs/yolo_v1_shapes.yaml --sizes 192 256
    python benchmarks/throughput.py --config visionkit/configs/fcn8s_shapes.yaml --config visionkit/configs/...
    python benchmarks/throughput.py --amp --channels-last --compile   # bf16, NHWC, compiled
    python benchmarks/throughput.py --quick --config visionkit/configs/yolo_v1_shapes.yaml data.batch_size=4

- train img/s: forward + backward + optimizer step (the config's optimizer) on batches loaded
  beforehand, so that loading is not counted; the loader columns time loading alone (the
  training transform, collation; no model), after worker start-up. "loader / train" is the best
  loader figure over the training one: loading keeps up with training while it is above 1
  (issue 6 asks for 2 on the quick configs).
- infer img/s: ``model.predict`` on batches of validation images at their own size, in eval mode
  under ``torch.inference_mode`` (untrained weights: two-stage detectors keep many boxes).
- memory: CUDA: ``torch.cuda.max_memory_allocated`` during the phase; CPU: the growth of the
  process's resident set from before the model was built to the end of the phase (rough:
  allocator caches count).
- ``--sizes S``: square ``model.input_size`` S (models with ``input_size: []``: ``resize.min_size``
  and ``max_size`` S; R-CNN: ``rcnn.warp_size`` S); default the config's own.
- Fast R-CNN, SPPNet and R-CNN train on selective-search proposals from the disk cache, which the
  first run computes (about 25 core-minutes for the shapes splits); they are skipped with a note
  unless ``--with-proposals`` is given.
- ``--compile`` compiles the backbone (and FPN) with ``torch.compile``; heads whose shapes depend
  on the data (proposals, NMS) stay eager. ``--amp``: bf16 autocast, on CUDA or CPU, as in
  training (``benchmarks/amp_speed.py`` compares it with float32 side by side). ``--quick``: 2 timed steps after 1 warm-up, batches of 2, for tests.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import RandomSampler

from visionkit.checkpoints import place_model, select_device
from visionkit.config import load_config
from visionkit.config.schema import Config
from visionkit.data import build_dataloader, build_dataset
from visionkit.engine.optim import build_optimizer
from visionkit.models import build_model, model_task

ROOT = Path(__file__).resolve().parents[1]
PROPOSAL_MODELS = ("fast_rcnn", "sppnet", "rcnn")
COLUMNS = (
    "config", "model", "size", "batch", "train img/s", "train MiB", "infer img/s", "infer MiB",
)  # fmt: skip


def config_parser(description: str) -> argparse.ArgumentParser:
    """The benchmarks' argument parser, with their repeatable ``--config``."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--config", action="append",
        help="a config to measure, repeatable (default: the quick configs, visionkit/configs/*_shapes.yaml)",
    )  # fmt: skip
    return p


def quick_configs() -> list[str]:
    """The quick configs, ``visionkit/configs/*_shapes.yaml``, relative to the repository root."""
    return [
        str(path.relative_to(ROOT)) for path in sorted(ROOT.glob("visionkit/configs/*_shapes.yaml"))
    ]


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model (``/proc/cpuinfo``) with its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return f"{model}, {os.cpu_count()} cores"


def resident_mib() -> float:
    """The process's current resident set in MiB (Linux), else 0."""
    statm = Path("/proc/self/statm")
    if not statm.is_file():
        return 0.0
    return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Memory:
    """Peak memory of one phase: CUDA's allocator peak, or the CPU resident set's growth."""

    def __init__(self, device: torch.device, baseline: float) -> None:
        self.device, self.baseline = device, baseline

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def mib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return max(resident_mib() - self.baseline, 0.0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(batch: tuple[list, list], device: torch.device) -> tuple[list, list]:
    images, targets = batch
    moved = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
    return [img.to(device) for img in images], moved


def sized(config: str, size: int | None, overrides: list[str]) -> Config:
    """``config`` with ``overrides`` and, when given, square input ``size``."""
    cfg = load_config(config, overrides)
    if size is None:
        return cfg
    if cfg.model.name == "rcnn":
        extra = [f"model.rcnn.warp_size={size}"]
    elif cfg.model.input_size:
        extra = [f"model.input_size=[{size},{size}]"]
    else:
        extra = [f"model.resize.min_size={size}", f"model.resize.max_size={size}"]
    return load_config(config, [*overrides, *extra])


def size_label(cfg: Config) -> str:
    """What sets the model's input size: its input, its shorter side, or R-CNN's warp."""
    if cfg.model.name == "rcnn":
        return f"warp {cfg.model.rcnn.warp_size}"
    if cfg.model.input_size:
        return "x".join(map(str, cfg.model.input_size))
    return f"{cfg.model.resize.min_size} (shorter side)"


def loader_rate(dataset: Any, batch: int, workers: int, warmup: int, steps: int) -> float:
    """Images per second of the loader alone (after ``warmup`` batches: workers started)."""
    sampler = RandomSampler(
        dataset, replacement=True, num_samples=(warmup + steps) * batch,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    batches = iter(build_dataloader(dataset, batch, workers, shuffle=False, sampler=sampler))
    for _ in range(warmup):
        next(batches)
    start = time.perf_counter()
    count = sum(len(next(batches)[0]) for _ in range(steps))
    return count / (time.perf_counter() - start)


def timed(
    step: Callable[[tuple[list, list]], None],
    batches: list[tuple[list, list]],
    warmup: int,
    steps: int,
    device: torch.device,
) -> float:
    """Images per second of ``step`` over ``batches`` (cycled), after ``warmup`` calls."""
    for i in range(warmup):
        step(batches[i % len(batches)])
    sync(device)
    start, count = time.perf_counter(), 0
    for i in range(steps):
        batch = batches[i % len(batches)]
        step(batch)
        count += len(batch[0])
    sync(device)
    return count / (time.perf_counter() - start)


def fetch(dataset: Any, batch: int, count: int, device: torch.device) -> list[tuple[list, list]]:
    """``count`` batches (at most 8 distinct, cycled by the callers) moved to ``device``."""
    sampler = RandomSampler(
        dataset, replacement=True, num_samples=min(count, 8) * batch,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    loader = build_dataloader(dataset, batch, 0, shuffle=False, sampler=sampler)
    return [to_device(b, device) for b in loader]


def measure(cfg: Config, args: argparse.Namespace, device: torch.device) -> dict[str, str]:
    """One table row: training, inference and loader throughput of ``cfg``."""
    task, size = model_task(cfg.model.name), tuple(cfg.model.input_size)
    train_batch = args.batch_size or cfg.data.batch_size
    infer_batch = args.batch_size or cfg.eval.batch_size
    train_set = build_dataset(cfg.data.train, cfg.data.augment, size, True, task)
    val_set = build_dataset(cfg.data.val, cfg.data.augment, size, False, task)
    row = {
        "model": cfg.model.name,
        "size": size_label(cfg),
        "batch": f"{train_batch} / {infer_batch}",
    }
    for w in args.workers:
        rate = loader_rate(train_set, train_batch, w, args.warmup, args.steps)
        row[f"loader w{w} img/s"] = f"{rate:.1f}"
    steps = args.warmup + args.steps
    train_batches = fetch(train_set, train_batch, steps, device)
    infer_batches = fetch(val_set, infer_batch, steps, device)

    baseline = resident_mib()
    channels_last = cfg.train.channels_last if args.channels_last is None else args.channels_last
    model = place_model(build_model(cfg.model), device, channels_last)
    if args.compile:
        for name in ("backbone", "neck"):
            if isinstance(getattr(model, name, None), nn.Module):
                getattr(model, name).compile()
    optimizer = build_optimizer(cfg.train, model)
    amp: Callable[[], AbstractContextManager] = (
        (lambda: torch.autocast(device.type, torch.bfloat16)) if args.amp else nullcontext
    )
    memory = Memory(device, baseline)

    def train_step(batch: tuple[list, list]) -> None:
        with amp():
            losses = model.loss(*batch)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    def infer_step(batch: tuple[list, list]) -> None:
        images, targets = batch
        extra = (
            {"proposals": [t["proposals"] for t in targets]} if "proposals" in targets[0] else {}
        )
        with amp():
            model.predict(images, **extra)

    model.train()
    memory.start()
    train_rate = timed(train_step, train_batches, args.warmup, args.steps, device)
    row |= {"train img/s": f"{train_rate:.1f}", "train MiB": f"{memory.mib():.0f}"}
    model.eval()
    memory.start()
    with torch.inference_mode():
        infer_rate = timed(infer_step, infer_batches, args.warmup, args.steps, device)
    row |= {"infer img/s": f"{infer_rate:.1f}", "infer MiB": f"{memory.mib():.0f}"}
    best = max(float(row[f"loader w{w} img/s"]) for w in args.workers)
    row["loader / train"] = f"{best / train_rate:.2f}"
    return row


def rows(args: argparse.Namespace, device: torch.device) -> Iterator[dict[str, str] | str]:
    """A row per config and size, or a note for a config that is skipped."""
    for config in args.config:
        for size in args.sizes or [None]:
            cfg = sized(config, size, args.overrides)
            name = Path(config).name
            if cfg.model.name in PROPOSAL_MODELS and not args.with_proposals:
                yield (
                    f"{name}: skipped ({cfg.model.name} trains on selective-search proposals "
                    "from the disk cache; --with-proposals builds or reads it)"
                )
                break
            yield {"config": name} | measure(cfg, args, device)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = config_parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", help="square input sizes (default: config's)")
    p.add_argument(
        "--batch-size", type=int, help="training and inference batch (default: config's)"
    )
    p.add_argument("--steps", type=int, default=20, help="timed steps (and loader batches)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader workers")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA or CPU)")
    p.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction,
        help="NHWC model (default: the config's train.channels_last)",
    )  # fmt: skip
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone (and FPN)")
    p.add_argument("--with-proposals", action="store_true", help="measure fast_rcnn/sppnet/rcnn")
    p.add_argument("--quick", action="store_true", help="2 steps, 1 warm-up, batches of 2")
    p.add_argument("overrides", nargs="*", help="dotted config overrides for every config")
    args = p.parse_args(argv)
    args.config = args.config or quick_configs()
    if args.quick:
        args.steps, args.warmup, args.batch_size = 2, 1, args.batch_size or 2
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = select_device(args.device)
    amp = "bf16" if args.amp else "off"
    given = sys.argv[1:] if argv is None else argv
    print(f"command: python {shlex.join(['benchmarks/throughput.py', *given])}")
    nhwc = "config's" if args.channels_last is None else args.channels_last
    print(
        f"device: {device_name(device)}; torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads; amp {amp}, channels-last {nhwc}, compile {args.compile}; "
        f"{args.steps} timed steps after {args.warmup}\n"
    )
    columns = [*COLUMNS, *(f"loader w{w} img/s" for w in args.workers), "loader / train"]
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns), flush=True)
    notes = []
    for row in rows(args, device):
        if isinstance(row, str):
            notes.append(row)
            continue
        print("| " + " | ".join(row[c] for c in columns) + " |", flush=True)
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
