"""The COCOeval implementations visionkit scores COCO results with.

``faster-coco-eval`` (the default: evaluate and accumulate in C++) and ``pycocotools`` (the
reference). ``tests/test_coco_backends.py`` holds the default to pycocotools' 12 numbers and
per-class AP to 1e-6, boxes and masks, on a random matrix of cases (crowd regions, images
without objects, non-contiguous category ids, classes with detections only, more than 100
detections per image, tied scores, every area range); where the two would differ, pycocotools'
number is the one visionkit gives, and that case is a test there.
"""

from __future__ import annotations

import contextlib
import functools
import io
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionkit.errors import ConfigError
from visionkit.utils.warn import warn

COCO_BACKENDS = ("faster-coco-eval", "pycocotools")
DEFAULT_COCO_BACKEND = "faster-coco-eval"


@functools.cache
def faster_coco_eval() -> Any:
    """The ``faster_coco_eval`` module, imported on first use; ``None``, with one warning line
    per process, when it is not installed (COCO evaluation then runs pycocotools)."""
    try:
        import faster_coco_eval as module
    except ImportError:
        warn("faster-coco-eval is not installed; COCO evaluation runs pycocotools (slower)")
        return None
    return module


def check_coco_backend(backend: str) -> None:
    """A ConfigError naming the choices unless ``backend`` is one of :data:`COCO_BACKENDS`."""
    if backend not in COCO_BACKENDS:
        raise ConfigError(f"unknown COCO backend {backend!r}; expected one of {COCO_BACKENDS}")


# pycocotools index -> faster-coco-eval's index of the same ground truth (an evaluation each
# epoch reuses it; it goes with the dataset)
_FAST_INDEX: weakref.WeakKeyDictionary[COCO, Any] = weakref.WeakKeyDictionary()


def run_cocoeval(
    coco_gt: COCO,
    results: list[dict[str, Any]],
    image_ids: Sequence[int] | None,
    iou_type: str,
    backend: str = DEFAULT_COCO_BACKEND,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Load ``results`` (a non-empty COCO results list; ``loadRes`` adds ``id``, ``area``,
    ``iscrowd`` and, for boxes, ``segmentation`` to each record) against the pycocotools index
    ``coco_gt`` and run evaluate, accumulate and summarize with ``backend`` (faster-coco-eval
    falls back to pycocotools when not installed), over ``image_ids`` (default: every image)
    with ``iou_type`` ``"bbox"`` or ``"segm"``.

    Returns COCOeval's 12 summary numbers (-1 where a range holds no ground truth), its
    precision array ``(iou, recall, category, area, max detections)`` and the category ids of
    its third axis."""
    check_coco_backend(backend)
    module = faster_coco_eval() if backend == "faster-coco-eval" else None
    if module is None:
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(coco_gt, coco_gt.loadRes(results), iouType=iou_type)
            if image_ids is not None:
                ev.params.imgIds = sorted(int(i) for i in image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return np.asarray(ev.stats), ev.eval["precision"], list(ev.params.catIds)
    gt = _FAST_INDEX.get(coco_gt)  # its own index over the same dicts, built once per dataset
    if gt is None:
        gt = _FAST_INDEX[coco_gt] = module.COCO(coco_gt.dataset)
    ev = module.COCOeval_faster(gt, gt.loadRes(results), iouType=iou_type)
    if image_ids is not None:
        ev.params.imgIds = sorted(int(i) for i in image_ids)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return np.asarray(ev.stats[:12]), ev.eval["precision"], list(ev.params.catIds)
