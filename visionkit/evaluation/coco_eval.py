"""COCO-style evaluation (COCOeval through :mod:`~visionkit.evaluation.coco_backends`): results
to and from predictions, their checks, the 12 numbers and per-class AP."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
from visionkit.structures.boxes import convert_boxes
from visionkit.structures.masks import encode_rles
from visionkit.utils.comm import gather_in_order, is_distributed
from visionkit.utils.validators import box_problem, is_finite_number, is_int

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


def check_coco_results(
    results: Any, image_sizes: Mapping[int, tuple[int, int]], cat_ids: Sequence[int], where: str
) -> None:
    """Refuse, in one line naming ``where``, the record and the field, COCO box results that
    are not a list of ``{image_id, category_id, bbox, score}`` with an image and a category of
    the dataset, a box within its image (:func:`~visionkit.utils.validators.box_problem`) and a
    score in [0, 1].

    Args:
        image_sizes: image id -> ``(height, width)`` of each image of the dataset.
    """
    if not isinstance(results, list):
        raise DataError(f"{where}: not a COCO results list")
    cats = {int(c) for c in cat_ids}
    for k, r in enumerate(results):
        if not isinstance(r, dict):
            raise DataError(f"{where}: record {k} is a {type(r).__name__}, not a dict")
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in r:
                raise DataError(f"{where}: record {k} has no '{key}'")
        for key, known in (("image_id", image_sizes), ("category_id", cats)):
            v = r[key]
            if not is_int(v) or v not in known:
                raise DataError(
                    f"{where}: record {k}: {key} {v!r} is not one of the dataset's {key}s"
                )
        height, width = image_sizes[r["image_id"]]
        problem = box_problem(r["bbox"], width, height)
        if problem:
            raise DataError(f"{where}: record {k}: bbox {r['bbox']!r} {problem}")
        score = r["score"]
        if not is_finite_number(score):
            raise DataError(f"{where}: record {k}: score {score!r} is not a finite number")
        if not 0 <= score <= 1:
            raise DataError(f"{where}: record {k}: score {score!r} is outside [0, 1]")


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
) -> dict[str, float]:
    """:func:`coco_metrics` of mask results (``segmentation`` a compressed RLE) against the
    ground truth's segmentations (polygons or RLE). visionkit has no instance segmentation model
    yet, so no tool calls this; ``tests/test_coco_backends.py`` holds its backends equal."""
    return coco_metrics(coco_gt, results, image_ids, "segm", backend)


class CocoEvaluator:
    """Accumulates predictions over a dataset and computes COCO box metrics.

    Args:
        coco_gt: the dataset's ground truth (original pixels, its own category ids).
        cat_ids: label ``0..C-1`` -> the dataset's category id.
        backend: COCOeval's implementation, one of
            :data:`~visionkit.evaluation.coco_backends.COCO_BACKENDS`.
    """

    def __init__(
        self, coco_gt: COCO, cat_ids: Sequence[int], backend: str = DEFAULT_COCO_BACKEND
    ) -> None:
        check_coco_backend(backend)
        self.coco_gt = coco_gt
        self.cat_ids = list(cat_ids)
        self.backend = backend
        self.results: list[dict[str, Any]] = []
        self.image_ids: list[int] = []
        # COCOeval's precision array and its category ids, after evaluate() (coco_box_metrics)
        self.accumulated: dict[str, Any] = {}

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
        """``{"bbox": {...}}`` as detectron2 lays it out, numbers in percent."""
        self.accumulated = {}
        metrics = coco_box_metrics(
            self.coco_gt, self.results, self.image_ids, self.backend, self.accumulated
        )
        return {"bbox": metrics}
