"""Checkpoints written atomically and read with one-line errors, never unpickled.

A checkpoint holds tensors and plain data only (dicts, lists, tuples, strings, numbers, None):
the model, optimizer, scheduler and scaler states, the resolved config as a plain dict, the
class names and the RNG states (NumPy's as a tensor). :func:`load_checkpoint` reads it with
``torch.load(weights_only=True)``, so a crafted file cannot run code; a file that needs more
(pickled objects of other classes: an old visionkit checkpoint with NumPy RNG state, or a
malicious one) is refused with one line naming ``tools/convert_checkpoint.py``, which a user
runs deliberately on a file they trust.

Wherever weights are given (``--weights``, ``--init-from``), ``torchvision:NAME`` names
torchvision's COCO weights of ``NAME`` (``fasterrcnn_resnet50_fpn``, ``fcn_resnet50``,
``fcn_resnet101``), read from ``<torch.hub.get_dir()>/checkpoints/`` under torchvision's file
name (downloaded there when the network allows), and ``torchvision:NAME=PATH`` the same from a
local file; either becomes a checkpoint of the visionkit model that
``models/torchvision_weights.py`` maps it to.
"""

from __future__ import annotations

import errno
import pickle
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.errors import CheckpointError
from visionkit.io.atomic import atomic_path
from visionkit.io.outputs import files_of
from visionkit.models.base import upgrade_state_dict
from visionkit.models.torchvision_weights import (
    PREFIX,
    class_metadata,
    convert_state_dict,
    torchvision_model,
    weights_url,
)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically (:func:`visionkit.io.atomic.atomic_path`, flushed
    to the disk before the rename): a crash, a kill or a full disk during the write leaves the
    previous file at ``path`` untouched; a failure is a one-line error."""
    with atomic_path(path, fsync=True) as tmp, tmp.open("wb") as f:
        try:
            torch.save(state, f)  # through Python's file: a full disk is mostly an OSError ...
        except RuntimeError as e:  # ... but a short write is torch's "unexpected pos"
            raise OSError(
                errno.EIO, f"the write stopped short ({str(e).strip().splitlines()[0]})"
            ) from None


def weights_inputs(spec: str | Path | None) -> list[Path]:
    """The user's files a weights argument reads, for the output rule: a checkpoint, a run
    folder's files, ``PATH`` of ``torchvision:NAME=PATH``; none for ``torchvision:NAME`` (in
    torch.hub's cache) or None."""
    if spec is None:
        return []
    if str(spec).startswith(PREFIX):
        path = str(spec).partition("=")[2]
        return [Path(path)] if path else []
    return files_of(spec)


CONVERT_HINT = "python tools/convert_checkpoint.py"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (or a bare state_dict) with
    ``weights_only=True``; ``torchvision:NAME[=PATH]``: :func:`torchvision_checkpoint`.

    Raises:
        CheckpointError: missing, unreadable, not a dict, or holding pickled objects beyond
            tensors and plain data (refused without running anything).
    """
    if str(path).startswith(PREFIX):
        return torchvision_checkpoint(str(path), map_location)
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} holds pickled Python objects besides tensors and plain data; visionkit does "
            f"not unpickle them (that can run code). If you trust the file, convert it once: "
            f"{CONVERT_HINT} {path} OUTPUT.pth"
        ) from None
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"{path} holds a {type(ckpt).__name__}, not a checkpoint or a state_dict"
        )
    return ckpt


def torchvision_checkpoint(spec: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torchvision:NAME`` (the file in ``<torch.hub.get_dir()>/checkpoints/``, downloaded
    there if absent and the network allows) or ``torchvision:NAME=PATH`` -> a checkpoint of the
    visionkit model: ``model`` (the converted state dict), ``model_name``, ``class_names``,
    ``cat_ids`` and ``config.model.num_classes``.

    Raises:
        CheckpointError: an unknown NAME; no file and no download (one line naming the file and
            the folder to put it in); an unreadable file or one of another model.
    """
    name, _, path = spec.removeprefix(PREFIX).partition("=")
    entry = torchvision_model(name)
    if path:
        state = load_checkpoint(path, map_location)
    else:
        url, filename = weights_url(name)
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        if (folder / filename).is_file():
            state = load_checkpoint(folder / filename, map_location)
        else:
            try:
                state = torch.hub.load_state_dict_from_url(
                    url, str(folder), map_location, progress=False, weights_only=True
                )
            except Exception:
                raise CheckpointError(
                    f"torchvision weights {filename} are not in {folder} and could not be "
                    f"downloaded: put the file there (from {url}), or give {PREFIX}{name}=PATH"
                ) from None
    names, cat_ids = class_metadata(name)
    return {
        "model": convert_state_dict(name, state),
        "model_name": entry.model_name,
        "class_names": names,
        "cat_ids": cat_ids,
        "config": {"model": {"num_classes": len(names)}},
    }


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain data, for exact resumption."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    keys = np.asarray(keys.numpy() if isinstance(keys, torch.Tensor) else keys, dtype=np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
