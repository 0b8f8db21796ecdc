"""Checkpoint files written atomically and read with one-line errors, never unpickled, and the
weight specs (``torchvision:NAME[=PATH]``) read as checkpoints.

A checkpoint holds tensors and plain data only (dicts, lists, tuples, strings, numbers, None):
the model, optimizer, scheduler and scaler states, the resolved config as a plain dict, the
class names and the RNG states (NumPy's as a tensor). :func:`load_checkpoint` reads it with
``torch.load(weights_only=True)``, so a crafted file cannot run code; a file that needs more
(pickled objects of other classes: an old visionkit checkpoint with NumPy RNG state, or a
malicious one) is refused with one line naming ``visionkit convert-checkpoint``, which a user
runs deliberately on a file they trust.

Wherever weights are given (``--weights``, ``--init-from``), ``torchvision:NAME`` names
torchvision's COCO weights of ``NAME`` (``fasterrcnn_resnet50_fpn``, ``maskrcnn_resnet50_fpn``,
``fcn_resnet50``, ``fcn_resnet101``), read from ``<torch.hub.get_dir()>/checkpoints/`` under
torchvision's file name (downloaded there when the network allows), and ``torchvision:NAME=PATH``
the same from a local file; either becomes a checkpoint of the visionkit model that
``torchvision.py`` maps it to.
"""

from __future__ import annotations

import errno
import pickle
from pathlib import Path
from typing import Any

import torch

from visionkit.checkpoints.torchvision import (
    PREFIX,
    class_metadata,
    convert_state_dict,
    torchvision_model,
    weights_url,
)
from visionkit.errors import CheckpointError
from visionkit.io.atomic import atomic_path
from visionkit.io.outputs import files_of

RUN_CHECKPOINTS = ("best.pth", "last.pth")  # a run folder's checkpoint, first found


def run_files(path: str | Path) -> tuple[Path, Path | None]:
    """``(checkpoint, config.yaml or None)``: a run folder's best (else last) checkpoint and its
    config, or a checkpoint file (or ``torchvision:NAME`` spec) alone."""
    path = Path(path)
    if not path.is_dir():
        return path, None
    found = [path / n for n in RUN_CHECKPOINTS if (path / n).is_file()]
    if not found:
        raise CheckpointError(f"{path} holds no {' or '.join(RUN_CHECKPOINTS)} (not a run folder)")
    run_yaml = path / "config.yaml"
    return found[0], run_yaml if run_yaml.is_file() else None


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


CONVERT_HINT = "visionkit convert-checkpoint"


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
