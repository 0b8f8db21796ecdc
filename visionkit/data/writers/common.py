"""What a conversion reads of a detection dataset, whatever its format: per image its file, size,
boxes, labels and the flags (crowd, difficult) of its ground truth; and what every writer
shares: target file names, byte-for-byte image copies, the :class:`Writer` steps."""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from visionkit.data.voc import VOCDetection
from visionkit.io.atomic import atomic_path
from visionkit.structures.boxes import clip_boxes, convert_boxes


class SourceImage(NamedTuple):
    """One image of a dataset's evaluation ground truth (``dataset.coco``: every object, crowd
    regions and VOC ``difficult`` ones included, in original pixels).

    Attributes:
        image_id: the dataset's id. path: the image file. size: ``(height, width)`` the boxes
        describe. boxes: float64 ``(N, 4)`` xyxy pixels, clipped to the image. labels: int64
        ``(N,)`` in ``0..C-1``. crowd, difficult: bool ``(N,)``. area: float64 ``(N,)``, the
        ground truth's (COCO: the segment's; the others: the box's). turned: the reader turns
        the image by its EXIF orientation (the boxes describe it as a viewer shows it).
    """

    image_id: int
    path: Path
    size: tuple[int, int]
    boxes: np.ndarray
    labels: np.ndarray
    crowd: np.ndarray
    difficult: np.ndarray
    area: np.ndarray
    turned: bool


def source_images(dataset: Any) -> Iterator[SourceImage]:
    """The :class:`SourceImage` of each sample of a box reader (``CocoDetection``,
    ``VOCDetection``, ``YoloDetection``), in dataset order. The ground truth's ``iscrowd`` is
    VOC's ``difficult`` flag for a VOC reader (``VOCDetection`` marks them so), else crowd."""
    coco, flag_is_difficult = dataset.coco, isinstance(dataset, VOCDetection)
    label_of = {int(c): k for k, c in enumerate(dataset.cat_ids)}
    for index in range(len(dataset)):
        image_id = int(dataset.ids[index])
        info = coco.imgs[image_id]
        size = (int(info["height"]), int(info["width"]))
        anns = coco.imgToAnns.get(image_id, [])
        xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        boxes = clip_boxes(convert_boxes(torch.from_numpy(xywh), "xywh", "xyxy"), size).numpy()
        flags = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
        none = np.zeros(len(anns), bool)
        yield SourceImage(
            image_id,
            Path(dataset.image_path(index)),
            size,
            boxes,
            np.array([label_of[a["category_id"]] for a in anns], np.int64),
            none if flag_is_difficult else flags,
            flags if flag_is_difficult else none,
            np.array(
                [a.get("area", b[2] * b[3]) for a, b in zip(anns, xywh, strict=True)], np.float64
            ),
            bool(dataset.orientation(index)),
        )


_SPACE = re.compile(r"\s")


class Namer:
    """Target file names, unique by stem (case-folded: a YOLO label file and a VOC name are the
    stem) within one folder: the source's file name (white space made ``_``), or
    ``<stem>_<image id>`` after a clash; the same ``(source, image id)`` gets the same name."""

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self.given: dict[tuple[str, int], str] = {}

    def __call__(self, path: Path, image_id: int, suffix: str | None = None) -> str:
        key = (str(path), image_id)
        if key in self.given:
            return self.given[key]
        stem = _SPACE.sub("_", path.stem) or "image"
        suffix = path.suffix if suffix is None else suffix
        name, n = stem, 1
        while name.casefold() in self.taken:
            name = f"{stem}_{image_id}" if n == 1 else f"{stem}_{image_id}_{n}"
            n += 1
        self.taken.add(name.casefold())
        self.given[key] = name + suffix
        return name + suffix


def copy_image(src: Path, dst: Path, link: bool = False) -> None:
    """``src``'s bytes at ``dst``, whole or not at all (through a temporary file beside it): a
    copy (``shutil.copy2``: its times too), or with ``link`` a hard link where the file system
    allows one (no space used; editing either file then edits both)."""
    with atomic_path(dst) as tmp:
        if link:
            try:
                os.link(src, tmp)
                return
            except OSError:
                pass
        shutil.copy2(src, tmp)


class Writer:
    """What each format's writer does, split by split: :meth:`begin` a split, :meth:`add` each
    image (its copy and per-image files), :meth:`end` it (per-split files; returns the
    ``data.<split>.*`` overrides that read it back), :meth:`finish` (files of the whole
    conversion). ``dropped`` / ``changed`` count objects the format cannot hold as they were
    (``"crowd regions (YOLO has no crowd flag)"`` -> 3)."""

    format = ""

    def __init__(self, out: Path, link: bool = False) -> None:
        self.out, self.link = out, link
        self.dropped: Counter[str] = Counter()
        self.changed: Counter[str] = Counter()
        self.objects = 0  # written

    def begin(self, split: str, class_names: list[str], cat_ids: list[int]) -> None:
        self.split, self.class_names, self.cat_ids = split, class_names, cat_ids

    def add(self, image: SourceImage) -> None:
        raise NotImplementedError

    def end(self) -> list[str]:
        raise NotImplementedError

    def finish(self) -> None:
        """Write what the whole conversion shares (nothing unless a format says so)."""
