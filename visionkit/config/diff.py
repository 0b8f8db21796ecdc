"""Configs compared key by key: the config a model was trained with (its checkpoint's, or the
one an exported ONNX file holds) against the one given now.

A trained model is the truth about itself: its weights fit the ``model.*`` settings it was built
with, so a ``model.*`` key that differs is refused in one line naming the key with both values,
unless it is one of :data:`TEST_TIME_MODEL_KEYS` (read only when predicting, or only to
initialize weights that the checkpoint's then replace). ``data.*`` and ``eval.*`` may differ
(another dataset, batch size or COCOeval backend): each difference is one line for the caller to
show. ``train.*`` is not compared: evaluation and inference read only ``train.device`` (where
the model runs) and ``train.channels_last`` (its memory layout), neither of which changes a
result. ``engine/resume.py`` holds a resumed run to a stricter rule through the same functions.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from visionkit.config.loader import config_to_dict
from visionkit.config.schema import Config
from visionkit.errors import ConfigError

# The model keys that may differ from a trained model's: none of them shapes a weight or is read
# by training's loss (tests/test_checkpoint_truth.py checks both for each key), so the stored
# weights fit whatever they say.
TEST_TIME_MODEL_KEYS: dict[str, str] = {
    "model.yolo.score_thresh": "test time",
    "model.yolo.nms_thresh": "test time",
    "model.yolo.max_detections": "test time",
    "model.roi_head.score_thresh": "test time",
    "model.roi_head.nms_thresh": "test time",
    "model.roi_head.max_detections": "test time",
    "model.rpn.pre_nms_top_n_test": "test time",
    "model.rpn.post_nms_top_n_test": "test time",
    "model.selective_search.mode": "test time: the proposals predict computes",
    "model.selective_search.max_proposals": "test time: the proposals predict computes",
    "model.rcnn.svm.score_thresh": "test time",
    "model.rcnn.chunk_size": "regions per forward pass: memory, not results",
    "model.backbone.pretrained": "initialization only: the checkpoint holds the weights",
    "model.init_weights": "initialization only: the checkpoint holds the weights",
}
TEST_TIME_HINT = (
    "of model.*, only test-time settings may differ: score and NMS thresholds, detection caps, "
    "test-time proposal counts"
)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys of flat ``new`` that flat ``old`` holds with another value, in ``new``'s order
    (keys absent from ``old``, e.g. an older checkpoint's config, are not compared)."""
    return [k for k in new if k in old and old[k] != new[k]]


def show_changes(old: dict[str, Any], new: dict[str, Any], keys: list[str], limit: int = 4) -> str:
    """``"model.yolo.grid_size 7 -> 5; ..."``: the first ``limit`` of ``keys``, old -> new."""
    shown = "; ".join(f"{k} {old[k]!r} -> {new[k]!r}" for k in keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def trained_config_changes(
    stored: dict[str, Any] | Config,
    cfg: Config,
    where: str,
    may_change: Collection[str] = TEST_TIME_MODEL_KEYS,
    hint: str = TEST_TIME_HINT,
) -> list[str]:
    """Check ``cfg`` (the config given now) against ``stored``, the config the model of
    ``where`` was built with (a plain dict as :func:`config_to_dict` gives, or a Config).

    Returns:
        One line per ``data.*``, ``eval.*`` and allowed ``model.*`` key that differs
        (``"data.val.num_images: 50 (best.pth's config: 8)"``), for the caller to print or warn.

    Raises:
        ConfigError: a ``model.*`` key outside ``may_change`` differs; the message names every
            such key with its stored and given value, and ends with ``hint``.
    """
    old = flatten(stored if isinstance(stored, dict) else config_to_dict(stored))
    new = flatten(config_to_dict(cfg))
    changed = [k for k in changed_keys(old, new) if not k.startswith("train.")]
    refused = [k for k in changed if k.startswith("model.") and k not in may_change]
    if refused:
        raise ConfigError(
            f"{where}: the model is built from the config stored with it, but "
            f"{show_changes(old, new, refused)} (stored -> given) differ; drop the change ({hint})"
        )
    return [f"{k}: {new[k]!r} ({where}'s config: {old[k]!r})" for k in changed]
