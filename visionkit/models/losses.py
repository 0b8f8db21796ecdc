"""Losses shared by the detectors' heads."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def box_regression_loss(pred: Tensor, target: Tensor, beta: float) -> Tensor:
    """Summed smooth-L1 (Huber with transition ``beta``) between ``(K, 4)`` predicted and target
    deltas, or L1 when ``beta`` is 0; the caller divides by its normalizer. Computed in
    float32."""
    pred, target = pred.float(), target.float()
    if beta > 0:
        return F.smooth_l1_loss(pred, target, beta=beta, reduction="sum")
    return F.l1_loss(pred, target, reduction="sum")
