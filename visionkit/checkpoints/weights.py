"""A checkpoint's weights into a model: strictly (evaluation, inference, resumption: a checkpoint
of another model or of another number of classes is a one-line error), or the tensors that match
in name and shape (fine-tuning with ``--init-from``, ``model.init_weights``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from visionkit.checkpoints.store import load_checkpoint
from visionkit.errors import CheckpointError
from visionkit.models.base import upgrade_state_dict


def load_model_weights(
    model: torch.nn.Module,
    ckpt: dict[str, Any],
    model_name: str,
    path: str,
    num_classes: int | None = None,
) -> None:
    """Load ``ckpt['model']`` into ``model``; a checkpoint of another model is a one-line error.

    With ``num_classes`` (the config's), tensors of another shape in a checkpoint of another
    number of classes are reported as such ("the checkpoint has 20 classes, the config 5").
    """
    saved = ckpt.get("model_name")
    if saved is not None and saved != model_name:
        raise CheckpointError(
            f"{path} holds a '{saved}' model, but the config builds '{model_name}'"
        )
    weights = ckpt.get("model", ckpt)
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        raise CheckpointError(f"{path}: its 'model' is not a state_dict (names -> tensors)")
    if weights and all(k.startswith("module.") for k in weights):  # saved from (D)DP's wrapper
        weights = {k.removeprefix("module."): v for k, v in weights.items()}
    weights = upgrade_state_dict(model, weights)  # keys renamed since the file was written
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [k for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        what = (
            f"{len(shapes)} tensors of another shape (e.g. {shapes[0]}: {tuple(weights[shapes[0]].shape)}"
            f" vs {tuple(own[shapes[0]].shape)})"
            if shapes
            else f"{len(missing)} missing and {len(unexpected)} unexpected keys"
            f" (e.g. {(missing or unexpected)[0]})"
        )
        classes = checkpoint_classes(ckpt)
        if shapes and None not in (classes, num_classes) and classes != num_classes:
            what = (
                f"the checkpoint has {classes} classes, the config {num_classes} ({what}); to "
                f"fine-tune from it, train with --init-from {path}"
            )
        raise CheckpointError(f"{path} does not match the configured model: {what}")
    model.load_state_dict(weights)


def checkpoint_classes(ckpt: dict[str, Any]) -> int | None:
    """The number of classes of the model a checkpoint holds (its config's ``model.num_classes``,
    else its ``class_names``); None for a bare state_dict."""
    config = ckpt.get("config")
    if isinstance(config, dict) and isinstance(config.get("model"), dict):
        classes = config["model"].get("num_classes")
        if isinstance(classes, int):
            return classes
    names = ckpt.get("class_names")
    return len(names) if isinstance(names, list) else None


def load_matching_weights(
    model: torch.nn.Module, state: Mapping[str, Any]
) -> tuple[list[str], list[str]]:
    """Load each tensor of ``state`` (a checkpoint or a bare state_dict) whose name and shape
    match one of ``model``'s (``strict=False``, and no shape errors).

    Returns:
        ``(loaded, skipped)``: ``model.state_dict()`` keys that were loaded, and those that keep
        their current values (absent from ``state``, or of another shape there).
    """
    weights = state["model"] if isinstance(state.get("model"), Mapping) else state
    weights = upgrade_state_dict(model, weights)  # keys renamed since the file was written
    own = model.state_dict()
    matching = {
        k: v
        for k, v in weights.items()
        if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape
    }
    model.load_state_dict(matching, strict=False)
    return [k for k in own if k in matching], [k for k in own if k not in matching]


def init_from_checkpoint(model: torch.nn.Module, path: str | Path) -> str:
    """Initialize ``model`` from the matching tensors of the checkpoint at ``path`` (fine-tuning,
    ``model.init_weights``) and return a one-line summary naming the skipped tensors' modules.

    Raises:
        CheckpointError: the file is missing or unreadable, or no tensor of it fits ``model``.
    """
    loaded, skipped = load_matching_weights(model, load_checkpoint(path))
    if not loaded:
        raise CheckpointError(f"{path}: no tensor matches the configured model in name and shape")
    modules = list(dict.fromkeys(k.rpartition(".")[0] or k for k in skipped))
    shown = ", ".join(modules[:8]) + (
        f", ... ({len(modules) - 8} more)" if len(modules) > 8 else ""
    )
    line = f"init from {path}: loaded {len(loaded)} tensors, skipped {len(skipped)}"
    return line + (f" (another shape or absent; kept as initialized): {shown}" if skipped else "")
