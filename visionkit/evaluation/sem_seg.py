"""Semantic segmentation metrics: a confusion matrix accumulated on the device, then the FCN
paper's four numbers (pixel accuracy, mean accuracy, mean IU, frequency-weighted IU) and per-class
IoU and accuracy, in percent, laid out as detectron2's ``SemSegEvaluator``.

With ``n_ij`` the pixels of class ``i`` predicted as ``j`` and ``t_i = sum_j n_ij``:
``pACC = sum_i n_ii / sum_i t_i``, ``mACC = mean_i n_ii / t_i``,
``IoU_i = n_ii / (t_i + sum_j n_ji - n_ii)``, ``mIoU = mean_i IoU_i``,
``fwIoU = sum_i t_i IoU_i / sum_i t_i``. A class absent from the ground truth (``t_i = 0``) has
NaN IoU and accuracy and is left out of the means; its false positives still lower the IoU of
the classes they were taken from. Pixels labelled ``ignore_index`` are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from visionkit.errors import DataError


def confusion_matrix(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255
) -> Tensor:
    """``(C, C)`` int64 counts, rows ground truth, columns prediction, on ``pred``'s device.

    ``pred`` and ``target`` are integer label maps of one shape; target values other than
    ``0..C-1`` and ``ignore_index`` are a DataError.
    """
    target = target.to(pred.device)
    valid = target != ignore_index
    gt, pr = target[valid].long(), pred[valid].long()
    if gt.numel() and (gt.min() < 0 or gt.max() >= num_classes):
        bad = gt[(gt < 0) | (gt >= num_classes)][0]
        raise DataError(
            f"ground-truth label {int(bad)} outside 0..{num_classes - 1} and {ignore_index}"
        )
    counts = torch.bincount(gt * num_classes + pr, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def segmentation_metrics(conf: Tensor, class_names: Sequence[str]) -> dict[str, float]:
    """``mIoU``, ``fwIoU``, ``mACC``, ``pACC`` and ``IoU-<class>``, ``ACC-<class>`` in percent
    from a ``(C, C)`` confusion matrix (rows ground truth); see the module docstring."""
    conf = conf.double().cpu()
    tp, gt, pred = conf.diag(), conf.sum(1), conf.sum(0)
    present = gt > 0
    nan = torch.full_like(tp, math.nan)
    iou = torch.where(present, tp / (gt + pred - tp).clamp(min=1), nan)
    acc = torch.where(present, tp / gt.clamp(min=1), nan)
    total = gt.sum()
    out = {
        "mIoU": float(iou[present].mean()) * 100 if present.any() else math.nan,
        "fwIoU": float((gt[present] * iou[present]).sum() / total) * 100 if total else math.nan,
        "mACC": float(acc[present].mean()) * 100 if present.any() else math.nan,
        "pACC": float(tp.sum() / total) * 100 if total else math.nan,
    }
    for name, v in zip(class_names, iou.tolist(), strict=True):
        out[f"IoU-{name}"] = v * 100
    for name, v in zip(class_names, acc.tolist(), strict=True):
        out[f"ACC-{name}"] = v * 100
    return out


class SemSegEvaluator:
    """Accumulates a confusion matrix over a dataset (on the predictions' device).

    Args:
        class_names: label ``0..C-1`` -> name (background first).
        ignore_index: the ground-truth value that is not counted.
    """

    def __init__(self, class_names: Sequence[str], ignore_index: int = 255) -> None:
        self.class_names = list(class_names)
        self.ignore_index = ignore_index
        self.conf: Tensor | None = None

    def process(self, targets: Sequence[dict], predictions: Sequence[dict[str, Tensor]]) -> None:
        """Add one batch: targets' ``sem_seg`` and predictions' ``sem_seg``, original pixels."""
        c = len(self.class_names)
        for t, p in zip(targets, predictions, strict=True):
            if tuple(t["sem_seg"].shape) != tuple(p["sem_seg"].shape):
                raise DataError(
                    f"image {t['image_id']}: prediction {tuple(p['sem_seg'].shape)} and ground "
                    f"truth {tuple(t['sem_seg'].shape)} differ in size"
                )
            conf = confusion_matrix(p["sem_seg"], t["sem_seg"], c, self.ignore_index)
            self.conf = conf if self.conf is None else self.conf + conf

    def evaluate(self) -> dict[str, dict[str, float]]:
        """``{"sem_seg": {"mIoU": .., "fwIoU": .., "mACC": .., "pACC": .., "IoU-<class>": ..}}``."""
        c = len(self.class_names)
        conf = self.conf if self.conf is not None else torch.zeros(c, c, dtype=torch.long)
        return {"sem_seg": segmentation_metrics(conf, self.class_names)}
