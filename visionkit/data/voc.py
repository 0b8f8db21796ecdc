"""Pascal VOC detection from the VOCdevkit layout; several year/split pairs may be concatenated."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from visionkit.data.coco import to_sample
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


class VOCDetection(Dataset):
    """Pascal VOC boxes; samples and attributes as :class:`~visionkit.data.coco.CocoDetection`.

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
        self.ids: list[int] = []
        self._files: dict[int, Path] = {}
        self._anns: dict[int, dict[str, Any]] = {}
        for entry in splits:
            year, _, split = entry.partition("/")
            folder = self.root / f"VOC{year}"
            listing = folder / "ImageSets" / "Main" / f"{split}.txt"
            if not listing.is_file():
                raise DataError(
                    f"VOC split list not found: {listing} (splits look like 2007/trainval)"
                )
            for name in listing.read_text().split():
                image_id = len(self.ids) + 1
                self.ids.append(image_id)
                self._files[image_id] = folder / "JPEGImages" / f"{name}.jpg"
                self._anns[image_id] = parse_voc_xml(
                    folder / "Annotations" / f"{name}.xml", self.class_names
                )
        if not self.ids:
            raise DataError(f"no images listed in {self.root} for splits {list(splits)}")
        self.coco = self._build_coco()
        # boxes the training targets hold (difficult ones left out unless use_difficult)
        self.num_objects = sum(int(self._kept(a).sum()) for a in self._anns.values())

    def _kept(self, a: dict[str, Any]) -> np.ndarray:
        """``(N,)`` bool: the objects of parsed annotation ``a`` that training targets keep (not
        difficult unless ``use_difficult``; a box that clipping to the image left empty never)."""
        kept = np.ones(len(a["labels"]), bool) if self.use_difficult else ~a["difficult"]
        return kept & valid_boxes_mask(torch.from_numpy(a["boxes"])).numpy()

    def _build_coco(self) -> COCO:
        images, anns = [], []
        for image_id in self.ids:
            a = self._anns[image_id]
            images.append({"id": image_id, "file_name": self._files[image_id].name,
                           "width": a["width"], "height": a["height"]})  # fmt: skip
            xywh = convert_boxes(a["boxes"], "xyxy", "xywh").tolist()
            for b, lb, d in zip(xywh, a["labels"].tolist(), a["difficult"].tolist(), strict=True):
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": lb + 1,
                             "bbox": b, "area": b[2] * b[3], "iscrowd": int(d)})  # fmt: skip
        coco = COCO()
        coco.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self._files[self.ids[index]]

    def orientation(self, index: int) -> bool:
        """True: images are read turned by their EXIF orientation (as a viewer shows them)."""
        return True

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image_id = self.ids[index]
        a = self._anns[image_id]
        keep = self._kept(a)
        image = read_image(self._files[image_id])
        return to_sample(image, a["boxes"][keep], a["labels"][keep], image_id, self.transforms)
