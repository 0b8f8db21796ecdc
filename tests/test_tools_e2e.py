"""End-to-end runs of tools/train.py and tools/eval.py on tiny generated shapes data."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pycocotools.coco import COCO

from visionkit.checkpoints import load_checkpoint, save_checkpoint
from visionkit.config import load_config
from visionkit.data import ensure_shapes
from visionkit.errors import VisionkitError
from visionkit.evaluation.coco_eval import coco_box_metrics
from visionkit.models import build_model

ROOT = Path(__file__).resolve().parents[1]


def tiny_overrides(cache: Path, epochs: int = 2) -> list[str]:
    """A small, fast YOLOv1 on 16 generated training images of 96 px."""
    return [
        f"data.train.root={cache}",
        f"data.val.root={cache}",
        "data.train.num_images=16",
        "data.val.num_images=8",
        "data.train.image_size=96",
        "data.val.image_size=96",
        "data.batch_size=4",
        "data.num_workers=0",
        "eval.batch_size=4",
        "model.input_size=[64,64]",
        "model.backbone.name=lenet",
        "model.backbone.out_features=[]",
        "model.yolo.head_channels=16",
        "model.yolo.extra_convs=1",
        f"train.epochs={epochs}",
        "train.eval_every=1",
        "train.log_every=1",
    ]


def run_tool(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / tool), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run shared by the tests of this module."""
    tmp = tmp_path_factory.mktemp("run")
    out = tmp / "out"
    cfg = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")
    proc = run_tool(
        "train.py",
        "--config",
        cfg,
        "--output-dir",
        str(out),
        "--no-progress",
        *tiny_overrides(tmp / "cache"),
    )
    (tmp / "train.log").write_text(proc.stdout + proc.stderr)  # beside the run, as a log would be
    return cfg, out, tiny_overrides(tmp / "cache")


def test_train_writes_config_checkpoints_and_logs(trained):
    _, out, _ = trained
    for name in ("config.yaml", "last.pth", "best.pth", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in r for r in records) and any("bbox/AP50" in r for r in records)
    ckpt = load_checkpoint(out / "last.pth")
    assert ckpt["epoch"] == 2 and ckpt["model_name"] == "yolo_v1"


def test_train_lines_state_the_unit_and_the_log_has_no_carriage_return(trained):
    _, out, _ = trained
    log = (out.parent / "train.log").read_text()
    assert "\r" not in log  # --no-progress: the data's generation in plain lines too
    lines = log.splitlines()
    assert "generating shapes/train: 16 images ..." in lines
    assert any(ln.startswith("generating shapes/val: done, 8 images in ") for ln in lines)
    evaluations = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                   if "epoch" in r]  # fmt: skip
    for r in evaluations:  # "epoch 1/2 loss 12.3456 bbox/AP50 0.16 % (3s)"
        epoch_line = next(ln for ln in lines if ln.startswith(f"epoch {r['epoch']}/2 loss "))
        assert f" bbox/AP50 {r['bbox/AP50']:.2f} % (" in epoch_line
    best = max(r["bbox/AP50"] for r in evaluations)
    assert any(ln.startswith("done: 2 epochs") and f"best bbox/AP50 {best:.2f} %;" in ln
               for ln in lines)  # fmt: skip


def test_eval_reproduces_training_numbers_and_pycocotools(trained, tmp_path):
    cfg, out, overrides = trained
    last_eval = [
        json.loads(line)
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if "bbox/AP" in line
    ][-1]
    metrics_path, preds_path = tmp_path / "m.json", tmp_path / "p.json"
    proc = run_tool(
        "eval.py", "--config", cfg, "--weights", str(out / "last.pth"), "--out", str(metrics_path),
        "--save-predictions", str(preds_path), "--no-progress", *overrides,
    )  # fmt: skip
    written = json.loads(metrics_path.read_text())
    assert written["units"] == {"bbox": "percent", "speed": "ms"}  # AP on COCO's 0-100 scale
    metrics = written["bbox"]
    shown = {k: "nan" if math.isnan(v) else f"{v:.2f} %" for k, v in metrics.items()}
    summary = f"AP {shown['AP']} AP50 {shown['AP50']} AP75 {shown['AP75']}"
    assert f" ms/image): {summary}" in proc.stdout.splitlines()[-1]
    table = {ln.split()[0]: ln.split()[1:] for ln in proc.stdout.splitlines()}
    assert table["bbox/AP50"] == shown["AP50"].split() and table["speed/ms_per_image"][1] == "ms"
    for k in ("AP", "AP50", "AP75"):
        assert metrics[k] == pytest.approx(last_eval[f"bbox/{k}"], abs=1e-9)
    # the same predictions scored by pycocotools directly
    cache = Path(overrides[1].split("=", 1)[1])
    ann = next(cache.rglob("instances_val.json"))
    gt = COCO(str(ann))
    preds = json.loads(preds_path.read_text())
    assert preds, "the tiny model should make some predictions"
    direct = coco_box_metrics(gt, preds, gt.getImgIds(), "pycocotools")
    for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"):
        assert metrics[k] == pytest.approx(direct[k], nan_ok=True)
    # and scoring the saved JSON through eval.py --predictions gives the same numbers
    run_tool(
        "eval.py",
        "--config",
        cfg,
        "--predictions",
        str(preds_path),
        "--out",
        str(tmp_path / "m2.json"),
        *overrides,
    )
    assert json.loads((tmp_path / "m2.json").read_text())["bbox"]["AP50"] == pytest.approx(
        metrics["AP50"]
    )


