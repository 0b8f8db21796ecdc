"""Write a dataset in the Pascal VOC layout that ``data/voc.py`` reads::

    <out>/VOCdata/JPEGImages/<name>.jpg           the image files, byte for byte
    <out>/VOCdata/Annotations/<name>.xml          size, objects: name, difficult, bndbox
    <out>/VOCdata/ImageSets/Main/<split>.txt      the split's names

read back with ``type: voc``, ``root: <out>``, ``splits: [data/<split>]`` and the classes in
``class_names``. The splits share the folders, so names are unique across them. The layout holds
JPEG files (``JPEGImages/<name>.jpg``): another format is refused rather than re-encoded.

Boxes are VOC's 1-based pixel indices (``xmin = x1 + 1``), written with up to 3 decimals (VOC's
own are integers; visionkit's reader, and those that parse them as floats, keep the sub-pixel
position); a box under 1 px wide or tall has no such index (``xmin > xmax``): left out, counted.
VOC has no crowd flag, and ``difficult`` is not one: a crowd region covers many objects, a
difficult object is one that is hard to see, and VOC scores them by another rule (IoU, one
detection each). Crowd regions are left out, counted; ``difficult`` objects stay difficult.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import yaml

from visionkit.data.writers.common import Namer, SourceImage, Writer, copy_image
from visionkit.errors import DataError, shown
from visionkit.io.atomic import write_bytes, write_text
from visionkit.structures.boxes import convert_boxes

VOC_NAME = "data"  # the VOC<name> folder; its splits are read as "data/<split>"
JPEG_SUFFIXES = (".jpg", ".jpeg")


def _number(v: float) -> str:
    """``v`` with at most 3 decimals, no trailing zeros (``12``, ``12.5``, ``12.346``)."""
    text = f"{v:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


class VocWriter(Writer):
    format = "voc"

    def __init__(self, out: Path, link: bool = False) -> None:
        super().__init__(out, link)
        self.folder = out / f"VOC{VOC_NAME}"
        self.names = Namer()  # one namespace: the splits share JPEGImages/ and Annotations/

    def begin(self, split: str, class_names: list[str], cat_ids: list[int]) -> None:
        super().begin(split, class_names, cat_ids)
        self.listed: list[str] = []

    def add(self, image: SourceImage) -> None:
        if image.path.suffix.lower() not in JPEG_SUFFIXES:
            raise DataError(
                f"{shown(str(image.path))}: not a JPEG file; VOC's layout holds JPEGImages/"
                "<name>.jpg (convert to coco or yolo, which copy any image format)"
            )
        name = Path(self.names(image.path, image.image_id, ".jpg")).stem
        copy_image(image.path, self.folder / "JPEGImages" / f"{name}.jpg", self.link)
        voc = convert_boxes(image.boxes, "xyxy", "voc")
        small = ((voc[:, 0] > voc[:, 2]) | (voc[:, 1] > voc[:, 3])).numpy()
        keep = ~image.crowd & ~small
        self.dropped["crowd regions (VOC has no crowd flag)"] += int(image.crowd.sum())
        self.dropped["boxes under 1 px (VOC's pixel indices cannot hold them)"] += int(
            (small & ~image.crowd).sum()
        )
        xml = self._xml(name, image, voc[keep].tolist(), keep)
        write_bytes(self.folder / "Annotations" / f"{name}.xml", xml)
        self.listed.append(name)
        self.objects += int(keep.sum())

    def _xml(self, name: str, image: SourceImage, boxes: list, keep) -> bytes:
        root = ET.Element("annotation")
        ET.SubElement(root, "folder").text = f"VOC{VOC_NAME}"
        ET.SubElement(root, "filename").text = f"{name}.jpg"
        size = ET.SubElement(root, "size")
        for tag, v in (("width", image.size[1]), ("height", image.size[0]), ("depth", 3)):
            ET.SubElement(size, tag).text = str(v)
        ET.SubElement(root, "segmented").text = "0"
        labels, difficult = image.labels[keep].tolist(), image.difficult[keep].tolist()
        for box, label, hard in zip(boxes, labels, difficult, strict=True):
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = self.class_names[label]
            ET.SubElement(obj, "pose").text = "Unspecified"
            ET.SubElement(obj, "truncated").text = "0"
            ET.SubElement(obj, "difficult").text = str(int(hard))
            bndbox = ET.SubElement(obj, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
                ET.SubElement(bndbox, tag).text = _number(v)
        ET.indent(root)
        return ET.tostring(root, encoding="utf-8", xml_declaration=True)

    def end(self) -> list[str]:
        listing = self.folder / "ImageSets" / "Main" / f"{self.split}.txt"
        write_text(listing, "".join(f"{n}\n" for n in self.listed))
        key = f"data.{self.split}"
        names = yaml.safe_dump(self.class_names, default_flow_style=True, width=1 << 30).strip()
        return [f"{key}.type=voc", f"{key}.root={self.out}",
                f"{key}.splits=[{VOC_NAME}/{self.split}]", f"{key}.class_names={names}"]  # fmt: skip
