"""Annotation files that would train on the wrong boxes, score a wrong number or end in a
traceback are refused in one line naming the file, the record and the field."""

import copy
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from visionkit.data.coco import load_coco
from visionkit.data.coco_checks import check_coco_dataset, read_sized_image
from visionkit.data.voc import parse_voc_xml
from visionkit.errors import DataError

GOOD = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
               {"id": 2, "file_name": "b.jpg", "width": 40, "height": 30}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 12]}],
    "categories": [{"id": 3, "name": "circle"}],
}  # fmt: skip


def broken(path: str, value):
    """GOOD with ``path`` (``"annotations.0.bbox"``) set to ``value`` (``...``: deleted)."""
    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    last = int(last) if last.isdigit() else last
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


COCO_CASES = [
    ("images.1.id", 1, r"images\[1\] \(id 1\): the id appears twice"),
    ("images.0.id", "1", r"images\[0\]: 'id' must be an integer, got '1'"),
    ("images.0.width", ..., r"images\[0\] \(id 1\): 'width' must be a positive integer, got None"),
    ("categories", [], r"'categories' is empty"),
    ("annotations.0.category_id", 9, r"annotations\[0\]: category_id 9 is not one of"),
    ("annotations.0.category_id", "3", r"annotations\[0\]: category_id '3' is not one of"),
    ("annotations.0.image_id", 5, r"annotations\[0\]: image_id 5 names no image"),
    ("annotations.0.bbox", [1, 2, 3], r"annotations\[0\]: bbox \[1, 2, 3\] is not 4 finite"),
    ("annotations.0.bbox", None, r"annotations\[0\]: bbox None is not 4 finite"),
    ("annotations.0.bbox", [1, 2, "x", 4], r"annotations\[0\]: bbox \[1, 2, 'x', 4\] is not 4"),
    ("annotations.0.bbox", [1, 2, math.nan, 4], r"annotations\[0\]: bbox \[1, 2, nan, 4\] is not"),
    ("annotations.0.bbox", [1, 2, -3, 4], r"annotations\[0\]: bbox .* negative width or height"),
]


@pytest.mark.parametrize(("path", "value", "message"), COCO_CASES)
def test_coco_file_refused_in_one_line(path, value, message):
    with pytest.raises(DataError, match=rf"^f\.json: {message}") as e:
        check_coco_dataset(broken(path, value), Path("f.json"))
    assert "\n" not in str(e.value)


def test_missing_iscrowd_and_area_are_filled_for_cocoeval():
    data = copy.deepcopy(GOOD)
    check_coco_dataset(data, Path("f.json"))
    assert data["annotations"][0]["iscrowd"] == 0 and data["annotations"][0]["area"] == 120.0


def test_duplicate_image_ids_through_the_loader(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(broken("images.1.id", 1)))
    with pytest.raises(DataError, match="the id appears twice"):
        load_coco(path)


def test_the_annotated_size_decides_the_orientation(tmp_path):
    # an image stored 40 wide x 30 tall whose EXIF says "rotate 90": displayed 30 x 40
    stored = np.zeros((30, 40, 3), np.uint8)
    stored[:, :10] = 255
    ok, jpeg = cv2.imencode(".jpg", stored)
    path = tmp_path / "r.jpg"
    path.write_bytes(with_exif_orientation(jpeg.tobytes(), 6))
    assert read_sized_image(path, 30, 40, "w").shape[:2] == (30, 40)  # boxes on stored pixels
    assert read_sized_image(path, 40, 30, "w").shape[:2] == (40, 30)  # boxes on the rotated view
    with pytest.raises(DataError, match="is 40x30 px but the annotation file says 50x30"):
        read_sized_image(path, 30, 50, "w")


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A JPEG with an APP1 EXIF segment holding only the Orientation tag."""
    tiff = (b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01"
            + orientation.to_bytes(2, "big") + b"\x00\x00" + b"\x00\x00\x00\x00")  # fmt: skip
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + app1 + jpeg[2:]


VOC = """<annotation><size><width>40</width><height>30</height></size>
<object><name>{name}</name><difficult>{difficult}</difficult>
<bndbox><xmin>{xmin}</xmin><ymin>2</ymin><xmax>{xmax}</xmax><ymax>20</ymax></bndbox></object>
</annotation>"""
VOC_CASES = [
    (dict(name="dragon"), r"object 1: class 'dragon' is not one of the 2 classes"),
    (dict(xmin="nan"), r"object 1 \(circle\): <xmin> 'nan' is not a finite number"),
    (dict(xmin="ten"), r"object 1 \(circle\): <xmin> 'ten' is not a number"),
    (dict(xmin="30", xmax="10"), r"object 1 \(circle\): the box \[30.0, 2.0, 10.0, 20.0\] is"),
    (dict(difficult="maybe"), r"object 1 \(circle\): <difficult> must be 0 or 1, got 'maybe'"),
]


@pytest.mark.parametrize(("fields", "message"), VOC_CASES)
def test_voc_annotation_refused_in_one_line(fields, message, tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(VOC.format(**({"name": "circle", "difficult": "0", "xmin": "3",
                                   "xmax": "12"} | fields)))  # fmt: skip
    with pytest.raises(DataError, match=rf"^{path}: {message}"):
        parse_voc_xml(path, ["circle", "square"])


def test_voc_difficult_yes_and_boxes_clipped_alike_for_training_and_scoring(tmp_path):
    path = tmp_path / "a.xml"
    # xmax 41 on a 40 px wide image: within the tolerance (box_margin), clipped; further out is
    # refused (tests/test_structured_reader.py)
    path.write_text(VOC.format(name="square", difficult="yes", xmin="3", xmax="41"))
    ann = parse_voc_xml(path, ["circle", "square"])
    assert ann["difficult"].tolist() == [True] and ann["labels"].tolist() == [1]
    assert ann["boxes"].tolist() == [[2.0, 1.0, 40.0, 20.0]]  # VOC 1-based, clipped to 40 px
