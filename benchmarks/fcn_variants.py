"""FCN-32s, -16s and -8s trained with one schedule, side by side as the FCN paper's Table 2: the
four region metrics, boundary quality, training minutes and inference time, as a markdown table.

    python benchmarks/fcn_variants.py                         # visionkit/configs/fcn8s_shapes.yaml
    python benchmarks/fcn_variants.py --epochs 10 --variants 32s 8s train.device=cuda
    python benchmarks/fcn_variants.py --skip-train            # tabulate runs/fcn_variants again

Each variant is one ``tools/train.py`` process, one after the other, into
``<output-root>/<variant>``, with the config, the passthrough overrides, ``train.epochs`` (with
``--epochs``), ``model.fcn.variant`` and ``model.backbone.out_features``: the config's last 1
(32s), 2 (16s) or 3 (8s) levels, or ``[]`` (the model picks the levels) when the config names
none. Everything else, the schedule included, is the same for all. Relative paths (``--config``,
``--output-root``) are from the repository root; an existing run directory is an error unless
``--skip-train`` only tabulates it.

Columns, from the run's last evaluation in ``metrics.jsonl`` (``--record best``: the one with the
highest mean IU): pixel accuracy, mean accuracy, mean IU, frequency-weighted IU (``sem_seg/pACC``,
``mACC``, ``mIoU``, ``fwIoU``), ``bIoU@w``: mean IU within ``w`` px of a ground-truth label edge
(the trimap measure, ``visionkit/evaluation/sem_seg.py``), training minutes (the wall clock of the
``train.py`` process: start-up, data and evaluations included; kept in ``<run>/benchmark.json``)
and ``speed/ms_per_image``: ``model.predict`` per validation image in that evaluation.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from visionkit.config import load_config
from visionkit.errors import ConfigError, DataError, VisionkitError
from visionkit.models.segmentors.fcn import NUM_LEVELS
from visionkit.utils.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("32s", "16s", "8s")
REGION_COLUMNS = (
    ("pixel acc.", "sem_seg/pACC"), ("mean acc.", "sem_seg/mACC"), ("mean IU", "sem_seg/mIoU"),
    ("f.w. IU", "sem_seg/fwIoU"),
)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default="visionkit/configs/fcn8s_shapes.yaml", help="an FCN config")
    p.add_argument("--epochs", type=int, help="train.epochs for every variant (default: config's)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--output-root", default="runs/fcn_variants", help="runs go to <root>/<variant>")
    p.add_argument(
        "--record", choices=("last", "best"), default="last",
        help="which evaluation of each run: the last one, or the one with the best mean IU",
    )  # fmt: skip
    p.add_argument("--skip-train", action="store_true", help="only tabulate the existing runs")
    p.add_argument("overrides", nargs="*", help="dotted config overrides for every variant")
    return p.parse_args(argv)


def level_override(out_features: list[str], variant: str) -> str:
    """``model.backbone.out_features=[...]`` for ``variant``: the last ``NUM_LEVELS[variant]`` of
    the config's levels (``[]`` stays ``[]``)."""
    n = NUM_LEVELS[variant]
    if out_features and len(out_features) < n:
        raise ConfigError(
            f"FCN-{variant} fuses {n} levels; model.backbone.out_features names only "
            f"{len(out_features)} ({', '.join(out_features)})"
        )
    return f"model.backbone.out_features=[{','.join(out_features[-n:] if out_features else [])}]"


def train_command(args: argparse.Namespace, out_features: list[str], variant: str) -> list[str]:
    """The ``tools/train.py`` argument list (after the interpreter) of one variant's run."""
    epochs = [f"train.epochs={args.epochs}"] if args.epochs is not None else []
    return [
        "tools/train.py", "--config", args.config, "--output-dir", run_dir(args, variant),
        "--no-progress", *args.overrides, *epochs, f"model.fcn.variant={variant}",
        level_override(out_features, variant),
    ]  # fmt: skip


