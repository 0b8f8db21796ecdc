"""Training speed under bfloat16 autocast against float32, per quick config, side by side in one
run: the same model, optimizer and batches, the two precisions alternating round by round (so a
machine's drift hits both), the median round of each reported with their ratio.

    python benchmarks/amp_speed.py                       # every visionkit/configs/*_shapes.yaml
    python benchmarks/amp_speed.py --config visionkit/configs/yolo_v1_shapes.yaml --rounds 5 --steps 10
    python benchmarks/amp_speed.py --device cuda         # bf16 autocast on a GPU

A "bf16 / fp32" above 1 means bfloat16 trains faster. On CPUs without native bfloat16 arithmetic
(no AVX512-BF16 / AMX) autocast mostly adds conversions; on CUDA tensor cores it is the fast path.
Fast R-CNN, SPPNet and R-CNN need the selective-search cache: ``--with-proposals``.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
from throughput import PROPOSAL_MODELS, ROOT, device_name, fetch, size_label, sized, timed

from visionkit.checkpoints import place_model, select_device
from visionkit.config.schema import Config
from visionkit.data import build_dataset
from visionkit.engine.optim import build_optimizer
from visionkit.models import build_model, model_task

COLUMNS = ("config", "model", "size", "batch", "fp32 img/s", "bf16 img/s", "bf16 / fp32")


def measure(cfg: Config, args: argparse.Namespace, device: torch.device) -> dict[str, str]:
    """Training images per second of ``cfg`` in float32 and under bf16 autocast."""
    task, size = model_task(cfg.model.name), tuple(cfg.model.input_size)
    batch = args.batch_size or cfg.data.batch_size
    dataset = build_dataset(cfg.data.train, cfg.data.augment, size, True, task)
    batches = fetch(dataset, batch, args.steps, device)
    torch.manual_seed(0)
    model = place_model(build_model(cfg.model), device, cfg.train.channels_last).train()
    optimizer = build_optimizer(cfg.train, model)
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}

    def step(amp: str, images_targets: tuple[list, list]) -> None:
        context = torch.autocast(device.type, torch.bfloat16) if amp == "bf16" else nullcontext()
        with context:
            losses = model.loss(*images_targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    for _ in range(args.rounds):
        for amp in rates:
            rates[amp].append(
                timed(lambda b, a=amp: step(a, b), batches, args.warmup, args.steps, device)
            )
    fp32, bf16 = (statistics.median(rates[a]) for a in ("fp32", "bf16"))
    return {
        "model": cfg.model.name, "size": size_label(cfg), "batch": str(batch),
        "fp32 img/s": f"{fp32:.1f}", "bf16 img/s": f"{bf16:.1f}", "bf16 / fp32": f"{bf16 / fp32:.2f}",
    }  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", action="append", help="a config, repeatable (default: quick ones)")
    p.add_argument("--batch-size", type=int, help="training batch (default: the config's)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per precision")
    p.add_argument("--steps", type=int, default=10, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before each round")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--with-proposals", action="store_true", help="measure fast_rcnn/sppnet/rcnn")
    p.add_argument("overrides", nargs="*", help="dotted config overrides for every config")
    args = p.parse_args(argv)
    args.config = args.config or [
        str(path.relative_to(ROOT)) for path in sorted(ROOT.glob("visionkit/configs/*_shapes.yaml"))
    ]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = select_device(args.device)
    given = sys.argv[1:] if argv is None else argv
    print(f"command: python {shlex.join(['benchmarks/amp_speed.py', *given])}")
    print(
        f"device: {device_name(device)}; torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads; {args.rounds} rounds x {args.steps} timed steps per precision\n"
    )
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + " --- |" * len(COLUMNS), flush=True)
    notes = []
    for config in args.config:
        cfg = sized(config, None, args.overrides)
        if cfg.model.name in PROPOSAL_MODELS and not args.with_proposals:
            notes.append(f"{Path(config).name}: skipped (selective-search proposals: "
                         "--with-proposals)")  # fmt: skip
            continue
        row = {"config": Path(config).name} | measure(cfg, args, device)
        print("| " + " | ".join(row[c] for c in COLUMNS) + " |", flush=True)
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
