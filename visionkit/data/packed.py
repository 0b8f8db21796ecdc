"""Dataset indexes that DataLoader workers share without copying.

A forked worker shares its parent's memory page by page until a page is written. Python objects
are written merely by being read (their reference counts change, and the cyclic garbage collector
writes its headers), so an index kept as lists and dicts of small objects is copied into every
worker as it iterates, and memory grows with workers x GPUs (MMDetection #3612; detectron2 keeps
its dataset in one numpy buffer for this reason). A numpy array is one object: reading its
elements writes nothing but the array's own header, so its data pages stay shared.

The rest of the parent's heap stays shared because the toolkit's loaders fork their workers with
it frozen (:class:`~visionkit.data.loader.FrozenHeapLoader`).

Every reader keeps its per-image index here: :class:`PackedStrings` (file names, paths) and
:class:`PackedArrays` (per-image boxes, labels, flags, proposals: one concatenated array and
offsets). Both pickle as a few arrays, so a spawned worker receives them in one piece too.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


class PackedStrings:
    """``N`` strings as one UTF-8 buffer: ``data`` uint8 ``(B,)``, ``offsets`` int64 ``(N + 1,)``
    (string ``i`` is ``data[offsets[i]:offsets[i + 1]]``)."""

    def __init__(self, strings: Sequence[str]) -> None:
        encoded = [s.encode() for s in strings]
        self.offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(e) for e in encoded], out=self.offsets[1:])
        self.data = np.frombuffer(b"".join(encoded), np.uint8).copy()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.data[self.offsets[i] : self.offsets[i + 1]].tobytes().decode()


class PackedArrays:
    """``N`` arrays of ``(n_i, *shape)`` rows concatenated: ``values`` ``(sum n_i, *shape)``,
    ``offsets`` int64 ``(N + 1,)``; item ``i`` is a fresh copy of its rows (the shared index is
    never handed out to be written).

    Args:
        values: the rows of every item, item by item.
        counts: ``(N,)`` rows per item (summing to ``len(values)``).
    """

    def __init__(self, values: np.ndarray, counts: np.ndarray) -> None:
        self.values = np.ascontiguousarray(values)
        self.offsets = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=self.offsets[1:])

    @classmethod
    def from_list(
        cls, arrays: Sequence[np.ndarray], dtype: np.dtype | type, shape: tuple[int, ...] = ()
    ) -> PackedArrays:
        """Pack ``arrays`` (each reshaped to ``(-1, *shape)`` and cast to ``dtype``)."""
        parts = [np.asarray(a, dtype).reshape(-1, *shape) for a in arrays]
        counts = np.array([len(p) for p in parts], np.int64)
        values = np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)
        return cls(values, counts)

    @classmethod
    def grouped(cls, values: np.ndarray, items: np.ndarray, n: int) -> PackedArrays:
        """Rows ``values`` (``(M, ...)``) of items ``items`` (``(M,)`` int in ``0..n-1``), grouped
        by item, each item's rows in their given order."""
        order = np.argsort(items, kind="stable")
        return cls(values[order], np.bincount(items, minlength=n))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]].copy()

    def counts(self) -> np.ndarray:
        """``(N,)`` int64 rows per item."""
        return np.diff(self.offsets)


def find_sorted(keys: np.ndarray, key: int) -> int:
    """The position of ``key`` in the ascending ``keys``; KeyError when it is not there."""
    row = int(np.searchsorted(keys, key))
    if row == len(keys) or keys[row] != key:
        raise KeyError(key)
    return row


class PackedMapping(Mapping[int, np.ndarray]):
    """A read-only ``{int id: (n_i, *shape) array}`` (e.g. proposals per image id), packed:
    ``keys`` ``(K,)`` int64 ascending and their arrays as :class:`PackedArrays`; a lookup is a
    binary search and gives a fresh copy."""

    def __init__(
        self, mapping: Mapping[int, np.ndarray], dtype: np.dtype | type, shape: tuple[int, ...]
    ) -> None:
        self.keys_ = np.array(sorted(mapping), np.int64)
        self.arrays = PackedArrays.from_list(
            [mapping[k] for k in self.keys_.tolist()], dtype, shape
        )

    def __getitem__(self, key: int) -> np.ndarray:
        return self.arrays[find_sorted(self.keys_, key)]

    def __iter__(self) -> Iterator[int]:
        return iter(self.keys_.tolist())

    def __len__(self) -> int:
        return len(self.keys_)


def pack_objects(objects: Sequence[Any]) -> PackedArrays:
    """Picklable per-item objects (e.g. an image's polygons) as one uint8 buffer, each item
    pickled (detectron2's way); read item ``i`` back with :func:`unpack_object`."""
    return PackedArrays.from_list(
        [np.frombuffer(pickle.dumps(o), np.uint8) for o in objects], np.uint8
    )


def unpack_object(packed: PackedArrays, i: int) -> Any:
    """Item ``i`` of :func:`pack_objects` (only ever objects this process packed)."""
    return pickle.loads(packed[i].tobytes())


class ImageTable:
    """Per-image facts of a detection dataset, in ascending id order.

    Attributes:
        ids: ``(N,)`` int64 image ids, ascending. names: the image files (:class:`PackedStrings`,
        paths relative to ``folder``). sizes: ``(N, 2)`` int32 ``(height, width)`` the
        annotations describe. stored: ``(N,)`` bool, images whose annotations describe the
        pixels as stored, not turned by their EXIF orientation.
    """

    def __init__(
        self,
        ids: np.ndarray,
        names: Sequence[str],
        sizes: np.ndarray,
        stored: np.ndarray,
        folder: Path,
    ) -> None:
        self.ids = np.asarray(ids, np.int64)
        self.names = PackedStrings(names)
        self.sizes = np.asarray(sizes, np.int32).reshape(-1, 2)
        self.stored = np.asarray(stored, bool)
        self.folder = folder

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, image_id: int) -> int:
        """The row of ``image_id``; KeyError when the table has no such image."""
        return find_sorted(self.ids, image_id)

    def path(self, row: int) -> Path:
        return self.folder / self.names[row]


class Record(NamedTuple):
    """What a detection reader knows of one sample before reading its pixels: ``image_id``, the
    file ``path``, ``size`` ``(height, width)`` its boxes describe, ``boxes`` ``(N, 4)`` float32
    xyxy pixels and ``labels`` ``(N,)`` int64 of its training target (fresh arrays)."""

    image_id: int
    path: Path
    size: tuple[int, int]
    boxes: np.ndarray
    labels: np.ndarray
