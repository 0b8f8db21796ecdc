"""Write a dataset in the COCO layout that ``data/coco.py`` reads::

    <out>/images/<split>/<name>                    the image files, byte for byte
    <out>/annotations/instances_<split>.json       images, annotations (bbox xywh), categories

Image ids, category ids and areas are the source's (YOLO and VOC readers number their
categories ``1..C``, their areas are the boxes'). Crowd regions stay ``iscrowd: 1``; VOC
``difficult`` objects are written as ``iscrowd: 1`` too, counted: regions that evaluation neither
counts nor penalizes and training leaves out, as visionkit treats ``difficult`` (COCOeval
matches a crowd region by the share of the detection inside it, the VOC devkit a difficult
object by IoU: the two are not the same rule). Only boxes are written: no segmentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visionkit.data.writers.common import Namer, SourceImage, Writer, copy_image
from visionkit.io.atomic import write_json
from visionkit.structures.boxes import convert_boxes


class CocoWriter(Writer):
    format = "coco"

    def begin(self, split: str, class_names: list[str], cat_ids: list[int]) -> None:
        super().begin(split, class_names, cat_ids)
        self.names = Namer()
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add(self, image: SourceImage) -> None:
        name = self.names(image.path, image.image_id)
        copy_image(image.path, self.out / "images" / self.split / name, self.link)
        h, w = image.size
        self.images.append({"id": image.image_id, "file_name": name, "width": w, "height": h})
        self.changed["difficult objects written as iscrowd 1"] += int(image.difficult.sum())
        xywh = convert_boxes(image.boxes, "xyxy", "xywh").tolist()
        flags = (image.crowd | image.difficult).tolist()
        for box, label, crowd, area in zip(
            xywh, image.labels.tolist(), flags, image.area.tolist(), strict=True
        ):
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": image.image_id,
                "category_id": self.cat_ids[label], "bbox": [round(v, 6) for v in box],
                "area": round(area, 6), "iscrowd": int(crowd),
            })  # fmt: skip
        self.objects += len(xywh)

    def end(self) -> list[str]:
        ann_file = self.ann_file(self.out, self.split)
        categories = [{"id": c, "name": n} for c, n in zip(self.cat_ids, self.class_names,
                                                             strict=True)]  # fmt: skip
        doc = {"images": self.images, "annotations": self.annotations, "categories": categories}
        write_json(ann_file, doc)
        key = f"data.{self.split}"
        return [f"{key}.type=coco", f"{key}.root={self.out / 'images' / self.split}",
                f"{key}.ann_file={ann_file}"]  # fmt: skip

    @staticmethod
    def ann_file(out: Path, split: str) -> Path:
        return out / "annotations" / f"instances_{split}.json"
