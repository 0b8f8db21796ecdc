"""The YOLO (Ultralytics) dataset format at the border: the ``data.yaml``, the images of its
splits, the label file of each image and its lines, checked where they enter the toolkit.

The layout, as Ultralytics writes it::

    <dataset>/data.yaml            path (optional), train, val, test (optional), names, nc
    <dataset>/images/<split>/<stem>.jpg
    <dataset>/labels/<split>/<stem>.txt

- ``path``: the folder the split entries are relative to, itself relative to the yaml's folder
  (absent: the yaml's folder).
- ``train`` / ``val`` / ``test``: a folder of images (searched recursively), a ``.txt`` list of
  image paths (one a line, relative to the list's folder), or a list of those.
- ``names``: the class names, a list or ``{index: name}`` with the indices ``0..C-1``;
  ``nc``, optional, must be their number.
- An image's label file is its path with the last ``images`` folder replaced by ``labels`` and
  the suffix by ``.txt`` (Ultralytics' ``img2label_paths``). One object a line: ``class cx cy w
  h``, normalized by the image's width and height, or a polygon ``class x1 y1 ... xn yn`` (its
  bounding box is the object's box; for instance segmentation models, the polygon its mask, and
  a box line without one is refused). An empty file: an image without objects.

Every refusal is a :class:`~visionkit.errors.DataError` of one line naming the file and the key
(``data.yaml``) or the line (``labels/train/a.txt:3``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from visionkit.data.coco_checks import check_class_names
from visionkit.errors import DataError, shown
from visionkit.io.image import IMAGE_EXTS
from visionkit.io.structured import read_text, read_yaml
from visionkit.structures.boxes import clip_boxes, convert_boxes
from visionkit.utils.validators import box_problem

SPLIT_KEYS = ("train", "val", "test")
# how far a normalized number may lie outside [0, 1]: float noise of exporters, not a box of
# another image (Ultralytics itself accepts none; 1e-4 of a 16384 px side is 1.6 px)
COORD_TOLERANCE = 1e-4


class YoloSpec(NamedTuple):
    """A checked ``data.yaml``: its ``file``, the ``root`` its split entries are relative to,
    ``splits`` (split key -> the entries as written) and the class ``names`` (label order)."""

    file: Path
    root: Path
    splits: dict[str, list[str]]
    names: list[str]


def _is(path: Path, kind: str) -> bool:
    """``path.is_dir()`` / ``path.is_file()``, False for a name no file system takes."""
    try:
        return path.is_dir() if kind == "dir" else path.is_file()
    except (OSError, ValueError):
        return False


def read_data_yaml(path: str | Path) -> YoloSpec:
    """Read (:func:`~visionkit.io.structured.read_yaml`) and check a ``data.yaml``; ``path`` may
    also be the folder holding it.

    Raises:
        DataError: a missing or unreadable file, a file that is not a mapping, no ``names`` or
            names that are not a list or ``{0: .., 1: ..}`` of text, a class named twice, an
            ``nc`` other than their number, a ``path`` or split entry that is not text.
    """
    path = Path(path)
    if str(path) in ("", "."):
        raise DataError("a YOLO dataset needs data.*.root: its data.yaml")
    if _is(path, "dir"):
        path = path / "data.yaml"
    if not _is(path, "file"):
        raise DataError(f"YOLO data.yaml not found: {shown(str(path))}")
    data = read_yaml(path, error=DataError)
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a YOLO data.yaml (a mapping of train, val, names, ...)")
    names = _names(data, path)
    nc = data.get("nc")
    if nc is not None and (type(nc) is not int or nc != len(names)):
        raise DataError(f"{path}: 'nc' is {shown(repr(nc), 40)} but 'names' holds {len(names)}")
    base = data.get("path")
    if base is not None and not isinstance(base, str):
        raise DataError(f"{path}: 'path' must be a folder, got {shown(repr(base), 60)}")
    root = path.parent / base if base else path.parent
    splits: dict[str, list[str]] = {}
    for key in SPLIT_KEYS:
        entry = data.get(key)
        entries = entry if isinstance(entry, list) else [] if entry is None else [entry]
        if not entries or not all(isinstance(e, str) and e for e in entries):
            if entry is not None:
                raise DataError(
                    f"{path}: '{key}' must be a folder or a .txt list of images (or a list of "
                    f"them), got {shown(repr(entry), 60)}"
                )
            continue
        splits[key] = entries
    return YoloSpec(path, Path(os.path.abspath(root)), splits, names)


def _names(data: dict[str, Any], path: Path) -> list[str]:
    """The checked class names of a ``data.yaml``, in label order."""
    names = data.get("names")
    if isinstance(names, dict):
        if sorted(k for k in names if type(k) is int) != list(range(len(names))):
            raise DataError(f"{path}: the keys of 'names' must be the class indices 0..C-1")
        names = [names[k] for k in range(len(names))]
    if not isinstance(names, list) or not names:
        raise DataError(f"{path}: no 'names' (the class names: a list, or {{index: name}})")
    for k, name in enumerate(names):
        if type(name) not in (str, int, float) or str(name).strip() == "":
            raise DataError(f"{path}: names[{k}] must be a class name, got {shown(repr(name), 60)}")
    names = [str(n) for n in names]
    check_class_names(names, f"{path}: names")
    return names


def split_images(spec: YoloSpec, split: str) -> list[Path]:
    """The images of ``split`` (a key of the ``data.yaml``), sorted by path as Ultralytics
    sorts them: those of its folders (searched recursively) and ``.txt`` lists, by suffix
    (:data:`~visionkit.io.image.IMAGE_EXTS`).

    Raises:
        DataError: no such split, an entry that is neither a folder nor a ``.txt`` file, a
            split without images.
    """
    if split not in spec.splits:
        have = ", ".join(spec.splits) or "none"
        raise DataError(
            f"{spec.file}: no '{shown(split, 60)}' split (it has: {have}); data.*.splits names "
            "keys of the data.yaml"
        )
    images: list[Path] = []
    for entry in spec.splits[split]:
        source = spec.root / entry
        if _is(source, "dir"):
            images += [p for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTS]
        elif _is(source, "file") and source.suffix.lower() == ".txt":
            for line in read_text(source).splitlines():
                line = line.strip()
                if line and Path(line).suffix.lower() in IMAGE_EXTS:
                    images.append(source.parent / line)
        else:
            raise DataError(
                f"{spec.file}: '{split}': {shown(entry, 200)} is neither a folder nor a .txt list "
                f"of images (looked for {shown(str(source), 200)})"
            )
    if not images:
        raise DataError(f"{spec.file}: '{split}' holds no images ({shown(spec.splits[split])})")
    return sorted({Path(os.path.abspath(p)) for p in images}, key=str)


def label_path(image: Path) -> Path:
    """The label file of ``image`` (Ultralytics' ``img2label_paths``): the last ``images``
    folder of its path replaced by ``labels``, the suffix by ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(str(image).rsplit(sa, 1))).with_suffix(".txt")


