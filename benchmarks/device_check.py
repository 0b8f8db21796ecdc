"""One command for the minutes a GPU machine is lent: every CUDA path of the toolkit, checked.

    python benchmarks/device_check.py                     # on a CUDA machine: about 6-8 minutes
    python benchmarks/device_check.py --device cpu --tiny # the same checks on a CPU, tiny data

Each check runs as its own process (one failure does not stop the others), writes its log into
``--output`` (default ``runs/device_check``) and prints one line: PASS/FAIL, what it measured,
its seconds and the code it exercises. ``summary.md`` there collects the lines and the tables.
On a machine without CUDA (and no ``--device cpu``) it exits at once with one line, code 2.

The checks, each mirroring a CPU path the test suite already covers:
- ``cuda-tests``: ``pytest -m cuda`` (tests/test_cuda.py: fp16/bf16 training steps and predict
  of every model, dense outputs equal to the CPU's, the trainer with fp16 and pinned memory);
- ``train <config>``: tools/train.py, every quick config, a few hundred steps with bf16 autocast
  and channels-last on generated data: the loss falls, no NaN (engine/trainer.py);
- ``compile``: benchmarks/throughput.py --compile on YOLOv1 and FCN (torch.compile);
- ``throughput``: benchmarks/throughput.py --amp --channels-last, every quick config;
- ``amp-speed``: benchmarks/amp_speed.py: bf16 against float32 training speed;
- ``eval cpu/cuda``: tools/eval.py on the YOLOv1 checkpoint on the CPU and on the device: the
  COCO numbers agree within 0.1 AP (evaluation/loop.py, evaluation/coco_eval.py);
- ``torchrun``: tools/train.py under torchrun over every GPU present with nccl
  (engine/distributed.py; gloo with 2 processes on a CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from visionkit.config import load_config

ROOT = Path(__file__).resolve().parents[1]
QUICK = sorted(p.name for p in (ROOT / "visionkit" / "configs").glob("*_shapes.yaml"))
PROPOSAL_CONFIGS = ("fast_rcnn_shapes.yaml", "sppnet_shapes.yaml", "rcnn_shapes.yaml")


@dataclass
class Check:
    """One check: a command, what it exercises, and how its outcome is read."""

    name: str
    exercises: str
    command: list[str]
    timeout: int
    read: Callable[[subprocess.CompletedProcess, Path], str] = lambda proc, out: "ok"
    env: dict[str, str] = field(default_factory=dict)


class CheckFailed(Exception):
    """A check ran but its result is wrong (the message says how)."""


def data_overrides(args: argparse.Namespace, config: str) -> list[str]:
    """Small generated splits shared by every check (one shapes cache, one proposal cache)."""
    cache = str(args.output / "data")
    out = [
        f"data.train.root={cache}", f"data.val.root={cache}",
        f"data.train.num_images={args.images}", f"data.val.num_images={args.images // 4}",
        f"data.num_workers={args.workers}",
    ]  # fmt: skip
    if args.tiny:
        out += ["data.train.image_size=96", "data.val.image_size=96"]
    if config in PROPOSAL_CONFIGS:
        cpus = str(os.cpu_count() or 1)
        out += [f"data.train.proposals.workers={cpus}", f"data.val.proposals.workers={cpus}"]
    return out


def losses(run: Path) -> list[float]:
    """The logged training losses of a run, in order."""
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in records if "train/loss" in r]


def read_training(proc: subprocess.CompletedProcess, run: Path) -> str:
    values = losses(run)
    if len(values) < 4 or not all(math.isfinite(v) for v in values):
        raise CheckFailed(f"non-finite or fewer than 4 logged losses: {values[:8]}")
    k = max(1, len(values) // 5)
    first, last = sum(values[:k]) / k, sum(values[-k:]) / k
    if not last < first:
        raise CheckFailed(f"the loss did not fall: {first:.3f} -> {last:.3f}")
    done = proc.stdout.strip().splitlines()[-1]
    best = done.split("; ")[1] if "; " in done else ""
    return f"loss {first:.3f} -> {last:.3f} over {len(values)} logged steps; {best}"


def read_table(proc: subprocess.CompletedProcess, out: Path) -> str:
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ") and "---" not in ln]
    if len(rows) < 2:
        raise CheckFailed("no table rows")
    out.write_text(proc.stdout)
    return f"{len(rows) - 1} rows in {out.name}"


def read_eval_pair(proc: subprocess.CompletedProcess, out: Path) -> str:
    cpu, dev = (json.loads((out / f"eval_{d}.json").read_text())["bbox"] for d in ("cpu", "dev"))
    gaps = {k: abs(cpu[k] - dev[k]) for k in ("AP", "AP50", "AP75")}
    if max(gaps.values()) > 0.1:
        raise CheckFailed(f"CPU and device disagree: {cpu} vs {dev}")
    return f"AP {cpu['AP']:.2f} / {dev['AP']:.2f}, largest gap {max(gaps.values()):.3f} AP"


def read_pytest(proc: subprocess.CompletedProcess, out: Path) -> str:
    """pytest's count line (``12 passed, 4 skipped in 30 s``)."""
    counts = [ln for ln in proc.stdout.splitlines() if re.search(r"\d+ (passed|skipped)", ln)]
    return counts[-1].strip(" =") if counts else "no count line"


