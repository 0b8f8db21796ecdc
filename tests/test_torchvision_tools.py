"""``torchvision:NAME`` weights through the tools: the one-line error without file or network,
eval.py and infer.py on a small COCO set with COCO's category ids, and fine-tuning with
train.py --init-from (weights: a random torchvision model saved under torchvision's file name in a
temporary TORCH_HOME)."""

import json

import pytest
import torch
from test_tools_e2e import ROOT, run_tool
from test_torchvision_weights import torchvision_faster_rcnn

import visionkit
from visionkit.checkpoints import load_checkpoint
from visionkit.checkpoints.torchvision import weights_url
from visionkit.data import ensure_shapes
from visionkit.errors import CheckpointError

CONFIG = str(ROOT / "visionkit" / "configs" / "faster_rcnn_r50_fpn_coco.yaml")
SMALL = ["model.resize.min_size=96", "model.resize.max_size=160", "data.num_workers=0"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty TORCH_HOME and no network (every request goes to a closed local port)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_no_file_and_no_network_is_one_line_naming_file_and_folder(offline):
    _, filename = weights_url("fasterrcnn_resnet50_fpn")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint("torchvision:fasterrcnn_resnet50_fpn")
    message = str(e.value)
    assert "\n" not in message and filename in message and str(offline) in message
    with pytest.raises(CheckpointError, match="unknown torchvision model 'resnet50'"):
        load_checkpoint("torchvision:resnet50")


@pytest.fixture
def hub_weights(offline):
    """A random torchvision fasterrcnn_resnet50_fpn under its file name in the hub folder."""
    _, filename = weights_url("fasterrcnn_resnet50_fpn")
    offline.mkdir(parents=True)
    torch.save(torchvision_faster_rcnn().state_dict(), offline / filename)
    return offline / filename


def coco_overrides(tmp_path, split: str) -> list[str]:
    """A small generated shapes split read as COCO (its ids 1..5: person ... airplane)."""
    files = ensure_shapes(tmp_path / "shapes", split, num_images=4, image_size=96)
    return [
        f"data.{split}.type=coco",
        f"data.{split}.root={files['images']}",
        f"data.{split}.ann_file={files['ann_file']}",
    ]


def test_eval_and_infer_with_torchvision_weights(hub_weights, tmp_path):
    preds = tmp_path / "predictions.json"
    spec = "torchvision:fasterrcnn_resnet50_fpn"
    data = coco_overrides(tmp_path, "val")
    args = ["--config", CONFIG, "--weights", spec, "--save-predictions", str(preds)]
    out = run_tool("eval.py", *args, "--no-progress", *SMALL, *data, "eval.batch_size=2")
    assert "evaluated 4 images" in out.stdout
    results = json.loads(preds.read_text())
    assert results and {r["category_id"] for r in results} <= set(range(1, 91))
    images = ensure_shapes(tmp_path / "shapes", "val", num_images=4, image_size=96)["images"]
    out_dir = tmp_path / "infer"
    run_tool("infer.py", "--config", CONFIG, "--weights", spec, "--source", str(images),
             "--output", str(out_dir), "--score-thresh", "0.05", *SMALL)  # fmt: skip
    assert any(out_dir.iterdir())
    # the Python API and the ONNX export take the same spec
    model = visionkit.load(spec, config=CONFIG, overrides=SMALL, score_thresh=0.05)
    assert model.cat_ids == list(range(1, 91)) and model.class_names[0] == "person"
    onnx_path = tmp_path / "frcnn.onnx"
    run_tool("export.py", "--config", CONFIG, "--weights", spec, "--output", str(onnx_path),
             *SMALL)  # fmt: skip
    exported = visionkit.load(onnx_path, score_thresh=0.05)
    assert exported.cat_ids == model.cat_ids
    assert len(exported.predict(str(images))) == 4
    # another file as torchvision:NAME=PATH: the same conversion
    local = load_checkpoint(f"{spec}={hub_weights}")
    assert local["model_name"] == "faster_rcnn" and local["cat_ids"] == list(range(1, 91))
    assert len(local["class_names"]) == 90 and local["class_names"][0] == "person"


def test_fine_tune_from_torchvision_weights_reports_reinitialized_tensors(hub_weights, tmp_path):
    tiny = [
        "model.num_classes=5", "data.train.type=shapes", "data.val.type=shapes",
        f"data.train.root={tmp_path / 'cache'}", f"data.val.root={tmp_path / 'cache'}",
        "data.train.num_images=2", "data.val.num_images=2", "data.train.image_size=96",
        "data.val.image_size=96", "data.train.filter_empty=false", "data.batch_size=2",
        "eval.batch_size=2", "train.epochs=1", "train.lr_scaling=none", "train.lr=0.001",
        "train.warmup_epochs=0", "train.milestones=[]", "train.best_metric=bbox/AP50",
        "model.rpn.pre_nms_top_n_train=50", "model.rpn.post_nms_top_n_train=50",
        "model.rpn.pre_nms_top_n_test=50", "model.rpn.post_nms_top_n_test=50",
        "model.roi_head.batch_size_per_image=32",
    ]  # fmt: skip
    out = run_tool("train.py", "--config", CONFIG, "--init-from",
                   "torchvision:fasterrcnn_resnet50_fpn", "--output-dir", str(tmp_path / "run"),
                   "--no-progress", *SMALL, *tiny)  # fmt: skip
    line = next(x for x in out.stdout.splitlines() if x.startswith("init from torchvision:"))
    assert "skipped 4" in line and "roi_heads.cls_score, roi_heads.bbox_pred" in line