class LabelFile(NamedTuple):
    """One label file read (:func:`read_labels`): ``boxes`` float32 ``(N, 4)`` xyxy pixels
    (clipped to the image), ``labels`` int64 ``(N,)``, in the file's order, the number of
    ``duplicates`` left out, and per object its ``polygons``: a list of one flat float32
    ``[x1, y1, ..., xn, yn]`` outline in pixels (not clipped), or None for a box line."""

    boxes: np.ndarray
    labels: np.ndarray
    duplicates: int
    polygons: list[list[np.ndarray] | None]


def parse_labels(
    path: Path, size: tuple[int, int], num_classes: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """``boxes``, ``labels`` and ``duplicates`` of :func:`read_labels`."""
    boxes, labels, duplicates, _ = read_labels(path, size, num_classes)
    return boxes, labels, duplicates


def read_labels(
    path: Path, size: tuple[int, int], num_classes: int, masks: bool = False
) -> LabelFile:
    """One label file of an image of ``size`` ``(height, width)`` pixels (:class:`LabelFile`).

    Duplicate lines are left out (Ultralytics leaves them out too). A polygon line's box is
    the polygon's bounding box, its polygon the object's instance mask; with ``masks``
    (instance segmentation models) every object needs one.

    Raises:
        DataError: ``<file>:<line>: <what is wrong>``: not UTF-8 text, a line of another count
            of numbers than 5 or an odd number >= 7, a token that is not a finite number, a
            class that is not an index of ``names``, a coordinate outside [0, 1]
            (:data:`COORD_TOLERANCE`), a box beyond its image (COCO's limit:
            :func:`~visionkit.utils.validators.box_problem`).
    """
    height, width = size
    seen: set[tuple[float, ...]] = set()
    duplicates = 0
    labels, boxes, lines, norm = [], [], [], []  # norm: (row, cx cy w h) of the box lines
    polygons: list[list[np.ndarray] | None] = []
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        values = _numbers(tokens, f"{path}:{lineno}", num_classes)
        if tuple(values) in seen:
            duplicates += 1
            continue
        seen.add(tuple(values))
        if len(values) == 5 and masks:
            raise DataError(
                f"{path}:{lineno}: a box without an outline; instance segmentation models need "
                "each object's polygon ('class x1 y1 ... xn yn', at least 3 points)"
            )
        if len(values) == 5:
            norm.append((len(boxes), values[1:]))
            boxes.append(values[1:])
            polygons.append(None)
        else:  # a polygon: its bounding box, and the object's mask
            xy = np.asarray(values[1:], np.float64).reshape(-1, 2) * (width, height)
            boxes.append([*xy.min(0).tolist(), *xy.max(0).tolist()])
            polygons.append([xy.astype(np.float32).reshape(-1)])
        labels.append(int(values[0]))
        lines.append((lineno, tokens))
    xyxy = np.array(boxes, np.float64).reshape(-1, 4)
    if norm:  # one conversion per file
        rows = [k for k, _ in norm]
        xyxy[rows] = convert_boxes([v for _, v in norm], "cxcywh_norm", "xyxy", size).numpy()
    for (lineno, tokens), (x1, y1, x2, y2) in zip(lines, xyxy.tolist(), strict=True):
        problem = box_problem([x1, y1, x2 - x1, y2 - y1], width, height)
        if problem:
            where = f"{path}:{lineno}"
            raise DataError(f"{where}: the box {shown(' '.join(tokens[1:]), 120)} {problem}")
    clipped = clip_boxes(torch.from_numpy(xyxy), size).numpy().astype(np.float32)
    return LabelFile(clipped, np.array(labels, np.int64), duplicates, polygons)


def _numbers(tokens: list[str], where: str, num_classes: int) -> list[float]:
    """The numbers of one label line, checked: count, finite, class index, coordinates."""
    n = len(tokens)
    if n != 5 and (n < 7 or n % 2 == 0):
        raise DataError(
            f"{where}: {n} numbers; a box is 'class cx cy w h' (5), a polygon 'class x1 y1 ... "
            "xn yn' (an odd number, at least 7)"
        )
    values = []
    for token in tokens:
        try:
            value = float(token)
        except ValueError:
            raise DataError(f"{where}: {shown(token, 40)!r} is not a number") from None
        if not np.isfinite(value):
            raise DataError(f"{where}: {shown(token, 40)!r} is not a finite number")
        values.append(value)
    label = values[0]
    if not (label.is_integer() and 0 <= label < num_classes):
        raise DataError(
            f"{where}: class {shown(tokens[0], 40)} is not one of the {num_classes} classes of "
            f"the data.yaml's names (0..{num_classes - 1})"
        )
    for token, value in zip(tokens[1:], values[1:], strict=True):
        if not -COORD_TOLERANCE <= value <= 1 + COORD_TOLERANCE:
            raise DataError(
                f"{where}: {shown(token, 40)} is outside [0, 1] (YOLO coordinates are divided by "
                "the image's width and height)"
            )
    return values
