"""Optimizers and per-iteration learning-rate schedules (warmup, then step, cosine or poly)."""

from __future__ import annotations

import math

import torch
from torch import nn

from visionkit.config.schema import TrainConfig


def scaled_lr(cfg: TrainConfig, batch_size: int, world_size: int) -> float:
    """The learning rate of a run with ``world_size`` processes of ``batch_size`` images.

    ``lr_scaling: none`` keeps ``cfg.lr``; ``linear`` (Goyal et al., 2017) multiplies it by the
    images of one optimizer step, ``world_size * accumulate_steps * batch_size``, over
    ``base_batch_size`` (0: ``batch_size``, i.e. ``cfg.lr`` is one process's without accumulation).
    """
    if cfg.lr_scaling == "none":
        return cfg.lr
    total = world_size * cfg.accumulate_steps * batch_size
    return cfg.lr * total / (cfg.base_batch_size or batch_size)


def build_optimizer(
    cfg: TrainConfig, model: nn.Module, lr: float | None = None
) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay) or AdamW at ``lr`` (default ``cfg.lr``); norm and bias
    parameters get no weight decay."""
    lr = cfg.lr if lr is None else lr
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.dim() <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def lr_factor(cfg: TrainConfig, iteration: int, iters_per_epoch: int) -> float:
    """The multiplier of ``cfg.lr`` at ``iteration`` (0-based, counted over the whole run).

    Linear warmup from ``warmup_factor`` over ``warmup_epochs``; then ``step`` multiplies by
    ``gamma`` at each milestone epoch, ``cosine`` decays to 0 at the last iteration, ``poly``
    multiplies by ``(1 - iteration / total) ** poly_power`` (DeepLab, torchvision's references).
    """
    epoch = iteration / iters_per_epoch
    warm = 1.0
    if epoch < cfg.warmup_epochs:
        warm = cfg.warmup_factor + (1 - cfg.warmup_factor) * epoch / cfg.warmup_epochs
    if cfg.scheduler == "step":
        return warm * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if cfg.scheduler == "cosine":
        total = cfg.epochs * iters_per_epoch
        return warm * 0.5 * (1 + math.cos(math.pi * min(iteration / max(total, 1), 1.0)))
    if cfg.scheduler == "poly":
        total = cfg.epochs * iters_per_epoch
        return warm * (1 - min(iteration / max(total, 1), 1.0)) ** cfg.poly_power
    return warm


def build_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, iters_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepped once per iteration."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(cfg, it, iters_per_epoch)
    )