def run_dir(args: argparse.Namespace, variant: str) -> str:
    """``<output-root>/<variant>``, as given (relative: to the repository root)."""
    return str(Path(args.output_root) / variant)


def train(args: argparse.Namespace, variant: str, command: list[str]) -> None:
    """Run ``command`` (its output on stderr) and record its wall clock in
    ``<run>/benchmark.json``: ``{"train_minutes": float, "command": str}``."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *command], cwd=ROOT, stdout=sys.stderr)
    minutes = (time.perf_counter() - start) / 60
    if proc.returncode:
        raise VisionkitError(f"FCN-{variant}: tools/train.py exited with {proc.returncode}")
    info = {"train_minutes": minutes, "command": shlex.join(["python", *command])}
    (ROOT / run_dir(args, variant) / "benchmark.json").write_text(json.dumps(info, indent=2))


def read_run(path: Path, record: str) -> dict[str, Any]:
    """The evaluation record of the run in ``path`` (``metrics.jsonl``: flat ``sem_seg/*`` and
    ``speed/*`` floats, ``epoch``) chosen by ``record``, plus ``train_minutes`` and ``command``
    from ``benchmark.json`` when present (NaN and ``""`` otherwise)."""
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise DataError(f"{metrics}: no such file (train it first, without --skip-train)")
    lines = metrics.read_text().splitlines()
    evals = [r for r in map(json.loads, lines) if "sem_seg/mIoU" in r]
    if not evals:
        raise DataError(f"{metrics}: no sem_seg evaluation")
    if record == "best":
        finite = [r for r in evals if math.isfinite(r["sem_seg/mIoU"])] or evals
        chosen = max(finite, key=lambda r: r["sem_seg/mIoU"])
    else:
        chosen = evals[-1]
    side = path / "benchmark.json"
    info = json.loads(side.read_text()) if side.is_file() else {}
    return chosen | {
        "train_minutes": info.get("train_minutes", math.nan),
        "command": info.get("command", ""),
    }


def _cell(v: float | None, digits: int = 1) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.{digits}f}"


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """A markdown table, one row per variant; a ``bIoU@w`` column per width the runs logged."""
    widths = sorted(
        {k.removeprefix("sem_seg/bIoU@") for r in rows.values() for k in r if "/bIoU@" in k},
        key=int,
    )
    header = ["variant", "epoch", *(name for name, _ in REGION_COLUMNS)]
    header += [f"bIoU@{w}" for w in widths] + ["train min", "infer ms/image"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for variant, r in rows.items():
        cells = [f"FCN-{variant}", str(r.get("epoch", "-"))]
        cells += [_cell(r.get(key)) for _, key in REGION_COLUMNS]
        cells += [_cell(r.get(f"sem_seg/bIoU@{w}")) for w in widths]
        cells += [_cell(r["train_minutes"], 2), _cell(r.get("speed/ms_per_image"), 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    cfg = load_config(ROOT / args.config, args.overrides)
    if cfg.model.name != "fcn":
        raise ConfigError(f"{args.config} builds '{cfg.model.name}', not an FCN")
    out_features = list(cfg.model.backbone.out_features)
    commands = {v: train_command(args, out_features, v) for v in args.variants}
    if not args.skip_train:
        held = [run_dir(args, v) for v in args.variants if (ROOT / run_dir(args, v)).exists()]
        if held:
            raise VisionkitError(
                f"{', '.join(held)} already exist; tabulate them with --skip-train or choose "
                "another --output-root"
            )
        for variant, command in commands.items():
            train(args, variant, command)
    rows = {v: read_run(ROOT / run_dir(args, v), args.record) for v in args.variants}
    print(f"command: python {shlex.join(['benchmarks/fcn_variants.py', *given])}")
    print(f"{args.record} evaluation of each run; bIoU@w: mean IU within w px of a label edge\n")
    print(format_table(rows))
    print()
    for variant, r in rows.items():
        print(f"- FCN-{variant}: {r['command'] or shlex.join(['python', *commands[variant]])}")
    return 0


if __name__ == "__main__":
    run_cli(main)