def test_checkpoint_from_another_config_is_a_one_line_error(trained, tmp_path):
    cfg, out, overrides = trained
    proc = run_tool(
        "eval.py", "--config", cfg, "--weights", str(out / "last.pth"), *overrides,
        "model.yolo.head_channels=32", check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # the checkpoint's config builds the model: the change is refused, naming the key
    line = proc.stderr.strip().splitlines()[-1]
    assert "model.yolo.head_channels 16 -> 32 (stored -> given)" in line


def test_checkpoint_of_other_classes_named_in_the_error_and_fine_tuned_with_init_from(
    trained, tmp_path
):
    cfg, out, overrides = trained
    proc = run_tool(
        "eval.py", "--config", cfg, "--weights", str(out / "last.pth"), *overrides,
        "model.num_classes=3", check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "model.num_classes 5 -> 3 (stored -> given)" in line
    assert f"train with --init-from {out / 'last.pth'}" in line
    three = load_config(cfg, [*overrides, "model.num_classes=3"])
    save_checkpoint(
        {"model_name": "yolo_v1", "model": build_model(three.model).state_dict()},
        tmp_path / "three.pth",
    )
    proc = run_tool(
        "train.py", "--config", cfg, "--output-dir", str(tmp_path / "tuned"), "--no-progress",
        "--init-from", str(tmp_path / "three.pth"), *overrides, "train.epochs=1",
    )  # fmt: skip
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("init from"))
    assert "skipped 2 (another shape or absent; kept as initialized): head.out" in line
    assert load_checkpoint(tmp_path / "tuned" / "last.pth")["config"]["model"]["init_weights"]


def test_killed_run_resumes_to_its_final_epoch(tmp_path):
    cfg = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")
    out = tmp_path / "out"
    args = [
        "--config",
        cfg,
        "--output-dir",
        str(out),
        "--no-progress",
        *tiny_overrides(tmp_path / "cache", epochs=3),
    ]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tools/train.py"), *args], stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    while not (out / "last.pth").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)  # mid-way through epoch 2
    proc.wait()
    assert load_checkpoint(out / "last.pth")["epoch"] == 1
    run_tool("train.py", *args, "--resume")
    assert load_checkpoint(out / "last.pth")["epoch"] == 3


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    from visionkit.checkpoints import store as checkpoint

    path = tmp_path / "last.pth"
    checkpoint.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(VisionkitError, match=f"^cannot write {path}: disk full$"):
        checkpoint.save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert checkpoint.load_checkpoint(path)["epoch"] == 1
    assert list(tmp_path.iterdir()) == [path]


def test_missing_data_and_corrupt_image_are_one_line_errors(tmp_path):
    cfg = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")
    proc = run_tool(
        "train.py", "--config", cfg, "--output-dir", str(tmp_path / "a"), "data.train.type=coco",
        f"data.train.root={tmp_path}/nowhere", f"data.train.ann_file={tmp_path}/nowhere.json", check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "nowhere" in proc.stderr
    proc = run_tool("train.py", "--config", str(ROOT / "visionkit/configs/yolo_v1.yaml"), "--output-dir", str(tmp_path / "b"),
                    f"data.train.root={tmp_path}/VOCdevkit", check=False)  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "VOCdevkit" in proc.stderr and "shapes" in proc.stderr
    # a corrupt JPEG inside an otherwise good dataset: skipped with a warning (data.on_bad_image
    # skip, the default), or a one-line error naming it (stop), also from a loader worker
    overrides = tiny_overrides(tmp_path / "cache", epochs=1)
    for split, count in (("train", 16), ("val", 8)):
        ensure_shapes(tmp_path / "cache", split, num_images=count, image_size=96)
    victim = sorted((tmp_path / "cache").rglob("*.jpg"))[0]
    victim.write_bytes(b"not a jpeg at all")
    proc = run_tool(
        "train.py", "--config", cfg, "--output-dir", str(tmp_path / "c"), "--no-progress",
        *overrides, "data.num_workers=1",
    )  # fmt: skip
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: skipped")]
    assert len(warnings) == 1 and victim.name in warnings[0], proc.stderr
    done = [ln for ln in proc.stdout.splitlines() if ln.startswith("done:")]
    assert done[0].endswith("; unreadable images skipped: 1; 1 warning (above)"), proc.stdout
    proc = run_tool(
        "train.py", "--config", cfg, "--output-dir", str(tmp_path / "d"), "--no-progress", *overrides,
        "data.num_workers=1", "data.on_bad_image=stop", check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert victim.name in lines[-1] and len([ln for ln in lines if ln.startswith("error:")]) == 1
