"""Checkpoints of another number of classes: a strict load names both counts; a partial load
(fine-tuning, model.init_weights / tools/train.py --init-from) takes every tensor that fits."""

from pathlib import Path

import pytest
import torch

from visionkit.checkpoints import (
    init_from_checkpoint,
    load_matching_weights,
    load_model_weights,
    save_checkpoint,
)
from visionkit.config import load_config
from visionkit.config.loader import config_to_dict
from visionkit.errors import CheckpointError
from visionkit.models import build_model

CONFIG = Path(__file__).resolve().parents[1] / "visionkit" / "configs" / "faster_rcnn_shapes.yaml"
CLASSIFIER = [
    "roi_heads.cls_score.weight",
    "roi_heads.cls_score.bias",
    "roi_heads.bbox_pred.weight",
    "roi_heads.bbox_pred.bias",
]


def faster_rcnn(num_classes: int) -> tuple[torch.nn.Module, dict]:
    cfg = load_config(CONFIG, [f"model.num_classes={num_classes}"])
    torch.manual_seed(num_classes)
    model = build_model(cfg.model)
    ckpt = {"model_name": "faster_rcnn", "model": model.state_dict(), "config": config_to_dict(cfg)}
    return model, ckpt


def test_strict_load_names_both_class_counts():
    _, ckpt = faster_rcnn(5)
    model, _ = faster_rcnn(3)
    with pytest.raises(CheckpointError) as e:
        load_model_weights(model, ckpt, "faster_rcnn", "five.pth", num_classes=3)
    message = str(e.value)
    assert "the checkpoint has 5 classes, the config 3" in message and "\n" not in message
    assert "roi_heads.cls_score.weight: (6, 256) vs (4, 256)" in message
    assert "--init-from five.pth" in message
    del ckpt["config"]  # a bare checkpoint: its class_names count
    ckpt["class_names"] = list("abcde")
    with pytest.raises(CheckpointError, match="the checkpoint has 5 classes, the config 3"):
        load_model_weights(model, ckpt, "faster_rcnn", "five.pth", num_classes=3)


def test_matching_weights_load_all_but_the_classifier_and_regressor(tmp_path):
    source, ckpt = faster_rcnn(5)
    model, _ = faster_rcnn(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loaded, skipped = load_matching_weights(model, ckpt)
    assert skipped == CLASSIFIER and len(loaded) == len(before) - 4
    state, src = model.state_dict(), source.state_dict()
    assert all(torch.equal(state[k], src[k]) for k in loaded)
    assert all(torch.equal(state[k], before[k]) for k in skipped)
    # a bare state_dict works the same, and the one-line summary names the skipped modules
    save_checkpoint(src, tmp_path / "five.pth")
    line = init_from_checkpoint(faster_rcnn(3)[0], tmp_path / "five.pth")
    assert line == (
        f"init from {tmp_path / 'five.pth'}: loaded {len(loaded)} tensors, skipped 4 (another "
        "shape or absent; kept as initialized): roi_heads.cls_score, roi_heads.bbox_pred"
    )
    save_checkpoint({"model": {"other.weight": torch.ones(2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="no tensor matches the configured model"):
        init_from_checkpoint(model, tmp_path / "other.pth")
