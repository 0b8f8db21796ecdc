"""R-CNN's per-class linear SVMs (Girshick et al., 2014), trained with hard negative mining.

For each class ``c`` one linear scorer ``s_c(x) = w_c . x + b_c`` minimizes

    0.5 ||w_c||^2 + C * sum_i a_i * max(0, 1 - y_i s_c(x_i))

with ``y = +1`` for the ground-truth boxes of ``c`` (weight ``a = pos_weight``), ``y = -1`` for
the negatives currently in its training set (``a = 1``) and the bias unregularized. All classes
are solved together by full-batch LBFGS (strong Wolfe line search) on the cached features.

Hard negative mining (the paper's cache): starting from ``w = 0`` (every negative violates the
margin), each round scores the whole negative pool, keeps the negatives scoring above
``hard_thresh`` (inside the margin or misclassified) plus those already kept that are not yet easy
(score >= ``evict_thresh``), at most ``max_negatives`` per class, the highest first, and retrains.
"""

from __future__ import annotations

import torch
from torch import Tensor


def solve_linear_svms(
    x: Tensor,
    y: Tensor,
    C: float,
    pos_weight: float = 1.0,
    max_iter: int = 300,
    init: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Minimize the L2-regularized, weighted hinge loss of every class at once.

    Args:
        x: ``(R, D)`` float features.
        y: ``(R, K)`` per class: ``1`` positive, ``-1`` negative, ``0`` not in this class's set.
        C: the hinge losses' weight. pos_weight: the positives' extra weight.
        max_iter: LBFGS iterations. init: ``(K, D)`` weights and ``(K,)`` biases to start from.

    Returns:
        ``(K, D)`` float32 weights and ``(K,)`` biases.
    """
    x, y = x.float(), y.float()  # float32: LBFGS line searches on a full-batch loss
    k, d = y.shape[1], x.shape[1]
    w0, b0 = init if init is not None else (x.new_zeros(k, d), x.new_zeros(k))
    w = w0.detach().clone().float().requires_grad_(True)
    b = b0.detach().clone().float().requires_grad_(True)
    weight = torch.where(y > 0, pos_weight, 1.0) * (y != 0)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
        tolerance_grad=1e-9, tolerance_change=1e-12,
    )  # fmt: skip

    def closure() -> Tensor:
        opt.zero_grad()
        margins = (1 - y * (x @ w.T + b)).clamp(min=0)
        loss = 0.5 * w.pow(2).sum() + C * (weight * margins).sum()
        loss.backward()
        return loss

    if y.numel():
        opt.step(closure)
    return w.detach(), b.detach()


def hard_negatives(
    scores: Tensor,
    pool: Tensor,
    kept: Tensor,
    hard_thresh: float = -1.0001,
    evict_thresh: float = -1.2,
    max_negatives: int = 20000,
) -> Tensor:
    """One round of hard negative mining, for every class at once.

    Args:
        scores: ``(P, K)`` current SVM scores of the candidates.
        pool: ``(P, K)`` bool, the candidates that are negatives of each class.
        kept: ``(P, K)`` bool, the negatives kept in the previous round.
        hard_thresh: negatives scoring above it violate the margin (hinge loss > 0).
        evict_thresh: previously kept negatives scoring below it are dropped.
        max_negatives: at most this many per class, the highest-scoring first.

    Returns:
        ``(P, K)`` bool: the negatives of the next round's training sets.
    """
    keep = pool & ((scores > hard_thresh) | (kept & (scores >= evict_thresh)))
    ranked = torch.where(keep, scores.float(), -torch.inf)
    order = ranked.argsort(dim=0, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(0, order, torch.arange(len(order), device=order.device)[:, None].expand_as(order))
    return keep & (rank < max_negatives)


def train_linear_svms(
    features: Tensor,
    labels: Tensor,
    max_iou: Tensor,
    C: float = 1e-3,
    pos_weight: float = 2.0,
    neg_iou_thresh: float = 0.3,
    rounds: int = 3,
    hard_thresh: float = -1.0001,
    evict_thresh: float = -1.2,
    max_negatives: int = 20000,
    feature_norm: float = 20.0,
    max_iter: int = 300,
) -> tuple[Tensor, Tensor, dict[str, list[int]]]:
    """Per-class SVMs with hard negative mining on cached region features.

    Args:
        features: ``(T, D)`` float (or half) features of ground-truth boxes and proposals.
        labels: ``(T,)`` int64, the class ``0..K-1`` of a ground-truth row, ``-1`` for proposals.
        max_iou: ``(T, K)`` each proposal's best IoU with the boxes of each class.
        C, pos_weight, max_iter: :func:`solve_linear_svms`. neg_iou_thresh: proposals below it
            for a class are its negatives. rounds: mining + retraining rounds (>= 1).
        hard_thresh, evict_thresh, max_negatives: :func:`hard_negatives`.
        feature_norm: features are scaled so that their mean L2 norm is this (folded into the
            returned weights, which apply to unscaled features).

    Returns:
        ``(K, D)`` weights, ``(K,)`` biases, and per class ``positives``, ``negatives`` (pool),
        ``hard`` (in the last training set) and ``violators`` (pool negatives still scoring
        above ``hard_thresh`` after the last round).
    """
    num_classes = max_iou.shape[1]
    x = features.float()
    scale = feature_norm / x.norm(dim=1).mean().clamp(min=1e-12) if len(x) else 1.0
    x = x * scale
    pos = labels[:, None] == torch.arange(num_classes, device=labels.device)
    pool = (labels[:, None] < 0) & (max_iou.float() < neg_iou_thresh)
    w, b = x.new_zeros(num_classes, x.shape[1]), x.new_zeros(num_classes)
    kept = torch.zeros_like(pool)
    for _ in range(max(rounds, 1)):
        kept = hard_negatives(x @ w.T + b, pool, kept, hard_thresh, evict_thresh, max_negatives)
        rows = (pos | kept).any(1)
        y = pos[rows].float() - kept[rows].float()
        w, b = solve_linear_svms(x[rows], y, C, pos_weight, max_iter, (w, b))
    violators = pool & (x @ w.T + b > hard_thresh)
    stats = {
        "positives": pos.sum(0).tolist(),
        "negatives": pool.sum(0).tolist(),
        "hard": kept.sum(0).tolist(),
        "violators": violators.sum(0).tolist(),
    }
    return w * scale, b, stats
