"""Stopping on SIGTERM / SIGINT: a checkpoint of the exact state, a clean exit code, and a
mid-epoch resume that ends bit for bit where an uninterrupted run ends.

(A SIGKILLed run resuming from its last epoch, a failed checkpoint write and the stop on a NaN
loss are tested in test_tools_e2e.py and test_engine.py.)"""

import os
import signal
import subprocess
import sys

import pytest
import torch
from test_tools_e2e import ROOT, run_tool, tiny_overrides

from visionkit.checkpoints import load_checkpoint
from visionkit.config import load_config
from visionkit.engine.signals import TrainingInterrupted
from visionkit.engine.trainer import Trainer
from visionkit.errors import VisionkitError

CONFIG = ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml"

# tools/train.py, sending itself $PROBE_SIGNAL in the loss of its $PROBE_AT-th batch (1-based)
PROBE = """
import os, runpy, signal, sys
from visionkit.models.detectors.yolo_v1 import YOLOv1

loss, calls = YOLOv1.loss, []

def signalling_loss(self, images, targets):
    calls.append(1)
    if len(calls) == int(os.environ["PROBE_AT"]):
        os.kill(os.getpid(), getattr(signal, os.environ["PROBE_SIGNAL"]))
    return loss(self, images, targets)

YOLOv1.loss = signalling_loss
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def record_batches(trainer: Trainer, signal_at: int = 0, signum: int = signal.SIGTERM) -> list:
    """The image ids of each batch ``trainer`` trains on; a signal during batch ``signal_at``."""
    loss, seen = trainer.model.loss, []

    def recording(images, targets):
        seen.append([int(t["image_id"]) for t in targets])
        if len(seen) == signal_at:
            os.kill(os.getpid(), signum)
        return loss(images, targets)

    trainer.model.loss = recording
    return seen


@pytest.mark.parametrize("workers", [0, 1])
def test_sigterm_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path, workers):
    # augmentation on (the config's jitter and flips), seeded per sample by the sampler: the
    # interrupted run, in this process or in a loader worker, resumes to the weights of an
    # uninterrupted run without workers
    overrides = [*tiny_overrides(tmp_path / "cache"), "train.eval_every=0"]
    full = Trainer(load_config(CONFIG, overrides), tmp_path / "full", progress=False)
    seen_full = record_batches(full)
    full.train()

    cfg = load_config(CONFIG, [*overrides, f"data.num_workers={workers}"])
    cut = Trainer(cfg, tmp_path / "cut", progress=False)
    before = signal.getsignal(signal.SIGTERM)
    seen_cut = record_batches(cut, signal_at=6)  # 4 batches per epoch: epoch 2, its 2nd batch
    with pytest.raises(TrainingInterrupted) as stop:
        cut.train()
    assert stop.value.exit_code == 143 and signal.getsignal(signal.SIGTERM) is before
    assert "SIGTERM after 2/4 batches of epoch 2" in str(stop.value)
    ckpt = load_checkpoint(tmp_path / "cut" / "last.pth")
    assert (ckpt["epoch"], ckpt["epoch_iteration"], ckpt["iteration"]) == (1, 2, 6)
    assert ckpt["sampler"] == {"epoch": 1, "start": 8}  # 2 batches of 4 images consumed

    other = load_config(CONFIG, [*overrides, "data.batch_size=2"])
    with pytest.raises(VisionkitError, match="written mid-epoch"):
        Trainer(other, tmp_path / "cut", resume=True, progress=False)

    resumed = Trainer(cfg, tmp_path / "cut", resume=True, progress=False)
    assert (resumed.start_epoch, resumed.start_batch) == (1, 2)
    assert resumed.optimizer.param_groups[0]["lr"] == cut.optimizer.param_groups[0]["lr"]
    assert resumed.scheduler.last_epoch == 6
    seen_rest = record_batches(resumed)
    resumed.train()
    assert seen_cut + seen_rest == seen_full  # the same batches in the same order, none again
    weights = resumed.model.state_dict()
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, weights[k]), k


def test_sigint_at_the_first_batch_stops_with_130(tmp_path):
    cfg = load_config(CONFIG, tiny_overrides(tmp_path / "cache", epochs=1))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    record_batches(trainer, signal_at=1, signum=signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as stop:
        trainer.train()
    assert stop.value.exit_code == 130 and "SIGINT after 1/4 batches of epoch 1" in str(stop.value)
    assert load_checkpoint(tmp_path / "run" / "last.pth")["epoch_iteration"] == 1


@pytest.mark.slow
def test_train_tool_exits_143_with_one_line_and_resumes(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    out = tmp_path / "out"
    args = ["--config", str(CONFIG), "--output-dir", str(out), "--no-progress",
            *tiny_overrides(tmp_path / "cache")]  # fmt: skip
    env = {**os.environ, "PROBE_AT": "3", "PROBE_SIGNAL": "SIGTERM", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(ROOT / "tools" / "train.py"), *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGTERM after 3/4 batches of epoch 1") and "--resume" in last
    assert load_checkpoint(out / "last.pth")["epoch_iteration"] == 3
    run_tool("train.py", *args, "--resume")
    ckpt = load_checkpoint(out / "last.pth")
    assert (ckpt["epoch"], ckpt["epoch_iteration"], ckpt["iteration"]) == (2, 0, 8)
