"""Segmentation metrics against a hand-computed confusion matrix; the poly LR schedule."""

import math

import pytest
import torch

from visionkit.config import load_config
from visionkit.engine.optim import lr_factor
from visionkit.errors import DataError
from visionkit.evaluation import SemSegEvaluator, confusion_matrix, segmentation_metrics

NAMES = ["background", "a", "b", "c"]  # "c" never occurs in the ground truth


def batch():
    # pixel pairs (gt, pred): (0,0) (0,1) (1,1) (1,1) (255,3: ignored) (2,2) (2,0) (0,3)
    target = torch.tensor([[0, 0, 1, 1], [255, 2, 2, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [3, 2, 0, 3]])
    return target, pred


def test_confusion_matrix_counts_and_ignores():
    target, pred = batch()
    expected = torch.tensor([[1, 1, 0, 1], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(confusion_matrix(pred, target, 4), expected)
    with pytest.raises(DataError, match="label 7 outside 0..3 and 255"):
        confusion_matrix(pred, torch.full_like(target, 7), 4)


def test_metrics_match_hand_computation():
    target, pred = batch()
    m = segmentation_metrics(confusion_matrix(pred, target, 4), NAMES)
    # t = (3, 2, 2, 0) gt pixels per class; predicted (2, 3, 1, 1); diagonal (1, 2, 1, 0)
    iou = [1 / 4, 2 / 3, 1 / 2]  # tp / (t + p - tp)
    assert m["IoU-background"] == pytest.approx(25.0)
    assert m["IoU-a"] == pytest.approx(200 / 3) and m["IoU-b"] == pytest.approx(50.0)
    assert math.isnan(m["IoU-c"]) and math.isnan(m["ACC-c"])  # absent from the ground truth
    assert m["mIoU"] == pytest.approx(100 * sum(iou) / 3)  # NaN class left out
    assert m["fwIoU"] == pytest.approx(100 * (3 * iou[0] + 2 * iou[1] + 2 * iou[2]) / 7)
    assert m["mACC"] == pytest.approx(100 * (1 / 3 + 1 + 1 / 2) / 3)
    assert m["pACC"] == pytest.approx(100 * 4 / 7)


def test_evaluator_accumulates_batches():
    target, pred = batch()
    ev = SemSegEvaluator(NAMES)
    ev.process([{"sem_seg": target[:1], "image_id": 1}], [{"sem_seg": pred[:1]}])
    ev.process([{"sem_seg": target[1:], "image_id": 2}], [{"sem_seg": pred[1:]}])
    whole = segmentation_metrics(confusion_matrix(pred, target, 4), NAMES)
    got = ev.evaluate()["sem_seg"]
    assert set(got) == set(whole) and got["mIoU"] == pytest.approx(whole["mIoU"])
    with pytest.raises(DataError, match="image 3: prediction"):
        ev.process([{"sem_seg": target, "image_id": 3}], [{"sem_seg": pred[:1]}])
    empty = SemSegEvaluator(NAMES).evaluate()["sem_seg"]
    assert math.isnan(empty["mIoU"]) and math.isnan(empty["pACC"])


def test_poly_schedule():
    cfg = load_config(None, ["train.scheduler=poly", "train.epochs=2", "train.poly_power=0.9"])
    assert lr_factor(cfg.train, 0, 10) == 1.0
    assert lr_factor(cfg.train, 10, 10) == pytest.approx(0.5**0.9)
    assert lr_factor(cfg.train, 20, 10) == 0.0
