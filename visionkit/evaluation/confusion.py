"""The detection confusion matrix: which class each ground-truth object was detected as.

Rows are ground truth, columns predictions (as :func:`visionkit.evaluation.sem_seg.
confusion_matrix`), classes ``0..C-1`` then ``background`` at index ``C``: ``m[i, j]`` counts
objects of class ``i`` matched by a detection of class ``j``; ``m[i, C]`` objects of class ``i``
no detection matched (missed); ``m[C, j]`` detections of class ``j`` that matched no object
(false alarms). ``m[C, C]`` is always 0.

Per image, detections scoring at least ``score_thresh`` are matched to objects whatever their
classes (so that a class mix-up shows off the diagonal), by IoU >= ``iou_thresh``: the candidate
pairs sorted by IoU, each detection keeps its best object, then each object its best remaining
detection (one-to-one). An unmatched detection covering a crowd region (VOC: a difficult object)
with at least ``iou_thresh`` of its own area is neither a false alarm nor counted (COCOeval's rule
for crowds). Instance segmentation results are matched the same way by their masks' IoU
(:func:`coco_confusion` with ``iou_type="segm"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torchvision.ops import box_area, box_iou

from visionkit.evaluation.voc_eval import voc_ground_truth
from visionkit.structures.boxes import convert_boxes


def _covered(dets: torch.Tensor, crowds: torch.Tensor, thresh: float) -> np.ndarray:
    """``(D,)`` bool: some crowd box covers at least ``thresh`` of the detection's area."""
    if not len(crowds) or not len(dets):
        return np.zeros(len(dets), bool)
    lt = torch.maximum(dets[:, None, :2], crowds[None, :, :2])
    rb = torch.minimum(dets[:, None, 2:], crowds[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    ioa = inter / box_area(dets).clamp(min=1e-9)[:, None]
    return (ioa >= thresh).any(1).numpy()


def image_confusion(
    gt_boxes: torch.Tensor,
    gt_labels: np.ndarray,
    det_boxes: torch.Tensor,
    det_labels: np.ndarray,
    num_classes: int,
    crowd_boxes: torch.Tensor | None = None,
    iou_thresh: float = 0.5,
) -> np.ndarray:
    """One image's ``(C + 1, C + 1)`` int64 confusion matrix (module docstring); boxes xyxy,
    detections already thresholded by score."""
    iou = np.zeros((len(det_boxes), len(gt_boxes)))
    if len(det_boxes) and len(gt_boxes):
        iou = box_iou(det_boxes, gt_boxes).numpy()
    covered = None
    if crowd_boxes is not None:
        covered = _covered(det_boxes, crowd_boxes, iou_thresh)
    return match_confusion(iou, gt_labels, det_labels, num_classes, iou_thresh, covered)


def match_confusion(
    iou: np.ndarray,
    gt_labels: np.ndarray,
    det_labels: np.ndarray,
    num_classes: int,
    iou_thresh: float = 0.5,
    covered: np.ndarray | None = None,
) -> np.ndarray:
    """One image's ``(C + 1, C + 1)`` int64 confusion matrix from the ``(D, G)`` IoU of its
    detections (thresholded by score) with its objects, boxes' or masks': the one-to-one
    matching of the module docstring; ``covered`` ``(D,)`` bool, detections on a crowd region
    (neither matched nor false alarms)."""
    c = num_classes
    m = np.zeros((c + 1, c + 1), np.int64)
    d, g = np.nonzero(iou >= iou_thresh)
    for axis in (0, 1):  # each detection its best object, then each object its best one
        order = np.argsort(-iou[d, g], kind="stable")
        d, g = d[order], g[order]
        _, first = np.unique(d if axis == 0 else g, return_index=True)
        d, g = d[first], g[first]
    np.add.at(m, (gt_labels[g], det_labels[d]), 1)
    missed = np.ones(len(gt_labels), bool)
    missed[g] = False
    np.add.at(m, (gt_labels[missed], c), 1)
    alarm = np.ones(len(det_labels), bool)
    alarm[d] = False
    if covered is not None:
        alarm &= ~covered
    np.add.at(m, (c, det_labels[alarm]), 1)
    return m


def coco_confusion(
    coco_gt: COCO,
    results: Sequence[dict[str, Any]],
    image_ids: Sequence[int],
    score_thresh: float = 0.25,
    iou_thresh: float = 0.5,
    iou_type: str = "bbox",
) -> np.ndarray:
    """The confusion matrix of COCO results over ``image_ids``, classes in the order of
    ``coco_gt``'s sorted category ids; results of a category ``coco_gt`` does not have are left
    out (COCOeval ignores them too). ``iou_type`` ``"bbox"`` matches boxes; ``"segm"`` matches
    instance masks (results' ``segmentation`` RLEs with the objects', by pycocotools'
    ``mask.iou``; a crowd region covers a detection by the share of the detection's mask
    inside it)."""
    cat_ids = sorted(coco_gt.getCatIds())
    label_of = {c: i for i, c in enumerate(cat_ids)}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        if r["score"] >= score_thresh and r["category_id"] in label_of:
            by_image.setdefault(int(r["image_id"]), []).append(r)
    m = np.zeros((len(cat_ids) + 1,) * 2, np.int64)
    for image_id, g in voc_ground_truth(coco_gt, cat_ids, image_ids).items():
        gt, crowd = g["boxes"].float(), g["difficult"]  # iscrowd
        dets = by_image.get(image_id, [])
        det_labels = np.array([label_of[r["category_id"]] for r in dets], np.int64)
        gt_labels = g["labels"][~crowd].numpy()
        if iou_type == "segm":
            anns = coco_gt.imgToAnns.get(image_id, [])
            objects = [a for a, c in zip(anns, crowd.tolist(), strict=True) if not c]
            crowds = [a for a, c in zip(anns, crowd.tolist(), strict=True) if c]
            covered = (_mask_iou(coco_gt, dets, crowds, True) >= iou_thresh).any(1)
            iou = _mask_iou(coco_gt, dets, objects, False)
            m += match_confusion(iou, gt_labels, det_labels, len(cat_ids), iou_thresh, covered)
            continue
        m += image_confusion(
            gt[~crowd], gt_labels, _xyxy([r["bbox"] for r in dets]), det_labels, len(cat_ids),
            gt[crowd], iou_thresh,
        )  # fmt: skip
    return m


def _mask_iou(
    coco_gt: COCO, dets: Sequence[dict[str, Any]], anns: Sequence[dict[str, Any]], crowd: bool
) -> np.ndarray:
    """``(D, G)`` mask IoU of results' ``segmentation`` with ground-truth annotations
    (``crowd``: intersection over the detection's area, COCOeval's rule for crowd regions)."""
    if not dets or not anns:
        return np.zeros((len(dets), len(anns)))
    gts = [coco_gt.annToRLE(a) for a in anns]
    iou = mask_utils.iou([r["segmentation"] for r in dets], gts, [int(crowd)] * len(gts))
    return np.asarray(iou, np.float64).reshape(len(dets), len(anns))


def _xyxy(xywh: list[list[float]]) -> torch.Tensor:
    return convert_boxes(np.array(xywh, np.float32).reshape(-1, 4), "xywh", "xyxy")
