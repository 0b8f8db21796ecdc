"""tools/train.py and tools/eval.py on the shapes FCN config, with tiny generated data."""

import json

import pytest
from script_loader import load_script
from test_tools_e2e import ROOT, run_tool

from visionkit.checkpoints import load_checkpoint
from visionkit.errors import ConfigError

CONFIG = str(ROOT / "visionkit" / "configs" / "fcn8s_shapes.yaml")


def tiny_fcn_overrides(cache) -> list[str]:
    """A LeNet FCN-8s (strides 2, 4, 8) on 8 training images of 64 px, one epoch."""
    return [
        f"data.train.root={cache}",
        f"data.val.root={cache}",
        "data.train.num_images=8",
        "data.val.num_images=4",
        "data.train.image_size=64",
        "data.val.image_size=64",
        "data.batch_size=4",
        "data.num_workers=0",
        "eval.batch_size=4",
        "model.input_size=[48,48]",
        "model.backbone.name=lenet",
        "model.backbone.out_features=[]",
        "model.fcn.head_channels=16",
        "train.epochs=1",
        "train.log_every=1",
    ]


def test_train_then_eval_reproduces_the_metrics(tmp_path):
    out, overrides = tmp_path / "out", tiny_fcn_overrides(tmp_path / "cache")
    run_tool("train.py", "--config", CONFIG, "--output-dir", str(out), "--no-progress", *overrides)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss_fcn_ce" in r for r in records)
    last = [r for r in records if "sem_seg/mIoU" in r][-1]
    ckpt = load_checkpoint(out / "best.pth")
    assert ckpt["model_name"] == "fcn" and ckpt["class_names"][0] == "background"
    metrics_path = tmp_path / "m.json"
    proc = run_tool(
        "eval.py", "--config", CONFIG, "--weights", str(out / "last.pth"), "--out",
        str(metrics_path), "--no-progress", *overrides,
    )  # fmt: skip
    written = json.loads(metrics_path.read_text())
    assert written["units"] == {"sem_seg": "percent", "speed": "ms"}
    metrics = written["sem_seg"]
    assert {"mIoU", "fwIoU", "mACC", "pACC", "IoU-background", "IoU-star", "bIoU@3"} <= set(metrics)
    for k in ("mIoU", "fwIoU", "mACC", "pACC", "bIoU@3", "bACC@3"):
        assert metrics[k] == last[f"sem_seg/{k}"]
    lines = proc.stdout.splitlines()
    assert any(ln.startswith("sem_seg/bIoU@3 ") and ln.endswith(" %") for ln in lines)
    assert any(ln.startswith("speed/ms_per_image ") and ln.endswith(" ms") for ln in lines)
    summary = f"mIoU {metrics['mIoU']:.2f} % fwIoU {metrics['fwIoU']:.2f} % "
    assert summary in lines[-1] and f"bIoU@3 {metrics['bIoU@3']:.2f} %" in lines[-1]


def test_box_predictions_options_are_a_config_error_for_fcn(tmp_path):
    tool = load_script("tools/eval.py")
    with pytest.raises(ConfigError, match="COCO box results; 'fcn' is a sem_seg model"):
        tool.main(["--config", CONFIG, "--predictions", str(tmp_path / "p.json")])
