"""Pascal VOC detection from the VOCdevkit layout; several year/split pairs may be concatenated."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from visionkit.data.coco import LazyGroundTruth, coco_index, to_sample
from visionkit.data.packed import ImageTable, PackedArrays, Record
from visionkit.errors import DataError
from visionkit.io.image import read_image
from visionkit.structures.boxes import clip_boxes, convert_boxes, valid_boxes_mask

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip


DIFFICULT = {"0": False, "1": True, "false": False, "true": True, "no": False, "yes": True}


def parse_voc_xml(path: Path, class_names: Sequence[str]) -> dict[str, Any]:
    """One annotation file -> size, xyxy boxes (0-based continuous, clipped to the image),
    labels, difficult flags; the same boxes train and score.

    Raises:
        DataError: one line naming the file, the object and the field: a missing or non-integer
            size, an unknown class, a box coordinate that is missing, not a finite number, or
            inverted (xmin > xmax), a ``<difficult>`` other than 0/1 (or yes/no, true/false).
    """
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise DataError(f"cannot read VOC annotation {path}: {type(e).__name__}") from None
    try:
        width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
    except (TypeError, ValueError):
        raise DataError(f"{path}: <size> needs integer <width> and <height>") from None
    raw, labels, difficult = [], [], []
    for k, o in enumerate(root.findall("object"), start=1):
        where = f"{path}: object {k}"
        name = (o.findtext("name") or "").strip()
        if name not in class_names:
            raise DataError(f"{where}: class '{name}' is not one of the {len(class_names)} classes")
        box = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            text = o.findtext(f"bndbox/{tag}")
            try:
                value = float(text)
            except (TypeError, ValueError):
                raise DataError(f"{where} ({name}): <{tag}> {text!r} is not a number") from None
            if not np.isfinite(value):
                raise DataError(f"{where} ({name}): <{tag}> {text!r} is not a finite number")
            box.append(value)
        if box[0] > box[2] or box[1] > box[3]:
            raise DataError(
                f"{where} ({name}): the box {box} is inverted (xmin > xmax or ymin > ymax)"
            )
        flag = (o.findtext("difficult") or "0").strip().lower()
        if flag not in DIFFICULT:
            raise DataError(f"{where} ({name}): <difficult> must be 0 or 1, got {flag!r}")
        raw.append(box)
        labels.append(class_names.index(name))
        difficult.append(DIFFICULT[flag])
    boxes = convert_boxes(np.array(raw, np.float32).reshape(-1, 4), "voc", "xyxy")
    return {
        "width": width,
        "height": height,
        "boxes": clip_boxes(boxes, (height, width)).numpy(),
        "labels": np.array(labels, np.int64),
        "difficult": np.array(difficult, bool),
    }


class VOCDetection(LazyGroundTruth, Dataset):
    """Pascal VOC boxes; samples and attributes as :class:`~visionkit.data.coco.CocoDetection`
    (image ids are positions in the split lists, from 1; the index is packed the same way).

    Args:
        root: the VOCdevkit folder (holding ``VOC2007/``, ``VOC2012/``, ...).
        splits: ``"<year>/<split>"`` entries, e.g. ``["2007/trainval", "2012/trainval"]``.
        use_difficult: keep ``difficult`` objects in training targets (they are always kept in
            :attr:`coco` for evaluation, as crowd regions that are neither counted nor penalized).
    """

    def __init__(
        self,
        root: str | Path,
        splits: Sequence[str],
        transforms: Callable | None = None,
        use_difficult: bool = False,
        class_names: Sequence[str] = VOC_CLASSES,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(
                f"Pascal VOC not found at {self.root}: put VOCdevkit there (VOC2007/, VOC2012/) or "
                "set data.train.root; configs/*_shapes.yaml run with no data at all"
            )
        self.transforms, self.use_difficult = transforms, use_difficult
        self.class_names = list(class_names)
        self.cat_ids = list(range(1, len(self.class_names) + 1))
        files, anns = [], []
        for entry in splits:
            year, _, split = entry.partition("/")
            folder = self.root / f"VOC{year}"
            listing = folder / "ImageSets" / "Main" / f"{split}.txt"
            if not listing.is_file():
                raise DataError(
                    f"VOC split list not found: {listing} (splits look like 2007/trainval)"
                )
            for name in listing.read_text().split():
                files.append(str(Path(f"VOC{year}") / "JPEGImages" / f"{name}.jpg"))
                anns.append(parse_voc_xml(folder / "Annotations" / f"{name}.xml", self.class_names))
        if not files:
            raise DataError(f"no images listed in {self.root} for splits {list(splits)}")
        self.ids = list(range(1, len(files) + 1))
        sizes = np.array([(a["height"], a["width"]) for a in anns], np.int32)
        # read turned by their EXIF orientation, as a viewer shows them
        self._table = ImageTable(self.ids, files, sizes, np.zeros(len(files), bool), self.root)
        self._boxes = PackedArrays.from_list([a["boxes"] for a in anns], np.float32, (4,))
        self._labels = PackedArrays.from_list([a["labels"] for a in anns], np.int64)
        self._difficult = PackedArrays.from_list([a["difficult"] for a in anns], bool)
        # the objects training targets keep: not difficult unless use_difficult; a box that
        # clipping to the image left empty never
        kept = valid_boxes_mask(torch.from_numpy(self._boxes.values)).numpy()
        if not use_difficult:
            kept &= ~self._difficult.values
        self._kept = PackedArrays(kept, self._labels.counts())
        self.num_objects = int(kept.sum())

    def _build_coco(self) -> COCO:
        images, anns = [], []
        for row, image_id in enumerate(self.ids):
            h, w = self._table.sizes[row].tolist()
            images.append({"id": image_id, "file_name": self._table.path(row).name,
                           "width": w, "height": h})  # fmt: skip
            xywh = convert_boxes(self._boxes[row], "xyxy", "xywh").tolist()
            labels, difficult = self._labels[row].tolist(), self._difficult[row].tolist()
            for b, lb, d in zip(xywh, labels, difficult, strict=True):
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": lb + 1,
                             "bbox": b, "area": b[2] * b[3], "iscrowd": int(d)})  # fmt: skip
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)]
        return coco_index({"images": images, "annotations": anns, "categories": categories})

    def __len__(self) -> int:
        return len(self.ids)

    def record(self, index: int) -> Record:
        """Sample ``index``'s :class:`~visionkit.data.packed.Record`, from the packed index."""
        keep = self._kept[index]
        h, w = self._table.sizes[index].tolist()
        return Record(int(self._table.ids[index]), self._table.path(index), (h, w),
                      self._boxes[index][keep], self._labels[index][keep])  # fmt: skip

    def image_path(self, index: int) -> Path:
        return self._table.path(index)

    def orientation(self, index: int) -> bool:
        """True: images are read turned by their EXIF orientation (as a viewer shows them)."""
        return True

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        r = self.record(index)
        return to_sample(read_image(r.path), r.boxes, r.labels, r.image_id, self.transforms)