def checks(args: argparse.Namespace) -> list[Check]:
    py, out, dev = sys.executable, args.output, args.device
    amp = ["train.amp=bf16", "train.channels_last=true", f"train.device={dev}"]
    log = f"train.log_every={1 if args.tiny else 5}"
    listed = []
    listed.append(Check(
        "cuda-tests", "tests/test_cuda.py",
        [py, "-m", "pytest", "-m", "cuda", str(ROOT / "tests"), "-p", "no:cacheprovider",
         "-rs"], 300, read_pytest,
    ))  # fmt: skip
    for config in args.configs:
        run = out / f"train_{Path(config).stem}"
        batch = load_config(ROOT / "visionkit" / "configs" / config).data.batch_size
        epochs = max(1, math.ceil(args.steps / max(1, args.images // batch)))
        listed.append(Check(
            f"train {Path(config).stem}", f"tools/train.py, visionkit/engine/trainer.py ({config})",
            [py, str(ROOT / "tools/train.py"), "--config", str(ROOT / "visionkit" / "configs" / config),
             "--output-dir", str(run), "--no-progress", *data_overrides(args, config), *amp,
             f"train.epochs={epochs}", "train.eval_every=0", log],
            args.per_check, lambda proc, _o, run=run: read_training(proc, run),
        ))  # fmt: skip
    bench = ["--device", dev, "--amp", "--channels-last", "--steps", str(args.bench_steps)]
    yolo_fcn = [
        "--config",
        "visionkit/configs/yolo_v1_shapes.yaml",
        "--config",
        "visionkit/configs/fcn8s_shapes.yaml",
    ]
    small = data_overrides(args, "")
    listed.append(Check(
        "compile", "benchmarks/throughput.py --compile (torch.compile of backbone and FPN)",
        [py, str(ROOT / "benchmarks/throughput.py"), *bench, "--compile", "--workers", "0",
         *yolo_fcn, *small], 2 * args.per_check,  # compiling takes a minute or two
        lambda proc, o: read_table(proc, o / "compile.md"),
    ))  # fmt: skip
    listed.append(Check(
        "throughput", "benchmarks/throughput.py --amp --channels-last",
        [py, str(ROOT / "benchmarks/throughput.py"), *bench, "--with-proposals", "--workers",
         "0", str(args.workers), *[a for c in args.configs for a in ("--config", f"visionkit/configs/{c}")],
         *small], 2 * args.per_check, lambda proc, o: read_table(proc, o / "throughput.md"),
    ))  # fmt: skip
    listed.append(Check(
        "amp-speed", "benchmarks/amp_speed.py (bf16 vs float32 training)",
        [py, str(ROOT / "benchmarks/amp_speed.py"), "--device", dev, "--rounds", "2",
         "--steps", str(args.bench_steps), *yolo_fcn, *small], args.per_check,
        lambda proc, o: read_table(proc, o / "amp_speed.md"),
    ))  # fmt: skip
    weights = out / "train_yolo_v1_shapes" / "last.pth"
    evals = [
        [py, str(ROOT / "tools/eval.py"), "--config", str(ROOT / "visionkit/configs/yolo_v1_shapes.yaml"),
         "--weights", str(weights), "--device", d, "--out", str(out / f"eval_{tag}.json"),
         "--no-progress", *small]
        for d, tag in (("cpu", "cpu"), (dev, "dev"))
    ]  # fmt: skip
    listed.append(Check(
        "eval cpu/device", "tools/eval.py, visionkit/evaluation/loop.py",
        ["bash", "-c", " && ".join(" ".join(map(_quote, e)) for e in evals)],
        args.per_check, read_eval_pair,
    ))  # fmt: skip
    procs = str(args.gpus) if dev.startswith("cuda") else "2"
    backend = "nccl" if dev.startswith("cuda") else "gloo"
    listed.append(Check(
        f"torchrun {backend} x{procs}", "tools/train.py under torchrun, engine/distributed.py",
        [py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
         str(ROOT / "tools/train.py"), "--config", str(ROOT / "visionkit/configs/yolo_v1_shapes.yaml"),
         "--output-dir", str(out / "torchrun"), "--no-progress", *small, *amp[:2],
         f"train.dist_backend={backend}", f"train.epochs={4 if args.tiny else 2}", log],
        args.per_check,
        lambda proc, o: read_training(proc, o / "torchrun"),
    ))  # fmt: skip
    return listed


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def run_check(check: Check, out: Path) -> str:
    """Run ``check``; its one line."""
    log = out / (check.name.replace(" ", "_").replace("/", "-") + ".log")
    start = time.time()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **check.env}
    try:
        proc = subprocess.run(check.command, capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=check.timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        log.write_text(f"$ {' '.join(check.command)}\ntimed out after {check.timeout} s\n")
        return f"FAIL {check.name}: timed out after {check.timeout} s [{check.exercises}]"
    log.write_text(f"$ {' '.join(check.command)}\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    seconds = f"{time.time() - start:.0f} s"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return f"FAIL {check.name}: exit {proc.returncode}: {last} ({seconds}) [{check.exercises}]"
    try:
        what = check.read(proc, out)
    except (CheckFailed, OSError, KeyError, ValueError, IndexError) as e:
        return f"FAIL {check.name}: {e} ({seconds}) [{check.exercises}]"
    return f"PASS {check.name}: {what} ({seconds}) [{check.exercises}]"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--output", type=Path, default=ROOT / "runs" / "device_check")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a dry run)")
    p.add_argument("--tiny", action="store_true", help="96-px images, few steps (CPU dry run)")
    p.add_argument("--config", action="append", dest="configs", help="a quick config (repeatable)")
    args = p.parse_args(argv)
    args.configs = args.configs or QUICK
    args.images = 32 if args.tiny else 512
    args.steps = 8 if args.tiny else 200  # training steps per config
    args.bench_steps = 2 if args.tiny else 20
    args.per_check = 600 if args.tiny else 150
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("device_check: no CUDA device here (torch.cuda.is_available() is False); nothing "
              "checked (--device cpu --tiny runs the same checks on the CPU)")  # fmt: skip
        return 2
    args.gpus = torch.cuda.device_count() if args.device.startswith("cuda") else 0
    args.workers = min(8, os.cpu_count() or 1) if not args.tiny else 0
    args.output.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(args.device) if args.gpus else "CPU (dry run)"
    head = f"device_check on {name}; torch {torch.__version__}; output {args.output}"
    print(head, flush=True)
    lines = []
    for check in checks(args):
        lines.append(run_check(check, args.output))
        print(lines[-1], flush=True)
    tables = [p for p in ("throughput.md", "compile.md", "amp_speed.md")
              if (args.output / p).is_file()]  # fmt: skip
    summary = [f"# {head}", "", *[f"- {ln}" for ln in lines], ""]
    for table in tables:
        summary += [f"## {table}", "", (args.output / table).read_text(), ""]
    (args.output / "summary.md").write_text("\n".join(summary))
    failed = sum(ln.startswith("FAIL") for ln in lines)
    print(f"{len(lines) - failed} of {len(lines)} checks passed; summary in "
          f"{args.output / 'summary.md'}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
