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

AT_LEAST_1 = (
    "train.epochs", "train.log_every", "train.accumulate_steps", "data.batch_size",
    "eval.batch_size", "model.num_classes", "model.yolo.grid_size", "model.yolo.boxes_per_cell",
    "model.yolo.max_detections", "model.resize.min_size", "model.resize.max_size",
    "model.resize.size_divisibility", "model.roi_head.max_detections",
    "model.roi_head.batch_size_per_image", "model.roi_head.pool_size",
    "model.rpn.batch_size_per_image", "model.rpn.pre_nms_top_n_train",
    "model.rpn.pre_nms_top_n_test", "model.rpn.post_nms_top_n_train",
    "model.rpn.post_nms_top_n_test",
)  # fmt: skip
AT_LEAST_0 = (
    "train.weight_decay", "train.warmup_epochs", "train.clip_grad_norm", "train.eval_every",
    "train.base_batch_size", "data.num_workers", "model.selective_search.max_proposals",
)  # fmt: skip
ABOVE_0 = ("train.lr", "train.gamma", "train.poly_power")
FRACTION = (  # in (0, 1]
    "train.warmup_factor", "model.yolo.nms_thresh", "model.roi_head.nms_thresh",
    "model.roi_head.positive_fraction", "model.rpn.nms_thresh", "model.rpn.positive_fraction",
)  # fmt: skip
DROPOUT = ("train.momentum", "model.yolo.dropout", "model.roi_head.dropout")  # in [0, 1)

# dotted key -> (test, what the value must be)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{k: (lambda v: v >= 1, "at least 1") for k in AT_LEAST_1},
    **{k: (lambda v: v >= 0, "at least 0") for k in AT_LEAST_0},
    **{k: (lambda v: v > 0, "above 0") for k in ABOVE_0},
    **{k: (lambda v: 0 < v <= 1, "in (0, 1]") for k in FRACTION},
    **{k: (lambda v: 0 <= v < 1, "in [0, 1)") for k in DROPOUT},
    "train.milestones": (lambda v: all(m > 0 for m in v), "epochs above 0"),
    "model.input_size": (
        lambda v: len(v) in (0, 2) and all(s >= 1 for s in v),
        "[] or [height, width] of positive sides",
    ),
    "model.pixel_std": (lambda v: len(v) == 3 and all(s > 0 for s in v), "3 values above 0"),
    "model.pixel_mean": (lambda v: len(v) == 3, "3 values"),
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
