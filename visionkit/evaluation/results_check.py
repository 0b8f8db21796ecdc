"""The check of COCO results before they are scored (a predictions file, ``visionkit eval
--predictions``): every record a dict with a known image and category, a box within its image
and a score in [0, 1], each refusal one line naming the file, the record and the field.

The per-record rules are :func:`_check_record`'s; a file of 500,000 good records is checked in
bulk (numpy over its columns, :func:`checked_prefix`) and only the records from the first one
the bulk check cannot vouch for go through the per-record check, which raises at the first bad
one: the same message as a check of every record, at a fraction of the time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from visionkit.data.coco_checks import segmentation_problem
from visionkit.errors import DataError
from visionkit.io.heap import paused_gc
from visionkit.utils.validators import box_margin, box_problem, is_finite_number, is_int

FIELDS = ("image_id", "category_id", "bbox", "score")
_FIELDS = itemgetter(*FIELDS)
_NUMBER = {int, float}


def check_coco_results(
    results: Any,
    image_sizes: Mapping[int, tuple[int, int]],
    cat_ids: Sequence[int],
    where: str,
    masks: bool = False,
) -> None:
    """Refuse, in one line naming ``where``, the record and the field, COCO box results that
    are not a list of ``{image_id, category_id, bbox, score}`` with an image and a category of
    the dataset, a box within its image (:func:`~visionkit.utils.validators.box_problem`) and a
    score in [0, 1]; with ``masks`` (a ``segm`` evaluation), also a ``segmentation`` that is not
    a compressed RLE of its image's size whose runs cover it
    (:func:`~visionkit.data.coco_checks.segmentation_problem`).

    Args:
        image_sizes: image id -> ``(height, width)`` of each image of the dataset.
    """
    if not isinstance(results, list):
        raise DataError(f"{where}: not a COCO results list")
    cats = {int(c) for c in cat_ids}
    with paused_gc():  # the columns' tuples hold no cycles
        start = 0 if masks else checked_prefix(results, image_sizes, cats)
    for k in range(start, len(results)):
        _check_record(k, results[k], image_sizes, cats, where, masks)


def _check_record(
    k: int,
    r: Any,
    image_sizes: Mapping[int, tuple[int, int]],
    cats: set[int],
    where: str,
    masks: bool,
) -> None:
    """Refuse record ``k`` of a results list (:func:`check_coco_results`)."""
    if not isinstance(r, dict):
        raise DataError(f"{where}: record {k} is a {type(r).__name__}, not a dict")
    for key in FIELDS + (("segmentation",) if masks else ()):
        if key not in r:
            raise DataError(f"{where}: record {k} has no '{key}'")
    for key, known in (("image_id", image_sizes), ("category_id", cats)):
        v = r[key]
        if not is_int(v) or v not in known:
            raise DataError(f"{where}: record {k}: {key} {v!r} is not one of the dataset's {key}s")
    height, width = image_sizes[r["image_id"]]
    problem = box_problem(r["bbox"], width, height)
    if problem:
        raise DataError(f"{where}: record {k}: bbox {r['bbox']!r} {problem}")
    score = r["score"]
    if not is_finite_number(score):
        raise DataError(f"{where}: record {k}: score {score!r} is not a finite number")
    if not 0 <= score <= 1:
        raise DataError(f"{where}: record {k}: score {score!r} is outside [0, 1]")
    if masks:
        problem = _result_mask_problem(r["segmentation"], (height, width))
        if problem:
            raise DataError(f"{where}: record {k}: 'segmentation' {problem}")


def _result_mask_problem(seg: Any, size: tuple[int, int]) -> str | None:
    """What is wrong with a result's ``segmentation`` (a compressed RLE of its image, what
    COCOeval scores masks from) for an image of ``size`` ``(H, W)``, or None."""
    if not isinstance(seg, dict) or not isinstance(seg.get("counts"), str):
        got = type(seg).__name__ if not isinstance(seg, dict) else "an RLE whose counts are no text"
        return f"is not a compressed RLE ({{'size': [h, w], 'counts': text}}; got {got})"
    return segmentation_problem(seg, size, "masks")


def checked_prefix(
    results: list[Any], image_sizes: Mapping[int, tuple[int, int]], cats: set[int]
) -> int:
    """How many leading records of ``results`` surely pass :func:`_check_record` (boxes, no
    masks), checked in bulk: all of them for a good file; the index of the first bad record for
    a file whose records are dicts with the four fields, integer ids within int64 and numbers
    (ints or floats, boxes lists of 4) in every field; 0, vouching for none, otherwise.

    The bulk rules are :func:`_check_record`'s in float64: the same IEEE arithmetic for floats,
    exact for integers below 2**53, and any larger number lies beyond every image (2**20 px)."""
    n = len(results)
    if n == 0 or not image_sizes or set(map(type, results)) != {dict}:
        return 0
    try:
        image_ids, cat_ids, boxes, scores = zip(*map(_FIELDS, results), strict=True)
    except KeyError:
        return 0
    if set(map(type, image_ids)) != {int} or set(map(type, cat_ids)) != {int}:
        return 0  # bools, floats, strings: the per-record check names them
    if set(map(type, boxes)) != {list} or set(map(len, boxes)) != {4}:
        return 0
    flat = list(chain.from_iterable(boxes))
    if not set(map(type, flat)) <= _NUMBER or not set(map(type, scores)) <= _NUMBER:
        return 0
    try:
        image = np.array(image_ids, np.int64)
        cat = np.array(cat_ids, np.int64)
        known = np.array(sorted(image_sizes), np.int64)
        known_cats = np.array(sorted(cats), np.int64)
        x, y, w, h = np.array(flat, np.float64).reshape(n, 4).T
        score = np.array(scores, np.float64)
    except (OverflowError, TypeError, ValueError):  # ids beyond int64, ints beyond a double
        return 0
    row = np.minimum(np.searchsorted(known, image), len(known) - 1)
    bad = known[row] != image
    sizes = np.array([image_sizes[i] for i in known.tolist()], np.float64).reshape(-1, 2)
    height, width = sizes[row, 0], sizes[row, 1]
    mx, my = box_margin(width), box_margin(height)
    with np.errstate(invalid="ignore", over="ignore"):
        bad |= ~np.isin(cat, known_cats)
        bad |= ~(np.isfinite(x) & np.isfinite(y) & np.isfinite(w) & np.isfinite(h))
        bad |= (w < 0) | (h < 0)
        bad |= (x < -mx) | (y < -my) | (x + w > width + mx) | (y + h > height + my)
        bad |= ~np.isfinite(score) | (score < 0) | (score > 1)
    return int(np.argmax(bad)) if bad.any() else n
