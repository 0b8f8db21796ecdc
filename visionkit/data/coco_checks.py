"""One validation pass over a COCO instances file before anything reads it, and the image sizes
it promises.

Every record is checked once, where it enters the toolkit, so that a careless or hostile file is
one line naming the file, the record and the field (exit 2), not a traceback mid-epoch nor a
silently wrong number: duplicate ids (one image would vanish and another be trained on the wrong
boxes), string ids, unknown categories, boxes that are not 4 finite numbers, images without a
size. ``iscrowd`` and ``area``, optional in many exporters, are filled in (0; the box's area),
as COCOeval needs them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.errors import DataError
from visionkit.io.image import read_image


def is_int(v: Any) -> bool:
    """A JSON integer (not a bool, not a float, not a string)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_finite_number(v: Any) -> bool:
    """A JSON number (int or float, not a bool) that is finite."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def check_coco_dataset(data: dict[str, Any], where: Path) -> None:
    """Validate (and complete ``iscrowd``/``area`` of) a loaded instances JSON in place.

    Raises:
        DataError: the first bad record: ``<file>: images[i] (id 7): 'width' ...``.
    """
    cats, images = data["categories"], data["images"]
    if not isinstance(cats, list) or not cats:
        raise DataError(f"{where}: 'categories' is empty: no class to learn")
    seen: set[int] = set()
    for k, c in enumerate(cats):
        if not isinstance(c, dict) or not is_int(c.get("id")) or not isinstance(c.get("name"), str):
            raise DataError(f"{where}: categories[{k}] needs an integer 'id' and a 'name'")
        if c["id"] in seen:
            raise DataError(f"{where}: categories[{k}]: id {c['id']} appears twice")
        seen.add(c["id"])
    cat_ids, image_ids = seen, set()
    for k, im in enumerate(images):
        if not isinstance(im, dict) or not is_int(im.get("id")):
            raise DataError(f"{where}: images[{k}]: 'id' must be an integer, got {_get(im, 'id')}")
        what = f"{where}: images[{k}] (id {im['id']})"
        if im["id"] in image_ids:
            raise DataError(f"{what}: the id appears twice; each image needs its own")
        image_ids.add(im["id"])
        for key in ("width", "height"):
            if not is_int(im.get(key)) or im[key] < 1:
                raise DataError(f"{what}: '{key}' must be a positive integer, got {im.get(key)!r}")
        if not isinstance(im.get("file_name"), str):
            raise DataError(f"{what}: no 'file_name'")
    for k, a in enumerate(data["annotations"]):
        what = f"{where}: annotations[{k}]"
        if not isinstance(a, dict):
            raise DataError(f"{what} is a {type(a).__name__}, not a dict")
        if not is_int(a.get("image_id")) or a["image_id"] not in image_ids:
            raise DataError(f"{what}: image_id {_get(a, 'image_id')} names no image of the file")
        if not is_int(a.get("category_id")) or a["category_id"] not in cat_ids:
            raise DataError(
                f"{what}: category_id {_get(a, 'category_id')} is not one of the categories"
            )
        box = a.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(is_finite_number(v) for v in box)):
            raise DataError(f"{what}: bbox {box!r} is not 4 finite numbers [x, y, w, h]")
        if box[2] < 0 or box[3] < 0:
            raise DataError(f"{what}: bbox {box!r} has a negative width or height")
        if not is_int(a.get("iscrowd", 0)) and not isinstance(a.get("iscrowd"), bool):
            raise DataError(f"{what}: 'iscrowd' must be 0 or 1, got {a['iscrowd']!r}")
        a.setdefault("iscrowd", 0)
        if not is_finite_number(a.setdefault("area", float(box[2] * box[3]))):
            raise DataError(f"{what}: 'area' must be a finite number, got {a['area']!r}")
    ids = [a.get("id") for a in data["annotations"]]
    if any(not is_int(i) for i in ids) or len(set(ids)) != len(ids):
        for k, a in enumerate(data["annotations"], start=1):  # COCOeval needs unique ids
            a["id"] = k


def _get(record: Any, key: str) -> str:
    return repr(record.get(key)) if isinstance(record, dict) else "(not a dict)"


def read_sized_image(path: Path, height: int, width: int, where: str) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of an annotated image, in the orientation its annotations use.

    Annotations describe the pixels as stored (the usual case) or, for some exporters, as
    displayed after the file's EXIF rotation; the file's ``width``/``height`` tell which. The
    stored pixels are used when their size matches, else the EXIF-rotated ones when theirs does;
    neither is a DataError (the boxes would not fit the image).
    """
    image = read_image(path, orientation=False)
    if image.shape[:2] == (height, width):
        return image
    rotated = read_image(path)
    if rotated.shape[:2] == (height, width):
        return rotated
    raise DataError(
        f"{where}: {path} is {image.shape[1]}x{image.shape[0]} px but the annotation file says "
        f"{width}x{height}"
    )
