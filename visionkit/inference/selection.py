"""What ``Result[key]`` selects: a key checked and made a numpy index over ``n`` detections, or
a one-line ConfigError naming what was wrong (never numpy's or torch's own errors)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from visionkit.errors import ConfigError

TAKES = (
    "select detections with a bool mask of one value per detection, an int, a slice, or integer "
    "indices (a list, array or tensor)"
)


def _refuse(what: str) -> ConfigError:
    return ConfigError(f"Result[...]: {what}; {TAKES}")


def _as_array(key: Any) -> np.ndarray:
    """A tensor, array or list as a numpy array of bools or integers (a list of bools a mask,
    of ints indices, empty: no index); anything else refused."""
    if isinstance(key, torch.Tensor):
        if key.layout != torch.strided or key.dtype == torch.uint8:
            what = "a uint8" if key.dtype == torch.uint8 else f"a {key.layout}"
            raise _refuse(f"{what} tensor (torch once read uint8 as a mask: give bool or int64)")
        if key.dtype != torch.bool and (key.is_floating_point() or key.is_complex()):
            raise _refuse(f"a {str(key.dtype).removeprefix('torch.')} tensor")
        return key.detach().cpu().numpy()
    if isinstance(key, np.ndarray):
        return key
    if isinstance(key, list):
        if not key:  # nothing selected, as numpy reads []
            return np.zeros(0, np.int64)
        if all(isinstance(v, (bool, np.bool_)) for v in key):
            return np.array(key, dtype=bool)
        ints = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in key)
        if ints and all(-(2**63) <= int(v) < 2**63 for v in key):
            return np.array([int(v) for v in key], dtype=np.int64)
        raise _refuse("a list of other values than all bools or all integers")
    if isinstance(key, tuple):
        raise _refuse("a tuple (one axis only: give a list)")
    raise _refuse(f"a {type(key).__name__}")


def detection_index(key: Any, n: int) -> slice | np.ndarray:
    """``key`` as a numpy index over ``n`` detections: a slice, or ``(K,)`` int64 positions.

    Args:
        key: a ``slice`` of ints or None; an int (negative from the end); a bool mask of ``n``
            values (numpy array, torch tensor or list of bools); integer indices (numpy array,
            torch tensor of a signed or unsigned integer type but uint8, or list of ints), each
            in ``-n..n-1``.
        n: the number of detections.

    Raises:
        ConfigError: one line naming what was wrong: a mask of another length, an index out of
            range, a float, bool scalar, multi-dimensional or other key.
    """
    if isinstance(key, slice):
        parts = (key.start, key.stop, key.step)
        if not all(v is None or isinstance(v, numbers.Integral) for v in parts):
            raise _refuse(f"a slice of {', '.join(type(v).__name__ for v in parts)}")
        if key.step == 0:
            raise _refuse("a slice step of 0")
        return slice(*(None if v is None else int(v) for v in parts))
    if isinstance(key, (bool, np.bool_)):
        raise _refuse(f"a bool ({key!r}), not a mask")
    if isinstance(key, numbers.Integral):
        if not -n <= int(key) < n:
            raise _refuse(f"index {int(key)} out of range for {n} detections")
        return np.array([int(key)], np.int64)
    arr = _as_array(key)
    if arr.ndim == 0 and arr.dtype.kind in "iu":  # torch.tensor(2), np.array(2): an int
        arr = arr.reshape(1)
    kind = arr.dtype.kind
    if kind not in "biu":
        raise _refuse(f"a {arr.dtype} array")
    if arr.ndim != 1:
        raise _refuse(f"a {arr.dtype} array of shape {arr.shape} (one value per detection)")
    if kind == "b":
        if len(arr) != n:
            raise _refuse(f"a mask of {len(arr)} values for {n} detections")
        return np.flatnonzero(arr)
    outside = arr >= n
    if kind == "i":
        outside |= arr < -n
    if outside.any():
        raise _refuse(f"index {int(arr[outside][0])} out of range for {n} detections")
    return arr.astype(np.int64)
