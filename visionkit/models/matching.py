"""Assigning ground truth to anchors or proposals, and sampling a balanced training subset.

:class:`Matcher` labels each candidate box by its best IoU with the ground truth: IoU intervals
map to labels (1 foreground, 0 background, -1 ignored). :class:`BalancedSampler` then draws a
fixed number of candidates per image with at most a given fraction of foreground.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

FOREGROUND, BACKGROUND, IGNORE = 1, 0, -1


class Matcher:
    """Match candidates to ground truth by IoU.

    ``thresholds`` ``t_1 < ... < t_k`` split IoU into the ``k + 1`` intervals ``(-inf, t_1)``,
    ``[t_1, t_2)``, ..., ``[t_k, inf)``, labelled ``labels[0..k]``. RPN (paper): thresholds
    ``(0.3, 0.7)``, labels ``(0, -1, 1)``; Fast R-CNN head: ``(0.1, 0.5)``, ``(-1, 0, 1)``.

    Args:
        thresholds: increasing IoU thresholds.
        labels: one label per interval, each of 1, 0, -1.
        allow_low_quality_matches: also label 1 the candidates with the highest IoU for each
            ground truth (ties included; only where that IoU is above 0), so that every object
            has a positive even when no candidate reaches the top threshold (RPN rule (i)).
    """

    def __init__(
        self,
        thresholds: Sequence[float],
        labels: Sequence[int],
        allow_low_quality_matches: bool = False,
    ) -> None:
        if len(labels) != len(thresholds) + 1:
            raise ValueError(f"{len(thresholds)} thresholds need {len(thresholds) + 1} labels")
        if list(thresholds) != sorted(thresholds):
            raise ValueError(f"matcher thresholds must increase: {list(thresholds)}")
        self.thresholds = [float(t) for t in thresholds]
        self.labels = [int(v) for v in labels]
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, iou: Tensor) -> tuple[Tensor, Tensor]:
        """Match.

        Args:
            iou: ``(M, N)`` float IoU of M ground-truth boxes with N candidates (M may be 0).

        Returns:
            ``matches`` ``(N,)`` int64, the index of each candidate's best ground truth, and
            ``match_labels`` ``(N,)`` int8 in {1, 0, -1}. With no ground truth (M = 0) every
            candidate is background (matches 0), whatever the lowest interval's label.
        """
        n = iou.shape[1]
        if iou.shape[0] == 0:
            matches = torch.zeros(n, dtype=torch.int64, device=iou.device)
            return matches, torch.full((n,), BACKGROUND, dtype=torch.int8, device=iou.device)
        best, matches = iou.max(0)
        match_labels = torch.full((n,), self.labels[0], dtype=torch.int8, device=iou.device)
        for t, label in zip(self.thresholds, self.labels[1:], strict=True):
            match_labels[best >= t] = label
        if self.allow_low_quality_matches:
            best_per_gt = iou.max(1, keepdim=True).values
            is_best = ((iou == best_per_gt) & (best_per_gt > 0)).any(0)
            match_labels[is_best] = FOREGROUND
        return matches, match_labels


class BalancedSampler:
    """Draw up to ``batch_size_per_image`` candidates, at most ``positive_fraction`` of them
    foreground, the rest background (fewer foreground leaves room for more background).

    Args:
        batch_size_per_image: candidates sampled per image (RPN: 256; Fast R-CNN head: 128).
        positive_fraction: the largest share of foreground (RPN: 0.5; Fast R-CNN: 0.25).
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, match_labels: Tensor) -> tuple[Tensor, Tensor]:
        """``match_labels`` ``(N,)`` in {1, 0, -1} -> int64 indices of the sampled foreground and
        background candidates (ignored ones are never drawn)."""
        pos = torch.nonzero(match_labels == FOREGROUND).squeeze(1)
        neg = torch.nonzero(match_labels == BACKGROUND).squeeze(1)
        num_pos = min(pos.numel(), int(self.batch_size_per_image * self.positive_fraction))
        num_neg = min(neg.numel(), self.batch_size_per_image - num_pos)
        pos = pos[torch.randperm(pos.numel(), device=pos.device)[:num_pos]]
        neg = neg[torch.randperm(neg.numel(), device=neg.device)[:num_neg]]
        return pos, neg
