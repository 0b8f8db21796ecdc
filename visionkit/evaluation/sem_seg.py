"""Semantic segmentation metrics: a confusion matrix accumulated on the device, then the FCN
paper's four numbers (pixel accuracy, mean accuracy, mean IU, frequency-weighted IU) and per-class
IoU and accuracy, in percent, laid out as detectron2's ``SemSegEvaluator``.

With ``n_ij`` the pixels of class ``i`` predicted as ``j`` and ``t_i = sum_j n_ij``:
``pACC = sum_i n_ii / sum_i t_i``, ``mACC = mean_i n_ii / t_i``,
``IoU_i = n_ii / (t_i + sum_j n_ji - n_ii)``, ``mIoU = mean_i IoU_i``,
``fwIoU = sum_i t_i IoU_i / sum_i t_i``. A class absent from the ground truth (``t_i = 0``) has
NaN IoU and accuracy and is left out of the means; its false positives still lower the IoU of
the classes they were taken from. Pixels labelled ``ignore_index`` are not counted.

Boundary quality is the trimap measure (Kohli et al., 2009; used by DeepLab, Chen et al., 2015):
the same mean IU and pixel accuracy over the pixels within ``w`` pixels of a ground-truth label
boundary only, ``bIoU@w`` and ``bACC@w``. A pixel is within ``w`` of a boundary when some pixel of
another label lies in its ``(2w + 1) x (2w + 1)`` window (Chebyshev distance <= ``w``,
8-connected), the ignore label counting as a label, so that a step edge gets a band of ``w``
pixels on each side; ignored pixels themselves are never counted. VOC and the shapes dataset draw
objects' outlines as ignore, so there the band is ``w`` pixels on either side of that outline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from visionkit.errors import DataError
from visionkit.structures.labels import IGNORE_LABEL
from visionkit.utils.comm import all_reduce_sum, is_distributed


def confusion_matrix(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_LABEL
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


def boundary_band(target: Tensor, width: int) -> Tensor:
    """The trimap band: ``True`` where a pixel of another label (any value, 255 included) lies
    within Chebyshev distance ``width`` (>= 1).

    ``target``: ``(..., H, W)`` integer label map (values below 2**24); returns a bool tensor of
    its shape on its device. The window holds another label exactly when its maximum and minimum
    differ: one separable max-pool (a row, then a column of ``2 * width + 1``) of the labels and
    their negatives. Outside the image nothing counts.
    """
    y = target.reshape(-1, 1, *target.shape[-2:]).float()
    k = 2 * width + 1
    rows = F.max_pool2d(torch.cat([y, -y], 1), (1, k), stride=1, padding=(0, width))
    high_low = F.max_pool2d(rows, (k, 1), stride=1, padding=(width, 0))
    return (high_low[:, 0] != -high_low[:, 1]).view(target.shape)


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
    """Accumulates confusion matrices over a dataset (on the predictions' device): the whole
    images' and, per boundary width, that of the pixels in the band.

    Args:
        class_names: label ``0..C-1`` -> name (background first).
        ignore_index: the ground-truth value that is not counted.
        boundary_widths: trimap band widths in pixels (>= 1), each reported as ``bIoU@w`` and
            ``bACC@w``. Default 3: around the shapes dataset's 2-px ignored outlines, 3 counted
            pixels on each side, well inside one stride-8 output cell of the quick FCN-8s (16
            image pixels), so it measures where the upsampled scores put an edge.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        ignore_index: int = IGNORE_LABEL,
        boundary_widths: Sequence[int] = (3,),
    ) -> None:
        if any(w < 1 for w in boundary_widths):
            raise ValueError(f"boundary widths must be >= 1, got {tuple(boundary_widths)}")
        self.class_names = list(class_names)
        self.ignore_index = ignore_index
        self.boundary_widths = tuple(boundary_widths)
        self.counts: Tensor | None = None  # (1 + len(boundary_widths), C, C) int64

    @property
    def conf(self) -> Tensor | None:
        """The whole images' ``(C, C)`` confusion matrix (rows ground truth), if any."""
        return None if self.counts is None else self.counts[0]

    def zero_counts(self) -> Tensor:
        """``(1 + len(boundary_widths), C, C)`` int64 zeros on the CPU: no pixel counted."""
        c = len(self.class_names)
        return torch.zeros(1 + len(self.boundary_widths), c, c, dtype=torch.long)

    def process(self, targets: Sequence[dict], predictions: Sequence[dict[str, Tensor]]) -> None:
        """Add one batch: targets' ``sem_seg`` and predictions' ``sem_seg``, original pixels,
        ``(H, W)`` integer label maps."""
        c = len(self.class_names)
        for t, p in zip(targets, predictions, strict=True):
            pred, target = p["sem_seg"], t["sem_seg"].to(p["sem_seg"].device)
            if tuple(target.shape) != tuple(pred.shape):
                raise DataError(
                    f"image {t['image_id']}: prediction {tuple(pred.shape)} and ground "
                    f"truth {tuple(target.shape)} differ in size"
                )
            confs = [confusion_matrix(pred, target, c, self.ignore_index)]
            for w in self.boundary_widths:
                outside = ~boundary_band(target, w)
                banded = target.masked_fill(outside, self.ignore_index)
                confs.append(confusion_matrix(pred, banded, c, self.ignore_index))
            counts = torch.stack(confs)
            self.counts = counts if self.counts is None else self.counts + counts

    def synchronize(self) -> None:
        """Distributed: sum every rank's confusion matrices (one ``all_reduce``), so that each
        rank holds those of the whole dataset; nothing in one process."""
        if is_distributed():
            counts = self.counts if self.counts is not None else self.zero_counts()
            self.counts = all_reduce_sum(counts)

    def evaluate(self) -> dict[str, dict[str, float]]:
        """``{"sem_seg": {"mIoU": .., "fwIoU": .., "mACC": .., "pACC": .., "IoU-<class>": ..,
        "ACC-<class>": .., "bIoU@<w>": .., "bACC@<w>": ..}}``, in percent."""
        counts = self.counts if self.counts is not None else self.zero_counts()
        out = segmentation_metrics(counts[0], self.class_names)
        for w, conf in zip(self.boundary_widths, counts[1:], strict=True):
            band = segmentation_metrics(conf, self.class_names)
            out[f"bIoU@{w}"], out[f"bACC@{w}"] = band["mIoU"], band["pACC"]
        return {"sem_seg": out}
