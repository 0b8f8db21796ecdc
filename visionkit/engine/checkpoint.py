"""Checkpoints written atomically and read with one-line errors."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.errors import CheckpointError


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` through a temp file in the same folder, then rename.

    A crash or kill during the write leaves the previous file at ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (or a bare state_dict)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}") from None


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states, for exact resumption."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_model_weights(
    model: torch.nn.Module, ckpt: dict[str, Any], model_name: str, path: str
) -> None:
    """Load ``ckpt['model']`` into ``model``; a checkpoint of another model is a one-line error."""
    saved = ckpt.get("model_name")
    if saved is not None and saved != model_name:
        raise CheckpointError(
            f"{path} holds a '{saved}' model, but the config builds '{model_name}'"
        )
    weights = ckpt.get("model", ckpt)
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
        raise CheckpointError(f"{path} does not match the configured model: {what}")
    model.load_state_dict(weights)
