"""COCO-style evaluation (COCOeval through :mod:`~visionkit.evaluation.coco_backends`): results
to and from predictions (their checks: :mod:`~visionkit.evaluation.results_check`), the 12
numbers and per-class AP, of boxes (``bbox``) and of instance masks (``segm``: each result's
``segmentation`` a compressed RLE of its image)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch import Tensor

from visionkit.errors import DataError
from visionkit.evaluation.coco_backends import (
    DEFAULT_COCO_BACKEND,
    check_coco_backend,
    run_cocoeval,
)
from visionkit.evaluation.results_check import check_coco_results as check_coco_results
from visionkit.structures.boxes import convert_boxes
from visionkit.structures.masks import encode_rles
from visionkit.utils.comm import gather_in_order, is_distributed

IOU_TYPES = ("bbox", "segm")  # COCOeval's iouType: boxes, instance masks
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
    """One image's predictions as COCO results: ``bbox`` xywh, the dataset's own category ids,
    and, when the prediction has ``masks`` (``(N, H, W)`` bool, original pixels), each
    detection's ``segmentation``, a compressed RLE with text counts
    (:func:`~visionkit.structures.masks.encode_rles`).

    Detections with a non-finite box or score (a diverged model) are left out: COCOeval would
    match a NaN box with any ground truth (``iou < t`` is never true for NaN)."""
    boxes, scores = prediction["boxes"].detach().cpu(), prediction["scores"].detach().cpu()
    finite = torch.isfinite(boxes).all(1) & torch.isfinite(scores)
    boxes = convert_boxes(boxes[finite], "xyxy", "xywh").tolist()
    scores = scores[finite].tolist()
    labels = prediction["labels"].detach().cpu()[finite].tolist()
    results = [
        {"image_id": int(image_id), "category_id": int(cat_ids[lb]), "bbox": b, "score": s}
        for b, s, lb in zip(boxes, scores, labels, strict=True)
    ]
    if "masks" in prediction:
        rles = encode_rles(prediction["masks"].detach().cpu()[finite])
        for r, rle in zip(results, rles, strict=True):
            r["segmentation"] = rle
    return results


def from_coco_results(
    results: list[dict[str, Any]], cat_ids: Sequence[int], image_ids: Sequence[int]
) -> list[dict[str, Tensor]]:
    """COCO results back to predictions, one per image of ``image_ids`` (in that order):
    ``boxes`` ``(D, 4)`` float32 xyxy, ``scores`` ``(D,)`` float32, ``labels`` ``(D,)`` int64
    (the index of the category id in ``cat_ids``). An unknown image or category id is a
    DataError."""
    label_of = {int(c): i for i, c in enumerate(cat_ids)}
    row_of = {int(i): k for k, i in enumerate(image_ids)}
    try:
        rows = np.array([row_of.get(int(r["image_id"]), -1) for r in results], np.int64)
        labels = np.array([label_of.get(int(r["category_id"]), -1) for r in results], np.int64)
        scores = np.array([r["score"] for r in results], np.float32)
        xywh = np.array([r["bbox"] for r in results], np.float32).reshape(-1, 4)
        if len(xywh) != len(results):
            raise ValueError("a bbox without 4 numbers")
    except (KeyError, TypeError, ValueError):
        raise DataError(
            "predictions are not COCO box results (image_id, category_id, bbox, score)"
        ) from None
    for what, values, key in (("image", rows, "image_id"), ("category", labels, "category_id")):
        if (values < 0).any():
            bad = results[int(np.flatnonzero(values < 0)[0])][key]
            raise DataError(f"predictions name {what} id {bad}, which the dataset does not have")
    boxes = convert_boxes(xywh, "xywh", "xyxy").numpy()
    order = np.argsort(rows, kind="stable")
    starts = np.searchsorted(rows[order], np.arange(len(image_ids) + 1))
    return [
        {
            "boxes": torch.from_numpy(boxes[idx]),
            "scores": torch.from_numpy(scores[idx]),
            "labels": torch.from_numpy(labels[idx]),
        }
        for idx in (order[a:b] for a, b in zip(starts[:-1], starts[1:], strict=True))
    ]


def coco_metrics(
    coco_gt: COCO,
    results: list[dict[str, Any]],
    image_ids: Sequence[int] | None = None,
    iou_type: str = "bbox",
    backend: str = DEFAULT_COCO_BACKEND,
    accumulated: dict[str, Any] | None = None,
) -> dict[str, float]:
    """COCOeval (``backend``: :data:`~visionkit.evaluation.coco_backends.COCO_BACKENDS`) of
    ``results`` (COCO results dicts) against ``coco_gt`` with ``iou_type`` ``"bbox"`` or
    ``"segm"``, over ``image_ids`` (default: every image).

    Returns the 12 standard numbers in percent (``AP``, ``AP50``, ... ``ARl``; NaN where a range
    holds no ground truth) and ``AP-<class name>`` per category. ``accumulated``, when given,
    receives COCOeval's own ``precision`` array ``(T, R, K, A, M)`` and its ``cat_ids`` (the K
    axis) for the precision-recall plots; it stays empty when there are no results.
    """
    if not results:
        stats = np.zeros(12)
        per_class = dict.fromkeys(coco_gt.getCatIds(), 0.0)
    else:
        # results are left as they are (COCOeval loads copies); masks are scored without their
        # box, so that their area (COCO's small, medium and large) is the mask's
        stats, precision, cat_ids = run_cocoeval(coco_gt, results, image_ids, iou_type, backend)
        if accumulated is not None:
            accumulated.update(precision=precision, cat_ids=cat_ids)
        per_class = {}
        for k, cat in enumerate(cat_ids):
            p = precision[:, :, k, 0, -1]  # (iou, recall, class, area, maxdets)
            per_class[cat] = float(p[p > -1].mean()) if (p > -1).any() else math.nan
    out = {
        name: float(v) * 100 if v >= 0 else math.nan
        for name, v in zip(STAT_NAMES, stats, strict=True)
    }
    for cat, ap in per_class.items():
        name = coco_gt.cats[cat]["name"]
        out[f"AP-{name}"] = ap * 100 if not math.isnan(ap) else math.nan
    return out


def coco_box_metrics(
    coco_gt: COCO,
    results: list[dict[str, Any]],
    image_ids: Sequence[int] | None = None,
    backend: str = DEFAULT_COCO_BACKEND,
    accumulated: dict[str, Any] | None = None,
) -> dict[str, float]:
    """:func:`coco_metrics` of box results (``bbox`` xywh)."""
    return coco_metrics(coco_gt, results, image_ids, "bbox", backend, accumulated)


def coco_mask_metrics(
    coco_gt: COCO,
    results: list[dict[str, Any]],
    image_ids: Sequence[int] | None = None,
    backend: str = DEFAULT_COCO_BACKEND,
    accumulated: dict[str, Any] | None = None,
) -> dict[str, float]:
    """:func:`coco_metrics` of mask results (``segmentation`` a compressed RLE) against the
    ground truth's segmentations (polygons or RLE)."""
    return coco_metrics(coco_gt, results, image_ids, "segm", backend, accumulated)


