"""The rules of numbers every annotation and prediction file obeys, where it enters the toolkit:
JSON integers and finite numbers, ids that fit int64, image sides, boxes within their image.

Each ``*_problem`` function says what is wrong with a value (a phrase to put after the field's
name in a one-line error), or None when it is good; the ``is_*`` ones answer yes or no. Datasets
(``data/coco_checks.py``, ``data/voc.py``), prediction files (``evaluation/coco_eval.py``) and
the predictor's categories (``inference/``) use them.
"""

from __future__ import annotations

import math
from typing import Any

# ids are packed into int64 arrays (data/packed.py) and compared as such
ID_RANGE = (-(1 << 63), (1 << 63) - 1)
# OpenCV's own limit on an image side (CV_IO_MAX_IMAGE_WIDTH): no larger image is ever read
MAX_IMAGE_SIDE = 1 << 20
# How far a box may stick out of its image (rounding, exporters' off-by-one): this many pixels
# plus this fraction of the side; further, it is another image's box or a wrong number
BOX_MARGIN_PX = 1.0
BOX_MARGIN_FRACTION = 0.01


def is_int(v: Any) -> bool:
    """A JSON integer (not a bool, not a float, not a string)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_finite_number(v: Any) -> bool:
    """A JSON number (int or float, not a bool) that is finite."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def is_id(v: Any) -> bool:
    """A JSON integer within :data:`ID_RANGE`."""
    return is_int(v) and ID_RANGE[0] <= v <= ID_RANGE[1]


def side_problem(v: Any) -> str | None:
    """What is wrong with an image width or height (an integer in 1..:data:`MAX_IMAGE_SIDE`),
    or None."""
    if not is_int(v) or v < 1:
        return f"must be a positive integer, got {v!r}"
    if v > MAX_IMAGE_SIDE:
        return f"{v} is beyond the {MAX_IMAGE_SIDE} px an image may have"
    return None


def box_margin(side: float) -> float:
    """How far (pixels) a box may stick out of an image ``side`` px long."""
    return BOX_MARGIN_PX + BOX_MARGIN_FRACTION * side


def box_problem(box: Any, width: int, height: int) -> str | None:
    """What is wrong with a COCO ``[x, y, w, h]`` pixel box of a ``width`` x ``height`` image:
    not 4 finite numbers, a negative width or height, or beyond the image by more than
    :func:`box_margin`; None for a good box."""
    if not (isinstance(box, list) and len(box) == 4 and all(map(is_finite_number, box))):
        return "is not 4 finite numbers"
    x, y, w, h = box
    if w < 0 or h < 0:
        return "has a negative width or height"
    mx, my = box_margin(width), box_margin(height)
    if x < -mx or y < -my or x + w > width + mx or y + h > height + my:
        return f"lies beyond its {width}x{height} image"
    return None
