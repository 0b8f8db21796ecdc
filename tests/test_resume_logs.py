"""Resume that means resume: after SIGKILL at any point and --resume, metrics.jsonl holds each
iteration and each epoch exactly once; a changed config is refused or applied and said; a fresh
run never writes over another run's files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_tools_e2e import run_tool, tiny_overrides

from visionkit.io.atomic import leftover_temporaries

ROOT = Path(__file__).resolve().parents[1]
YOLO = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")
EPOCHS, ITERS = 3, 4  # 16 training images in batches of 4


def train_args(tmp_path: Path, *extra: str) -> list[str]:
    flags = [e for e in extra if e.startswith("--")]
    overrides = [e for e in extra if not e.startswith("--")]  # after the config's own
    return ["--config", YOLO, "--output-dir", str(tmp_path / "run"), "--no-progress", *flags,
            *tiny_overrides(tmp_path / "cache", epochs=EPOCHS), *overrides]  # fmt: skip


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def kill_when(tmp_path: Path, done, *extra: str) -> None:
    """Start training and SIGKILL it as soon as ``done(lines of metrics.jsonl)`` holds."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "train.py"), *train_args(tmp_path, *extra)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    path = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if done(lines):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before the kill point"


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    [
        "first record",  # before the first checkpoint: --resume starts it again
        "mid epoch 2",
        "right after an evaluation",
        "twice",
    ],
)
def test_sigkill_then_resume_logs_every_iteration_and_epoch_once(point, tmp_path):
    def train_lines(lines):
        return [ln for ln in lines if '"epoch"' not in ln]

    if point == "first record":
        kill_when(tmp_path, lambda lines: len(lines) >= 1)
    elif point == "mid epoch 2":
        kill_when(tmp_path, lambda lines: len(train_lines(lines)) >= ITERS + 2)
    elif point == "right after an evaluation":
        kill_when(tmp_path, lambda lines: any('"epoch": 1' in ln for ln in lines))
    else:
        kill_when(tmp_path, lambda lines: len(train_lines(lines)) >= 3)
        kill_when(tmp_path, lambda lines: len(train_lines(lines)) >= ITERS + 3, "--resume")
    run_tool("train.py", *train_args(tmp_path, "--resume"))
    recs = records(tmp_path / "run")
    train = sorted(r["iter"] for r in recs if "epoch" not in r)
    evals = sorted(r["epoch"] for r in recs if "epoch" in r)
    assert train == list(range(EPOCHS * ITERS))
    assert evals == list(range(1, EPOCHS + 1))
    assert not leftover_temporaries(tmp_path / "run")


@pytest.mark.slow
def test_resume_refuses_a_changed_lr_and_applies_more_epochs(tmp_path):
    run_tool("train.py", *train_args(tmp_path))
    run = tmp_path / "run"
    before = (run / "config.yaml").read_text()
    proc = run_tool("train.py", *train_args(tmp_path, "--resume", "train.lr=0.5"), check=False)
    assert proc.returncode == 2 and "train.lr 0.001 -> 0.5" in proc.stderr
    assert "Traceback" not in proc.stderr and (run / "config.yaml").read_text() == before
    for change, line in [("train.optimizer=sgd", "train.optimizer 'adamw' -> 'sgd'"),
                         ("train.scheduler=constant", "train.scheduler 'cosine' -> 'constant'")]:  # fmt: skip
        proc = run_tool("train.py", *train_args(tmp_path, "--resume", change), check=False)
        assert proc.returncode == 2 and line in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_tool("train.py", *train_args(tmp_path, "--resume", "train.epochs=1"), check=False)
    assert proc.returncode == 2 and "has done 3 epochs" in proc.stderr
    assert (run / "config.yaml").read_text() == before
    proc = run_tool("train.py", *train_args(tmp_path, "--resume", "train.epochs=4"))
    assert "resume: train.epochs 3 -> 4" in proc.stdout + proc.stderr
    assert sorted(r["epoch"] for r in records(run) if "epoch" in r) == [1, 2, 3, 4]


@pytest.mark.slow
@pytest.mark.parametrize("leftover", ["best.pth", "metrics.jsonl", "config.yaml"])
def test_a_fresh_run_refuses_a_folder_holding_a_run(leftover, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / leftover).write_text("theirs")
    proc = run_tool("train.py", *train_args(tmp_path), check=False)
    assert proc.returncode == 2 and f"already holds a run ({leftover})" in proc.stderr
    assert (run / leftover).read_text() == "theirs"
    assert not (tmp_path / "cache").exists()  # refused before any data was generated
