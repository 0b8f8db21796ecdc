"""Pascal VOC detection from the VOCdevkit layout; several year/split pairs may be concatenated."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from visionkit.data.coco import LazyGroundTruth, coco_index, to_sample
from visionkit.data.coco_checks import check_class_names, compare_headers
from visionkit.data.packed import ImageTable, PackedArrays, Record
from visionkit.errors import DataError
from visionkit.io.image import read_image
from visionkit.io.structured import read_text, read_xml
from visionkit.structures.boxes import clip_boxes, convert_boxes, valid_boxes_mask
from visionkit.structures.labels import VOC_CLASSES
from visionkit.utils.validators import box_problem, side_problem

DIFFICULT = {"0": False, "1": True, "false": False, "true": True, "no": False, "yes": True}


def parse_voc_xml(path: Path, class_names: Sequence[str]) -> dict[str, Any]:
    """One annotation file (read by :func:`~visionkit.io.structured.read_xml`) -> size, xyxy
    boxes (0-based continuous, clipped to the image), labels, difficult flags; the same boxes
    train and score.

    Raises:
        DataError: one line naming the file, the object and the field: unreadable XML, a
            missing, non-integer, 0, negative or huge size, an unknown class, a box coordinate
            that is missing or not a finite number, a box inverted (xmin > xmax) or beyond the
            image (:func:`~visionkit.utils.validators.box_problem`), a ``<difficult>`` other
            than 0/1 (or yes/no, true/false).
    """
    root = read_xml(path)
    try:
        width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
    except (TypeError, ValueError):
        raise DataError(f"{path}: <size> needs integer <width> and <height>") from None
    for tag, side in (("width", width), ("height", height)):
        problem = side_problem(side)
        if problem:
            raise DataError(f"{path}: <size> <{tag}> {problem}")
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
    # checked in float64: 1e300 is finite there, and would be inf in float32
    boxes = convert_boxes(np.array(raw, np.float64).reshape(-1, 4), "voc", "xyxy")
    for k, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        problem = box_problem([x1, y1, x2 - x1, y2 - y1], width, height)
        if problem:
            name = class_names[labels[k]]
            raise DataError(f"{path}: object {k + 1} ({name}): the box {raw[k]} {problem}")
    boxes = boxes.float()
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
                "set data.train.root; visionkit/configs/*_shapes.yaml run with no data at all"
            )
        self.transforms, self.use_difficult = transforms, use_difficult
        check_class_names(class_names, "VOC class_names")
        self.class_names = list(class_names)
        self.cat_ids = list(range(1, len(self.class_names) + 1))
        files, anns, xmls = [], [], []
        for entry in splits:
            year, _, split = entry.partition("/")
            folder = self.root / f"VOC{year}"
            listing = folder / "ImageSets" / "Main" / f"{split}.txt"
            if not listing.is_file():
                raise DataError(
                    f"VOC split list not found: {listing} (splits look like 2007/trainval)"
                )
            for name in read_text(listing).split():
                files.append(str(Path(f"VOC{year}") / "JPEGImages" / f"{name}.jpg"))
                xmls.append(folder / "Annotations" / f"{name}.xml")
                anns.append(parse_voc_xml(xmls[-1], self.class_names))
        if not files:
            raise DataError(f"no images listed in {self.root} for splits {list(splits)}")
        self.ids = list(range(1, len(files) + 1))
        stored = self._check_sizes(files, xmls, anns)
        sizes = np.array([(a["height"], a["width"]) for a in anns], np.int32)
        self._table = ImageTable(self.ids, files, sizes, np.array(stored, bool), self.root)
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

    def _check_sizes(
        self, files: list[str], xmls: list[Path], anns: list[dict[str, Any]]
    ) -> list[bool]:
        """Each image's ``<size>`` against its JPEG's header, by COCO's rule
        (:func:`~visionkit.data.coco_checks.compare_headers`: the annotations describe the
        pixels as stored or as an EXIF-rotated viewer shows them); returns which are read as
        stored. A mismatch is a DataError naming the first XML file."""
        paths = [self.root / f for f in files]
        stored, wrong = compare_headers(paths, [(a["width"], a["height"]) for a in anns])
        if wrong:
            k, width, height = wrong[0]
            raise DataError(
                f"{xmls[k]}: <size> {anns[k]['width']}x{anns[k]['height']} differs from "
                f"{paths[k].name}, {width}x{height} px ({len(wrong)} annotation file(s) differ "
                "from their image)"
            )
        return stored

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
        """Whether image ``index`` is read turned by its EXIF orientation (as a viewer shows it;
        every image but those whose ``<size>`` is that of the stored pixels)."""
        return not self._table.stored[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        r = self.record(index)
        image = read_image(r.path, orientation=self.orientation(index))
        return to_sample(image, r.boxes, r.labels, r.image_id, self.transforms)
