"""Ranges and shapes of a config's numbers, checked once when it is loaded.

The loader checks each value's type; this checks what a type cannot say (a learning rate above
0, a batch of at least one image, an input size of two positive sides, a device that exists), so
that a bad value is one line naming key and file before any work, not a traceback from deep in
a model or a loader.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from visionkit.errors import ConfigError

# dotted key -> (test, what the value must be)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "train.epochs": (lambda v: v >= 1, "at least 1"),
    "train.lr": (lambda v: v > 0, "above 0"),
    "train.momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.weight_decay": (lambda v: v >= 0, "at least 0"),
    "train.gamma": (lambda v: v > 0, "above 0"),
    "train.poly_power": (lambda v: v > 0, "above 0"),
    "train.warmup_epochs": (lambda v: v >= 0, "at least 0"),
    "train.warmup_factor": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "train.clip_grad_norm": (lambda v: v >= 0, "at least 0 (0: no clipping)"),
    "train.eval_every": (lambda v: v >= 0, "at least 0 (0: only at the end)"),
    "train.log_every": (lambda v: v >= 1, "at least 1"),
    "train.accumulate_steps": (lambda v: v >= 1, "at least 1"),
    "train.base_batch_size": (lambda v: v >= 0, "at least 0"),
    "train.milestones": (lambda v: all(m > 0 for m in v), "epochs above 0"),
    "data.batch_size": (lambda v: v >= 1, "at least 1"),
    "data.num_workers": (lambda v: v >= 0, "at least 0"),
    "eval.batch_size": (lambda v: v >= 1, "at least 1"),
    "model.num_classes": (lambda v: v >= 1, "at least 1"),
    "model.input_size": (
        lambda v: len(v) in (0, 2) and all(s >= 1 for s in v),
        "[] or [height, width] of positive sides",
    ),
    "model.pixel_std": (lambda v: len(v) == 3 and all(s > 0 for s in v), "3 values above 0"),
    "model.pixel_mean": (lambda v: len(v) == 3, "3 values"),
    "model.yolo.grid_size": (lambda v: v >= 1, "at least 1"),
    "model.yolo.boxes_per_cell": (lambda v: v >= 1, "at least 1"),
    "model.yolo.max_detections": (lambda v: v >= 1, "at least 1"),
    "model.yolo.nms_thresh": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "model.yolo.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "model.resize.min_size": (lambda v: v >= 1, "at least 1"),
    "model.resize.max_size": (lambda v: v >= 1, "at least 1"),
    "model.resize.size_divisibility": (lambda v: v >= 1, "at least 1"),
    "model.roi_head.nms_thresh": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "model.roi_head.max_detections": (lambda v: v >= 1, "at least 1"),
    "model.roi_head.batch_size_per_image": (lambda v: v >= 1, "at least 1"),
    "model.roi_head.positive_fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "model.roi_head.pool_size": (lambda v: v >= 1, "at least 1"),
    "model.roi_head.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "model.rpn.nms_thresh": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "model.rpn.batch_size_per_image": (lambda v: v >= 1, "at least 1"),
    "model.rpn.positive_fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "model.rpn.pre_nms_top_n_train": (lambda v: v >= 1, "at least 1"),
    "model.rpn.pre_nms_top_n_test": (lambda v: v >= 1, "at least 1"),
    "model.rpn.post_nms_top_n_train": (lambda v: v >= 1, "at least 1"),
    "model.rpn.post_nms_top_n_test": (lambda v: v >= 1, "at least 1"),
    "model.selective_search.max_proposals": (lambda v: v >= 0, "at least 0 (0: all)"),
}
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _get(tree: Any, key: str) -> Any:
    for part in key.split("."):
        tree = getattr(tree, part, None)
        if tree is None:
            return None
    return tree


def validate_config(cfg: Any, where: Callable[[str], str]) -> None:
    """Raise a ConfigError naming the key and ``where(key)`` (its file, or the command line)
    for the first value of ``cfg`` outside its range (:data:`RULES`) or an unknown device."""
    for key, (ok, must) in RULES.items():
        value = _get(cfg, key)
        if value is not None and not ok(value):
            raise ConfigError(f"{where(key)}: '{key}' must be {must}, got {value!r}")
    device = cfg.train.device
    if not DEVICE.fullmatch(device):
        raise ConfigError(
            f"{where('train.device')}: 'train.device' must be auto, cpu, cuda or cuda:N, got "
            f"{device!r}"
        )
