"""One validation pass over a COCO instances file before anything reads it, and the image sizes
it promises; the class-name rule the VOC reader follows too. The rules of numbers it applies
(ids, image sizes, boxes within their image) live in :mod:`visionkit.utils.validators`.

Every record is checked once, where it enters the toolkit, so that a careless or hostile file is
one line naming the file, the record and the field (exit 2), not a traceback mid-epoch nor a
silently wrong number: duplicate ids (one image would vanish and another be trained on the wrong
boxes), string ids or ids beyond int64, unknown categories, two categories of one name (one
would vanish from the per-class table), boxes that are not 4 finite numbers or lie beyond their
image (1e300 passes ``isfinite`` and overflows float32), images without a size.
``iscrowd`` and ``area``, optional in many exporters, are filled in (0; the box's area), as
COCOeval needs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from visionkit.errors import DataError, shown
from visionkit.io.image import read_image
from visionkit.utils.validators import (
    box_margin,
    box_problem,
    is_finite_number,
    is_id,
    is_int,
    side_problem,
)

EXIF_ORIENTATION = 0x0112  # the EXIF tag; 1 = as stored, 5..8 swap width and height


def check_class_names(names: Sequence[str], where: str) -> None:
    """Refuse a class appearing twice in ``names`` (one would vanish from every per-class
    table, its objects scored as the other's).

    Raises:
        DataError: ``<where>: class 'cat' appears twice (classes 3 and 8)``.
    """
    first: dict[str, int] = {}
    for k, name in enumerate(names):
        if name in first:
            raise DataError(
                f"{where}: class {name!r} appears twice (classes {first[name]} and {k}); "
                "each class needs its own name"
            )
        first[name] = k


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
        if not is_id(c["id"]):
            raise DataError(f"{where}: categories[{k}]: id {c['id']} is beyond int64")
        if c["id"] in seen:
            raise DataError(f"{where}: categories[{k}]: id {c['id']} appears twice")
        seen.add(c["id"])
    check_class_names([c["name"] for c in cats], f"{where}: categories")
    cat_ids, image_ids, sizes = seen, set(), {}
    for k, im in enumerate(images):
        if not isinstance(im, dict) or not is_int(im.get("id")):
            raise DataError(f"{where}: images[{k}]: 'id' must be an integer, got {_get(im, 'id')}")
        if not is_id(im["id"]):
            raise DataError(f"{where}: images[{k}]: 'id' {im['id']} is beyond int64")
        what = f"{where}: images[{k}] (id {im['id']})"
        if im["id"] in image_ids:
            raise DataError(f"{what}: the id appears twice; each image needs its own")
        image_ids.add(im["id"])
        for key in ("width", "height"):
            problem = side_problem(im.get(key))
            if problem:
                raise DataError(f"{what}: '{key}' {problem}")
        sizes[im["id"]] = (im["width"], im["height"])
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
        box, (width, height) = a.get("bbox"), sizes[a["image_id"]]
        problem = box_problem(box, width, height)
        if problem:
            raise DataError(f"{what}: bbox {box!r} {problem}")
        crowd = a.get("iscrowd", 0)
        if not (is_int(crowd) or isinstance(crowd, bool)) or crowd not in (0, 1):
            raise DataError(f"{what}: 'iscrowd' must be 0 or 1, got {a['iscrowd']!r}")
        a.setdefault("iscrowd", 0)
        area = a.setdefault("area", float(box[2] * box[3]))
        largest = (width + 2 * box_margin(width)) * (height + 2 * box_margin(height))
        if not is_finite_number(area) or not 0 <= area <= largest:
            raise DataError(
                f"{what}: 'area' must be a number in [0, {largest:g}] (its image's), got {area!r}"
            )
    ids = [a.get("id") for a in data["annotations"]]
    if any(not is_id(i) for i in ids) or len(set(ids)) != len(ids):
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


def image_header(path: Path) -> tuple[int, int, int] | None:
    """``(width, height, EXIF orientation)`` of an image file as stored, from its header alone
    (no decoding); None when it cannot be read (the read reports it, per ``data.on_bad_image``)."""
    try:
        with Image.open(path) as im:
            return im.width, im.height, int(im.getexif().get(EXIF_ORIENTATION, 1))
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError):
        return None


def image_headers(paths: Sequence[Path]) -> list[tuple[int, int, int] | None]:
    """:func:`image_header` of each of ``paths``."""
    return [image_header(p) for p in paths]


def read_headers(paths: Sequence[Path]) -> list[tuple[int, int, int] | None]:
    """:func:`image_header` of each of ``paths``, read by 8 threads (headers only: file-system
    bound), in chunks of 512 files (not a future per file)."""
    chunks = [paths[k : k + 512] for k in range(0, len(paths), 512)]
    with ThreadPoolExecutor(8) as pool:
        return [h for chunk in pool.map(image_headers, chunks) for h in chunk]


def compare_headers(
    paths: Sequence[Path], sizes: Sequence[tuple[int, int]]
) -> tuple[list[bool], list[tuple[int, int, int]]]:
    """Compare each image file's header with the ``(width, height)`` its annotations give, by
    the rule of :func:`read_sized_image`: the annotations describe the pixels as stored or as
    displayed after the file's EXIF rotation, the stored ones when their size matches.
    Unreadable files are left to the read.

    Returns:
        ``stored``: per image, whether it has an EXIF orientation and its annotations describe
        the stored pixels (to be read with ``orientation=False``, by anything that must see the
        same pixels, such as a proposal search); ``wrong``: ``(index, file width, file height)``
        of each image whose file has another size.
    """
    headers = read_headers(paths)
    stored, wrong = [False] * len(paths), []
    for k, (size, header) in enumerate(zip(sizes, headers, strict=True)):
        if header is None:
            continue
        width, height, tag = header
        if (width, height) == tuple(size):
            stored[k] = tag != 1
        elif not (tag in (5, 6, 7, 8) and (height, width) == tuple(size)):
            wrong.append((k, width, height))
    return stored, wrong


def check_image_sizes(images: Sequence[dict[str, Any]], image_dir: Path, where: Path) -> set[int]:
    """Compare every image's ``width``/``height`` with its file before any work starts
    (:func:`compare_headers`).

    Args:
        images: the instances file's (checked) ``images`` records.

    Returns:
        The ids of images with an EXIF orientation whose annotations describe the stored pixels.

    Raises:
        DataError: images whose file has another size, counted, the first one named.
    """
    sizes = [(im["width"], im["height"]) for im in images]
    stored, wrong = compare_headers([image_dir / im["file_name"] for im in images], sizes)
    if wrong:
        k, width, height = wrong[0]
        im = images[k]
        raise DataError(
            f"{where}: {len(wrong)} image(s) differ from their 'width'/'height' (first: image id "
            f"{im['id']}, {Path(im['file_name']).name}, is {width}x{height} px, the file says "
            f"{im['width']}x{im['height']})"
        )
    return {im["id"] for im, s in zip(images, stored, strict=True) if s}


def check_segmentation(
    data: dict[str, Any], where: Path, drawn: str = "label maps", min_points: int = 2
) -> None:
    """Every annotation's ``segmentation`` (what semantic label maps, or instance masks, are
    drawn from) is polygons or an RLE of its image's size: checked before training, not found
    mid-epoch. ``data`` is left as it is.

    Args:
        drawn: what is drawn from the segmentations, for the message of a missing one.
        min_points: the fewest vertices a polygon may have (instance masks: 3; pycocotools
            would read a polygon of 2 points, 4 numbers, as a box).

    Raises:
        DataError: ``<file>: annotations[k] (image id 7): 'segmentation' <what is wrong>``.
    """
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    for k, a in enumerate(data["annotations"]):
        problem = segmentation_problem(
            a.get("segmentation"), sizes[a["image_id"]], drawn, min_points
        )
        if problem:
            raise DataError(
                f"{where}: annotations[{k}] (image id {a['image_id']}): 'segmentation' {problem}"
            )


def segmentation_problem(
    seg: Any, size: tuple[int, int], drawn: str = "label maps", min_points: int = 2
) -> str | None:
    """What is wrong with one ``segmentation`` for an image of ``size`` ``(H, W)``, or None
    (see :func:`check_segmentation`)."""
    if seg is None:
        return f"is missing ({drawn} are drawn from it)"
    if isinstance(seg, list):
        if not seg:
            return "is an empty list of polygons"
        for poly in seg:
            if not isinstance(poly, list) or len(poly) < 4 or len(poly) % 2:
                return "holds a polygon that is not a list of x, y pairs"
            if len(poly) < 2 * min_points:
                return f"holds a polygon of {len(poly) // 2} points (an outline needs {min_points})"
            try:
                flat = np.asarray(poly, np.float64)
            except (TypeError, ValueError, OverflowError):  # text, nested lists, 1e400 as int
                flat = np.full(2, np.nan)
            xy = flat.reshape(-1, 2) if flat.ndim == 1 else np.full((1, 2), np.nan)
            if not np.isfinite(xy).all():
                return "holds a polygon whose coordinates are not all finite numbers"
            (h, w), (mx, my) = size, (box_margin(size[1]), box_margin(size[0]))
            if (xy.min(0) < (-mx, -my)).any() or (xy.max(0) > (w + mx, h + my)).any():
                return f"holds a polygon beyond its {w}x{h} image"
        return None
    if not isinstance(seg, dict):
        return f"is a {type(seg).__name__}, not polygons or an RLE"
    rle_size = seg.get("size")
    if not (isinstance(rle_size, list) and all(map(is_int, rle_size))) or rle_size != list(size):
        return (
            f"is an RLE of size {shown(repr(rle_size), 60)}, not the image's [height, width] "
            f"{list(size)}"
        )
    counts = seg.get("counts")
    counts = rle_string_counts(counts) if isinstance(counts, str) else counts
    if not isinstance(counts, list) or not all(is_int(c) and c >= 0 for c in counts):
        return "is an RLE whose 'counts' are not run lengths"
    if sum(counts) != size[0] * size[1]:
        return f"is an RLE covering {sum(counts)} pixels, not the image's {size[0] * size[1]}"
    return None


def rle_string_counts(text: str) -> list[int] | None:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``: 6-bit
    digits from ``'0'``, 5 bits of value each, a continuation bit, sign-extended, each run
    after the second stored as the difference to the run two before), or None if malformed."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            if p == len(text):
                return None
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        counts.append(x + counts[-2] if len(counts) > 2 else x)
    return counts
