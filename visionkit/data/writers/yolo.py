"""Write a dataset in the YOLO (Ultralytics) layout that ``data/yolo.py`` reads::

    <out>/data.yaml                     train: images/train, val: images/val, nc, names
    <out>/images/<split>/<name>         the image files, byte for byte
    <out>/labels/<split>/<stem>.txt     class cx cy w h, normalized, 6 decimals

The ``data.yaml`` has no ``path``: Ultralytics and visionkit then read the splits relative to
the yaml's folder, so the dataset can be moved. Six decimals put a coordinate within 5e-7 of
the side: 0.008 px on the largest side visionkit reads (16384 px), far below any annotation's
precision and below the 1e-2 px a box needs to be one. YOLO has no crowd or difficult flag:
such objects are left out, counted.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from visionkit.data.writers.common import Namer, SourceImage, Writer, copy_image
from visionkit.io.atomic import write_text
from visionkit.io.image import IMAGE_EXTS
from visionkit.structures.boxes import convert_boxes
from visionkit.utils.warn import warn


class YoloWriter(Writer):
    format = "yolo"

    def __init__(self, out: Path, link: bool = False) -> None:
        super().__init__(out, link)
        self.splits: dict[str, str] = {}  # split -> its image folder, relative to out
        self.written: set[Path] = set()

    def begin(self, split: str, class_names: list[str], cat_ids: list[int]) -> None:
        super().begin(split, class_names, cat_ids)
        self.names = Namer()
        self.splits[split] = f"images/{split}"

    def add(self, image: SourceImage) -> None:
        name = self.names(image.path, image.image_id)
        target = self.out / "images" / self.split / name
        copy_image(image.path, target, self.link)
        self.written.add(target)
        keep = ~(image.crowd | image.difficult)
        self.dropped["crowd regions (YOLO has no crowd flag)"] += int(image.crowd.sum())
        self.dropped["difficult objects (YOLO has no difficult flag)"] += int(image.difficult.sum())
        boxes = convert_boxes(image.boxes[keep], "xyxy", "cxcywh_norm", image.size).tolist()
        lines = [
            f"{label} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"
            for label, (cx, cy, w, h) in zip(image.labels[keep].tolist(), boxes, strict=True)
        ]
        write_text(self.out / "labels" / self.split / f"{Path(name).stem}.txt", "".join(lines))
        self.objects += len(lines)

    def end(self) -> list[str]:
        folder = self.out / "images" / self.split
        others = [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS]
        others = [p for p in others if p not in self.written]
        if others:  # --exist-ok over an earlier conversion: the reader takes the whole folder
            warn(
                f"{folder} holds {len(others)} images this conversion did not write (first: "
                f"{others[0].name}); the YOLO reader reads every image of the folder"
            )
        key = f"data.{self.split}"
        root = self.out / "data.yaml"
        return [f"{key}.type=yolo", f"{key}.root={root}", f"{key}.splits=[{self.split}]"]

    def finish(self) -> None:
        doc = {**self.splits, "nc": len(self.class_names),
               "names": dict(enumerate(self.class_names))}  # fmt: skip
        write_text(self.out / "data.yaml", yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