class CocoEvaluator:
    """Accumulates predictions over a dataset and computes COCO box metrics, and instance-mask
    metrics with ``"segm"`` in ``iou_types`` (predictions with ``masks``, results with
    ``segmentation``).

    Args:
        coco_gt: the dataset's ground truth (original pixels, its own category ids).
        cat_ids: label ``0..C-1`` -> the dataset's category id.
        backend: COCOeval's implementation, one of
            :data:`~visionkit.evaluation.coco_backends.COCO_BACKENDS`.
        iou_types: the sections :meth:`evaluate` gives, of :data:`IOU_TYPES`.
    """

    def __init__(
        self,
        coco_gt: COCO,
        cat_ids: Sequence[int],
        backend: str = DEFAULT_COCO_BACKEND,
        iou_types: Sequence[str] = ("bbox",),
    ) -> None:
        check_coco_backend(backend)
        if not iou_types or any(t not in IOU_TYPES for t in iou_types):
            raise ValueError(f"iou_types must be some of {IOU_TYPES}, got {iou_types}")
        self.coco_gt = coco_gt
        self.cat_ids = list(cat_ids)
        self.backend = backend
        self.iou_types = tuple(iou_types)
        self.results: list[dict[str, Any]] = []
        self.image_ids: list[int] = []
        # per iou type, COCOeval's precision array and its category ids, after evaluate()
        self.accumulations: dict[str, dict[str, Any]] = {}

    @property
    def accumulated(self) -> dict[str, Any]:
        """The ``bbox`` section's COCOeval precision array and category ids (empty before
        :meth:`evaluate`, without results or without a ``bbox`` section)."""
        return self.accumulations.get("bbox", {})

    def process(self, targets: Sequence[dict], predictions: Sequence[dict[str, Tensor]]) -> None:
        """Add one batch: ``targets`` give ``image_id``; predictions are in original pixels."""
        for t, p in zip(targets, predictions, strict=True):
            self.image_ids.append(int(t["image_id"]))
            self.results.extend(to_coco_results(int(t["image_id"]), p, self.cat_ids))

    def add_results(self, results: list[dict[str, Any]], image_ids: Sequence[int]) -> None:
        """Add saved COCO results for ``image_ids``, scored as they are (no box conversion)."""
        self.image_ids.extend(int(i) for i in image_ids)
        self.results.extend(results)

    def synchronize(self) -> None:
        """Distributed: rank 0 takes every rank's images with their results, dealt back into the
        dataset's order (:func:`~visionkit.utils.comm.gather_in_order`), so that its ``results``
        and scores are those of one process; the other ranks keep their own. Nothing in one
        process."""
        if not is_distributed():
            return
        by_image: dict[int, list[dict[str, Any]]] = {}
        for r in self.results:
            by_image.setdefault(int(r["image_id"]), []).append(r)
        images = gather_in_order([(i, by_image.pop(i, [])) for i in self.image_ids])
        if images is not None:
            self.image_ids = [i for i, _ in images]
            self.results = [r for _, results in images for r in results]

    def evaluate(self) -> dict[str, dict[str, float]]:
        """``{"bbox": {...}, "segm": {...}}`` (the sections of :attr:`iou_types`) as detectron2
        lays them out, numbers in percent.

        Raises:
            DataError: a ``segm`` section and a result without ``segmentation`` (a saved
                predictions file of boxes only).
        """
        self.accumulations = {t: {} for t in self.iou_types}
        if "segm" in self.iou_types:
            missing = next((k for k, r in enumerate(self.results) if "segmentation" not in r), None)
            if missing is not None:
                raise DataError(
                    f"result {missing} has no 'segmentation': mask AP (segm) scores instance "
                    "masks, and these predictions hold boxes only"
                )
        return {
            t: coco_metrics(
                self.coco_gt, self.results, self.image_ids, t, self.backend, self.accumulations[t]
            )
            for t in self.iou_types
        }
