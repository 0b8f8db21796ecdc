"""Pascal VOC detection AP: the devkit's matching, the VOC2007 11-point and VOC2010+ area metrics.

Matching, per class, as the devkit's ``voc_eval`` (and ``VOCevaldet.m``) does it: the class's
detections of all images are sorted by score, descending (a stable sort: ties keep the order in
which the images and their detections were given). Each detection takes the ground-truth box of
its class in its image with the highest IoU (the first one on ties), difficult and already
matched boxes included. If that IoU is above ``iou_thresh`` (strictly, as the devkit's
``ovmax > ovthresh``): a difficult box makes the detection *ignored* (neither TP nor FP), an
unmatched box makes it a TP and marks the box, a box already matched makes it a FP (a duplicate);
otherwise it is a FP. A detection whose best box is taken is a FP even if a second box of its class
overlaps it above the threshold: the devkit's rule, unlike COCOeval's.

``npos`` counts the class's non-difficult boxes; ``recall = cumsum(tp) / npos`` and
``precision = cumsum(tp) / max(cumsum(tp) + cumsum(fp), eps)`` over the sorted detections, ignored
ones included (they repeat the previous point, or give ``(0, 0)`` before the first TP/FP, as in
the devkit; neither changes AP).

- ``voc07``: VOC2007's 11-point AP, the mean over ``t`` in ``{0, 0.1, ..., 1}`` of the highest
  precision at recall ``>= t`` (0 if the recall never reaches ``t``). The levels are exactly
  ``k / 10``; the Python devkit port's ``np.arange(0., 1.1, 0.1)`` holds ``0.30000000000000004``,
  ``0.6000000000000001`` and ``0.7000000000000001``, which a recall of exactly 0.3, 0.6 or 0.7 would
  miss.
- ``voc``: VOC2010+'s area under the precision envelope (all points), the devkit's ``voc_ap`` with
  ``use_07_metric=False``.

A class with no non-difficult box (``npos = 0``) has NaN AP and is left out of ``mAP``.

Box convention and the devkit's ``+1``: the devkit measures boxes in 1-based inclusive integer
pixels, so a box is ``xmax - xmin + 1`` wide. visionkit's boxes are float ``xyxy`` with exclusive
right/bottom edges, and VOC XML boxes enter through ``convert_boxes(.., "voc", "xyxy")``, which
maps ``(xmin, ymin, xmax, ymax)`` to ``(xmin - 1, ymin - 1, xmax, ymax)``: the ``+1`` already
lives in the conversion, and plain continuous IoU on converted boxes equals the devkit's ``+1``
IoU on the XML integers exactly (widths and intersections agree, IoU is shift invariant). So
``pixel_plus_one`` is off by default; turn it on only for boxes given in the devkit's inclusive
integer convention (VOC XML numbers, py-faster-rcnn style ``x2 = x1 + w - 1``), where it measures
widths as ``x2 - x1 + 1`` as the devkit does.

Ground truth comes from a dataset's ``coco`` object (original pixels): ``VOCDetection`` keeps VOC's
``difficult`` objects there as ``iscrowd: 1``, and COCO's crowd regions play the same part (never
counted, never penalized). The shapes dataset has no difficult objects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from pycocotools.coco import COCO
from torch import Tensor
from torchvision.ops import box_iou

from visionkit.evaluation.coco_eval import from_coco_results, to_coco_results
from visionkit.structures.boxes import convert_boxes
from visionkit.utils.comm import gather_in_order, is_distributed

VOC_METRICS = ("voc07", "voc")


class ClassCurve(NamedTuple):
    """One class's devkit precision/recall curve over its score-sorted detections.

    ``recall``, ``precision``: ``(D,)`` float64 (NaN recall when ``npos`` is 0); ``npos``: the
    class's non-difficult ground-truth boxes.
    """

    recall: np.ndarray
    precision: np.ndarray
    npos: int


def pairwise_iou(boxes1: Tensor, boxes2: Tensor, pixel_plus_one: bool = False) -> Tensor:
    """``(N, M)`` IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes.

    ``pixel_plus_one``: the boxes are inclusive integer pixel indices (the devkit's convention):
    a box is ``x2 - x1 + 1`` wide. That is continuous IoU after ``x2 += 1, y2 += 1``.
    """
    if pixel_plus_one:
        one = boxes1.new_tensor([0.0, 0.0, 1.0, 1.0])
        boxes1, boxes2 = boxes1 + one, boxes2 + one
    return box_iou(boxes1, boxes2)


def match_image(
    pred_boxes: Tensor,
    pred_labels: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    iou_thresh: float = 0.5,
    pixel_plus_one: bool = False,
) -> Tensor:
    """One image: for each detection, the index of its best ground-truth box of the same class
    when their IoU is above ``iou_thresh``, else -1. ``(D,)`` int64.

    ``pred_boxes`` ``(D, 4)`` and ``gt_boxes`` ``(G, 4)`` xyxy in the same pixels, labels int64.
    Whether the box is difficult or already taken is decided later, over the whole dataset.
    """
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return torch.full((len(pred_boxes),), -1, dtype=torch.int64)
    iou = pairwise_iou(pred_boxes.double(), gt_boxes.double(), pixel_plus_one)
    iou = iou.masked_fill(pred_labels[:, None] != gt_labels[None, :], -math.inf)
    best, index = iou.max(1)
    return torch.where(best > iou_thresh, index, torch.full_like(index, -1))


def precision_recall(
    ground_truth: Mapping[int, Mapping[str, Tensor]],
    predictions: Mapping[int, Mapping[str, Tensor]],
    num_classes: int,
    iou_thresh: float = 0.5,
    pixel_plus_one: bool = False,
) -> list[ClassCurve]:
    """The devkit's precision/recall curve of each class ``0..num_classes-1`` (module docstring).

    Args:
        ground_truth: image id -> ``boxes`` ``(G, 4)`` xyxy, ``labels`` ``(G,)`` int64,
            ``difficult`` ``(G,)`` bool, CPU tensors. Its keys are the evaluated images.
        predictions: image id -> ``boxes`` ``(D, 4)`` xyxy (same pixels), ``scores`` ``(D,)``,
            ``labels`` ``(D,)`` int64, CPU tensors; an image missing here has no detections,
            and images missing from ``ground_truth`` are not evaluated.
    """
    scores, labels, matched, gt_labels, gt_difficult = [], [], [], [], []
    offset = 0
    for image_id, gt in ground_truth.items():
        pred = predictions.get(image_id)
        if pred is not None and len(pred["scores"]):
            index = match_image(
                pred["boxes"], pred["labels"], gt["boxes"], gt["labels"], iou_thresh, pixel_plus_one
            )
            matched.append(torch.where(index >= 0, index + offset, index))
            scores.append(pred["scores"].double())
            labels.append(pred["labels"])
        gt_labels.append(gt["labels"])
        gt_difficult.append(gt["difficult"])
        offset += len(gt["labels"])
    score, label, match = _cat(scores, torch.float64), _cat(labels), _cat(matched)
    gt_label, difficult = _cat(gt_labels), _cat(gt_difficult, torch.bool)
    return [
        _class_curve(score[label == c], match[label == c], difficult, gt_label, c)
        for c in range(num_classes)
    ]


def _cat(tensors: list[Tensor], dtype: torch.dtype = torch.int64) -> np.ndarray:
    return torch.cat([torch.zeros(0, dtype=dtype), *tensors]).numpy()


def _class_curve(
    score: np.ndarray, match: np.ndarray, difficult: np.ndarray, gt_label: np.ndarray, c: int
) -> ClassCurve:
    """Class ``c``'s curve from its detections' scores and dataset-wide matched box (-1: none)."""
    match = match[np.argsort(-score, kind="stable")]
    hit = match >= 0
    ignored = np.zeros(len(match), bool)
    ignored[hit] = difficult[match[hit]]
    counted = np.flatnonzero(hit & ~ignored)
    _, first = np.unique(match[counted], return_index=True)  # the first detection of each box
    tp = np.zeros(len(match), bool)
    tp[counted[first]] = True
    fp = ~tp & ~ignored
    npos = int(((gt_label == c) & ~difficult).sum())
    ctp, cfp = np.cumsum(tp, dtype=np.float64), np.cumsum(fp, dtype=np.float64)
    recall = ctp / npos if npos else np.full(len(match), math.nan)
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return ClassCurve(recall, precision, npos)


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """AP from a ``(D,)`` recall/precision curve (fractions): 11-point or area (module docstring)."""
    if use_07_metric:
        levels = np.arange(11) / 10
        return float(np.mean([precision[recall >= t].max(initial=0.0) for t in levels]))
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_metrics(
    curves: Sequence[ClassCurve], class_names: Sequence[str], metric: str
) -> dict[str, float]:
    """``mAP`` and ``AP-<class>`` in percent for ``metric`` ``"voc07"`` or ``"voc"``; NaN for a
    class without non-difficult ground truth, left out of ``mAP`` (NaN if every class is)."""
    aps = [
        voc_ap(c.recall, c.precision, metric == "voc07") * 100 if c.npos else math.nan
        for c in curves
    ]
    present = [ap for ap in aps if not math.isnan(ap)]
    out = {"mAP": float(np.mean(present)) if present else math.nan}
    out.update({f"AP-{name}": ap for name, ap in zip(class_names, aps, strict=True)})
    return out


def voc_ground_truth(
    coco_gt: COCO, cat_ids: Sequence[int], image_ids: Sequence[int]
) -> dict[int, dict[str, Tensor]]:
    """Image id -> ``boxes`` ``(G, 4)`` float64 xyxy (original pixels), ``labels`` ``(G,)`` int64
    (the index of the category id in ``cat_ids``), ``difficult`` ``(G,)`` bool (``iscrowd``)."""
    label_of = {c: i for i, c in enumerate(cat_ids)}
    out = {}
    for image_id in image_ids:
        anns = coco_gt.imgToAnns.get(int(image_id), [])
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        out[int(image_id)] = {
            "boxes": convert_boxes(xywh, "xywh", "xyxy"),
            "labels": torch.tensor([label_of[a["category_id"]] for a in anns], dtype=torch.int64),
            "difficult": torch.tensor([bool(a.get("iscrowd", 0)) for a in anns], dtype=torch.bool),
        }
    return out


class VocEvaluator:
    """Accumulates predictions over a dataset and computes Pascal VOC AP per class and mAP.

    Args:
        coco_gt: the dataset's ground truth (original pixels, its own category ids; ``iscrowd``
            boxes are VOC's difficult ones).
        cat_ids: label ``0..C-1`` -> the dataset's category id.
        metrics: which of ``"voc07"`` (11-point) and ``"voc"`` (area) to report.
        iou_thresh: a detection matches a box when their IoU is above it.
        pixel_plus_one: devkit ``+1`` widths (see the module docstring; off for visionkit boxes).
    """

    def __init__(
        self,
        coco_gt: COCO,
        cat_ids: Sequence[int],
        metrics: Sequence[str] = VOC_METRICS,
        iou_thresh: float = 0.5,
        pixel_plus_one: bool = False,
    ) -> None:
        unknown = [m for m in metrics if m not in VOC_METRICS]
        if unknown:
            raise ValueError(f"unknown VOC metric {unknown[0]!r}; expected one of {VOC_METRICS}")
        self.coco_gt, self.cat_ids = coco_gt, list(cat_ids)
        self.class_names = [coco_gt.cats[c]["name"] for c in self.cat_ids]
        self.metrics, self.iou_thresh = tuple(metrics), iou_thresh
        self.pixel_plus_one = pixel_plus_one
        self.predictions: dict[int, dict[str, Tensor]] = {}

    def process(self, targets: Sequence[dict], predictions: Sequence[dict[str, Tensor]]) -> None:
        """Add one batch: ``targets`` give ``image_id``; predictions ``boxes`` ``(D, 4)`` xyxy in
        original pixels, ``scores`` ``(D,)``, ``labels`` ``(D,)`` int64 (kept on the CPU)."""
        for t, p in zip(targets, predictions, strict=True):
            self.predictions[int(t["image_id"])] = {
                k: p[k].detach().cpu() for k in ("boxes", "scores", "labels")
            }

    def add_results(self, results: list[dict[str, Any]], image_ids: Sequence[int]) -> None:
        """Add COCO results (``bbox`` xywh, the dataset's category ids) for ``image_ids``."""
        preds = from_coco_results(results, self.cat_ids, image_ids)
        self.process([{"image_id": i} for i in image_ids], preds)

    @property
    def image_ids(self) -> list[int]:
        """The images processed so far, in order."""
        return list(self.predictions)

    @property
    def results(self) -> list[dict[str, Any]]:
        """The predictions so far as COCO results (``bbox`` xywh, the dataset's category ids)."""
        return [r for i, p in self.predictions.items() for r in to_coco_results(i, p, self.cat_ids)]

    def synchronize(self) -> None:
        """Distributed: rank 0 takes every rank's per-image predictions, dealt back into the
        dataset's order (:func:`~visionkit.utils.comm.gather_in_order`: the order breaks score
        ties), so that its scores are those of one process; the other ranks keep their own.
        Nothing in one process."""
        if not is_distributed():
            return
        images = gather_in_order(list(self.predictions.items()))
        if images is not None:
            self.predictions = dict(images)

    def evaluate(self) -> dict[str, dict[str, float]]:
        """``{"voc07": {"mAP": .., "AP-<class>": ..}, "voc": {...}}`` (those in ``metrics``),
        in percent, over the images processed."""
        gt = voc_ground_truth(self.coco_gt, self.cat_ids, list(self.predictions))
        curves = precision_recall(
            gt, self.predictions, len(self.cat_ids), self.iou_thresh, self.pixel_plus_one
        )
        return {m: voc_metrics(curves, self.class_names, m) for m in self.metrics}
