"""Segmentation metrics against a hand-computed confusion matrix, the boundary (trimap) band and
its metrics by hand; the poly LR schedule."""

import math

import pytest
import torch

from visionkit.config import load_config
from visionkit.engine.optim import lr_factor
from visionkit.errors import DataError
from visionkit.evaluation import (
    SemSegEvaluator,
    boundary_band,
    confusion_matrix,
    segmentation_metrics,
)

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
    assert set(got) == set(whole) | {"bIoU@3", "bACC@3"}  # the default width added
    assert got["mIoU"] == pytest.approx(whole["mIoU"])
    with pytest.raises(DataError, match="image 3: prediction"):
        ev.process([{"sem_seg": target, "image_id": 3}], [{"sem_seg": pred[:1]}])
    empty = SemSegEvaluator(NAMES).evaluate()["sem_seg"]
    assert math.isnan(empty["mIoU"]) and math.isnan(empty["pACC"])


def square_scene():
    """6 x 6: class 1 ("a") on rows 2-3, cols 2-3; (0, 5) ignored. The prediction shifts the
    square one column right, and says "c" (never in the ground truth) at (1, 5) and (5, 0)."""
    target = torch.zeros(6, 6, dtype=torch.long)
    target[2:4, 2:4] = 1
    target[0, 5] = 255
    pred = torch.zeros(6, 6, dtype=torch.long)
    pred[2:4, 3:5] = 1
    pred[1, 5] = pred[5, 0] = 3
    pred[0, 5] = 1  # on the ignored pixel: never counted
    return target, pred


def test_boundary_band_by_hand():
    target, _ = square_scene()
    # width 1: the square's 3x3 windows reach rows 1-4, cols 1-4 (diagonals included); the
    # ignored pixel, a label of its own, puts its neighbours (0, 4), (1, 4), (1, 5) and itself in
    expected = torch.zeros(6, 6, dtype=torch.bool)
    expected[1:5, 1:5] = True
    expected[0, 4:6] = expected[1, 5] = True
    assert torch.equal(boundary_band(target, 1), expected)
    assert boundary_band(target, 2).all()  # every pixel is within 2 of the square
    assert torch.equal(boundary_band(target[None], 1)[0], expected)  # leading dimensions
    assert not boundary_band(torch.zeros(4, 5, dtype=torch.long), 3).any()  # no edge, no band


def test_boundary_metrics_by_hand():
    target, pred = square_scene()
    ev = SemSegEvaluator(NAMES, boundary_widths=(1, 2))
    ev.process([{"sem_seg": target, "image_id": 1}], [{"sem_seg": pred}])
    m = ev.evaluate()["sem_seg"]
    # width 1: the 19 band pixels less the ignored one = 18 counted.
    #   a (4 px): (2,3), (3,3) right, (2,2), (3,2) -> background          row a  = (2, 2, 0, 0)
    #   background (14 px): (2,4), (3,4) -> a, (1,5) -> c, 11 right       row bg = (11, 2, 0, 1)
    #   IoU bg = 11 / (14 + 13 - 11) = 11/16, IoU a = 2 / (4 + 4 - 2) = 1/3; b, c absent
    b1 = ev.counts[1]
    assert torch.equal(b1[:2], torch.tensor([[11, 2, 0, 1], [2, 2, 0, 0]]))
    assert int(b1[2:].sum()) == 0
    assert m["bIoU@1"] == pytest.approx(100 * (11 / 16 + 1 / 3) / 2)  # 51.04
    assert m["bACC@1"] == pytest.approx(100 * 13 / 18)
    # width 2 covers the image: the whole-image numbers. 35 counted; bg 31 px, 27 right,
    # 2 -> a, 2 -> c ((1,5), (5,0)): IoU bg = 27 / (31 + 29 - 27) = 9/11, IoU a = 1/3
    assert m["mIoU"] == pytest.approx(100 * (9 / 11 + 1 / 3) / 2)  # 57.58
    assert m["pACC"] == pytest.approx(100 * 29 / 35)
    assert (m["bIoU@2"], m["bACC@2"]) == pytest.approx((m["mIoU"], m["pACC"]))
    assert math.isnan(m["IoU-c"])  # absent from the ground truth, only its false positives count
    no_edge = SemSegEvaluator(NAMES)
    flat = torch.zeros(4, 4, dtype=torch.long)
    no_edge.process([{"sem_seg": flat, "image_id": 2}], [{"sem_seg": flat}])
    got = no_edge.evaluate()["sem_seg"]
    assert got["mIoU"] == 100 and math.isnan(got["bIoU@3"]) and math.isnan(got["bACC@3"])
    with pytest.raises(ValueError, match="widths must be >= 1"):
        SemSegEvaluator(NAMES, boundary_widths=(0,))


def test_poly_schedule():
    cfg = load_config(None, ["train.scheduler=poly", "train.epochs=2", "train.poly_power=0.9"])
    assert lr_factor(cfg.train, 0, 10) == 1.0
    assert lr_factor(cfg.train, 10, 10) == pytest.approx(0.5**0.9)
    assert lr_factor(cfg.train, 20, 10) == 0.0
