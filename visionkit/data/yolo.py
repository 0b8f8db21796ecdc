"""YOLO (Ultralytics) detection datasets: a ``data.yaml``, image folders and one label file per
image (the format and its checks: ``data/yolo_format.py``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from visionkit.data.coco import LazyGroundTruth, coco_index, to_sample
from visionkit.data.coco_checks import read_headers
from visionkit.data.instance_masks import (
    MaskShapes,
    mask_shapes,
    pack_segmentations,
    unpack_segmentations,
)
from visionkit.data.packed import ImageTable, PackedArrays, Record
from visionkit.data.yolo_format import label_path, read_data_yaml, read_labels, split_images
from visionkit.errors import DataError, UnreadableImageError, shown
from visionkit.io.image import read_image
from visionkit.structures.boxes import convert_boxes, valid_boxes_mask

TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


class YoloDetection(LazyGroundTruth, Dataset):
    """Boxes of a YOLO-format dataset; samples and attributes as
    :class:`~visionkit.data.coco.CocoDetection` (the index is packed the same way).

    Image ids are positions in the listed images, from 1 (each split's images sorted by path,
    the splits concatenated in order); ``cat_ids`` are ``1..C`` (label + 1, as Pascal VOC's), so
    a YOLO dataset and its COCO conversion (``visionkit convert``) share their category ids.
    Image sizes come from the file headers, as a viewer shows the image (its EXIF orientation
    applied, as Ultralytics reads it); the normalized boxes become xyxy pixels of that image.

    A missing label file is an image without objects (Ultralytics' rule: its datasets omit the
    files of background images), with one warning counting them; a split with no label file at
    all is a DataError (the labels are not where the layout puts them). Boxes not wider and
    taller than 1 px are left out of training targets (one warning, as COCO's), kept in
    :attr:`coco`. An image whose header cannot be read is left out with a warning
    (``on_bad_image="skip"``) or stops the run (``"stop"``).

    With ``masks`` (instance segmentation models) every object must be a polygon line (a box
    line is a DataError naming it); the polygons, in pixels, are packed as the index's
    segmentations and ``target["masks"]`` is their
    :class:`~visionkit.structures.masks.InstanceMasks`, one per box (see
    :class:`~visionkit.data.coco.CocoDetection`); :attr:`coco` holds them as COCO polygons.

    Args:
        data_yaml: the dataset's ``data.yaml`` (or the folder holding it).
        splits: keys of the ``data.yaml`` (``train``, ``val``, ``test``), concatenated.
    """

    def __init__(
        self,
        data_yaml: str | Path,
        splits: Sequence[str],
        transforms: Callable | None = None,
        filter_empty: bool = False,
        on_bad_image: Literal["skip", "stop"] = "skip",
        masks: bool = False,
    ) -> None:
        spec = read_data_yaml(data_yaml)
        self.root, self.transforms, self.masks = spec.file, transforms, masks  # the data.yaml
        self.class_names = spec.names
        self.cat_ids = list(range(1, len(spec.names) + 1))
        if not splits:
            raise DataError(f"{spec.file}: no split to read (data.*.splits: keys of the data.yaml)")
        images = [p for split in splits for p in split_images(spec, split)]
        images, sizes = self._sizes(images, on_bad_image)
        boxes, labels, missing, duplicates = [], [], [], 0
        polygons: list[list] = []  # per image, per object: [flat float32 outline] or None
        for image, size in zip(images, sizes, strict=True):
            path = label_path(image)
            if not path.is_file():
                missing.append(path)
                boxes.append(np.zeros((0, 4), np.float32))
                labels.append(np.zeros(0, np.int64))
                polygons.append([])
                continue
            found = read_labels(path, size, len(spec.names), masks)
            boxes.append(found.boxes)
            labels.append(found.labels)
            polygons.append(found.polygons)
            duplicates += found.duplicates
        self._warn_missing(missing, len(images), splits)
        if duplicates:
            warnings.warn(f"{spec.file}: left out {duplicates} duplicate label lines", stacklevel=2)
        names = [_relative(p, spec.root) for p in images]
        self._table = ImageTable(
            np.arange(1, len(images) + 1), names, sizes, np.zeros(len(images), bool), spec.root
        )
        self._boxes = PackedArrays.from_list(boxes, np.float32, (4,))
        self._labels = PackedArrays.from_list(labels, np.int64)
        kept = valid_boxes_mask(torch.from_numpy(self._boxes.values), 1.0).numpy()
        if (~kept).any():
            warnings.warn(
                f"{spec.file}: dropped {int((~kept).sum())} degenerate boxes (width or height "
                "<= 1 px)",
                stacklevel=2,
            )
        self._kept = PackedArrays(kept, self._labels.counts())
        # every object's outline (training targets select the kept ones), only when asked for
        self._segmentations = pack_segmentations(polygons) if masks else None
        rows = np.repeat(np.arange(len(images)), self._labels.counts())
        counts = np.bincount(rows[kept], minlength=len(images))  # training objects per image
        self._rows = np.flatnonzero(counts > 0) if filter_empty else np.arange(len(images))
        if not len(self._rows):
            raise DataError(f"{spec.file}: no images left (all without objects?)")
        self.ids: list[int] = self._table.ids[self._rows].tolist()
        self.num_objects = int(counts[self._rows].sum())

    def _sizes(self, images: list[Path], on_bad_image: str) -> tuple[list[Path], np.ndarray]:
        """The readable ``images`` and their ``(N, 2)`` ``(height, width)`` as displayed."""
        headers = read_headers(images)
        bad = [p for p, h in zip(images, headers, strict=True) if h is None]
        if bad and on_bad_image == "stop":
            raise UnreadableImageError(
                f"cannot read image {shown(str(bad[0]))}: not an image its header tells the size "
                f"of ({len(bad)} such; data.on_bad_image=skip leaves them out)",
                str(bad[0]),
            )
        if bad:
            warnings.warn(
                f"{self.root}: left out {len(bad)} unreadable images (first: {shown(str(bad[0]))})",
                stacklevel=3,
            )
        kept = [(p, h) for p, h in zip(images, headers, strict=True) if h is not None]
        if not kept:
            raise DataError(f"{self.root}: none of the {len(images)} images can be read")
        sizes = [(w, h) if tag in TURNED else (h, w) for _, (w, h, tag) in kept]
        return [p for p, _ in kept], np.array(sizes, np.int32).reshape(-1, 2)

    def _warn_missing(self, missing: list[Path], total: int, splits: Sequence[str]) -> None:
        if len(missing) == total:
            raise DataError(
                f"{self.root}: no label file for any of the {total} images of "
                f"{list(splits)} (the first would be {shown(str(missing[0]))}: labels/<split>/"
                "<stem>.txt beside images/<split>/)"
            )
        if missing:
            warnings.warn(
                f"{self.root}: {len(missing)} images have no label file, read as images "
                f"without objects (first: {shown(str(missing[0]))})",
                stacklevel=3,
            )

    def _build_coco(self) -> COCO:
        images, anns = [], []
        for row, image_id in enumerate(self._table.ids.tolist()):
            h, w = self._table.sizes[row].tolist()
            images.append({"id": image_id, "file_name": self._table.path(row).name,
                           "width": w, "height": h})  # fmt: skip
            xywh = convert_boxes(self._boxes[row], "xyxy", "xywh").tolist()
            segs = self._row_segmentations(row) or [None] * len(xywh)
            for b, lb, seg in zip(xywh, self._labels[row].tolist(), segs, strict=True):
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": lb + 1,
                             "bbox": b, "area": b[2] * b[3], "iscrowd": 0})  # fmt: skip
                if seg is not None:  # COCO polygons, for the segm evaluation
                    anns[-1]["segmentation"] = [p.tolist() for p in seg]
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)]
        return coco_index({"images": images, "annotations": anns, "categories": categories})

    def __len__(self) -> int:
        return len(self._rows)

    def record(self, index: int) -> Record:
        """Sample ``index``'s :class:`~visionkit.data.packed.Record`, from the packed index."""
        row = int(self._rows[index])
        keep = self._kept[row]
        h, w = self._table.sizes[row].tolist()
        return Record(int(self._table.ids[row]), self._table.path(row), (h, w),
                      self._boxes[row][keep], self._labels[row][keep])  # fmt: skip

    def _row_segmentations(self, row: int) -> list | None:
        """Every object's outline of image ``row`` (None without ``masks``)."""
        if self._segmentations is None:
            return None
        return unpack_segmentations(self._segmentations, row)

    def instance_shapes(self, index: int) -> MaskShapes:
        """Sample ``index``'s training objects' instance masks in original pixels, one per box of
        its :meth:`record` (polygons); the reader must have been built with ``masks``."""
        row = int(self._rows[index])
        segs = self._row_segmentations(row)
        if segs is None:
            raise ValueError("this reader was built without masks")
        keep = self._kept[row].tolist()
        size = tuple(int(v) for v in self._table.sizes[row])
        return mask_shapes([s for s, k in zip(segs, keep, strict=True) if k], size)

    def image_path(self, index: int) -> Path:
        return self._table.path(int(self._rows[index]))

    def orientation(self, index: int) -> bool:
        """Always True: YOLO boxes describe the image as its EXIF orientation shows it."""
        return True

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        r = self.record(index)
        image = read_image(r.path, orientation=True)
        shapes = self.instance_shapes(index) if self.masks else None
        return to_sample(image, r.boxes, r.labels, r.image_id, self.transforms, instances=shapes)


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it, else as it is (absolute)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
