"""COCO-style box evaluation through pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

from visionkit.structures.boxes import convert_boxes

STAT_NAMES = [
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
]


def to_coco_results(
    image_id: int, prediction: dict[str, Tensor], cat_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """One image's predictions as COCO results: ``bbox`` xywh, the dataset's own category ids."""
    boxes = convert_boxes(prediction["boxes"].detach().cpu(), "xyxy", "xywh").tolist()
    scores = prediction["scores"].detach().cpu().tolist()
    labels = prediction["labels"].detach().cpu().tolist()
    return [
        {"image_id": int(image_id), "category_id": int(cat_ids[lb]), "bbox": b, "score": s}
        for b, s, lb in zip(boxes, scores, labels, strict=True)
    ]


def coco_box_metrics(
    coco_gt: COCO, results: list[dict[str, Any]], image_ids: Sequence[int] | None = None
) -> dict[str, float]:
    """Run COCOeval on ``results`` (COCO results dicts) against ``coco_gt``.

    Returns the 12 standard numbers in percent (``AP``, ``AP50``, ... ``ARl``; NaN where a range
    holds no ground truth) and ``AP-<class name>`` per category.
    """
    if not results:
        stats = np.zeros(12)
        per_class = dict.fromkeys(coco_gt.getCatIds(), 0.0)
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            dt = coco_gt.loadRes(results)
            ev = COCOeval(coco_gt, dt, iouType="bbox")
            if image_ids is not None:
                ev.params.imgIds = sorted(int(i) for i in image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = ev.stats
        precision = ev.eval["precision"]  # (iou, recall, class, area, maxdets)
        per_class = {}
        for k, cat in enumerate(ev.params.catIds):
            p = precision[:, :, k, 0, -1]
            per_class[cat] = float(p[p > -1].mean()) if (p > -1).any() else math.nan
    out = {
        name: float(v) * 100 if v >= 0 else math.nan
        for name, v in zip(STAT_NAMES, stats, strict=True)
    }
    for cat, ap in per_class.items():
        name = coco_gt.cats[cat]["name"]
        out[f"AP-{name}"] = ap * 100 if not math.isnan(ap) else math.nan
    return out


class CocoEvaluator:
    """Accumulates predictions over a dataset and computes COCO box metrics.

    Args:
        coco_gt: the dataset's ground truth (original pixels, its own category ids).
        cat_ids: label ``0..C-1`` -> the dataset's category id.
    """

    def __init__(self, coco_gt: COCO, cat_ids: Sequence[int]) -> None:
        self.coco_gt = coco_gt
        self.cat_ids = list(cat_ids)
        self.results: list[dict[str, Any]] = []
        self.image_ids: list[int] = []

    def process(self, targets: Sequence[dict], predictions: Sequence[dict[str, Tensor]]) -> None:
        """Add one batch: ``targets`` give ``image_id``; predictions are in original pixels."""
        for t, p in zip(targets, predictions, strict=True):
            self.image_ids.append(int(t["image_id"]))
            self.results.extend(to_coco_results(int(t["image_id"]), p, self.cat_ids))

    def evaluate(self) -> dict[str, dict[str, float]]:
        """``{"bbox": {...}}`` as detectron2 lays it out, numbers in percent."""
        return {"bbox": coco_box_metrics(self.coco_gt, self.results, self.image_ids)}
