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
import copy
import functools
import io
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionkit.errors import ConfigError
from visionkit.io.heap import paused_gc
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
    """Load ``results`` (a non-empty COCO results list, left as it is: what is loaded are copies
    with ``id``, ``area`` and ``iscrowd``; a ``segm`` evaluation's without their ``bbox``, so
    that a mask's area is its own, as detectron2 scores them) against the pycocotools index
    ``coco_gt`` and run evaluate, accumulate and summarize with ``backend`` (faster-coco-eval
    falls back to pycocotools when not installed), over ``image_ids`` (default: every image)
    with ``iou_type`` ``"bbox"`` or ``"segm"``.

    Returns COCOeval's 12 summary numbers (-1 where a range holds no ground truth), its
    precision array ``(iou, recall, category, area, max detections)`` and the category ids of
    its third axis."""
    check_coco_backend(backend)
    module = faster_coco_eval() if backend == "faster-coco-eval" else None
    with paused_gc():  # the records loaded and COCOeval's per-image state hold no cycles
        return _evaluate(module, coco_gt, results, image_ids, iou_type)


def _evaluate(
    module: Any,
    coco_gt: COCO,
    results: list[dict[str, Any]],
    image_ids: Sequence[int] | None,
    iou_type: str,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """:func:`run_cocoeval` by faster-coco-eval's ``module``, or pycocotools when None."""
    if module is None:
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(coco_gt, coco_gt.loadRes(_copies(results, iou_type)), iouType=iou_type)
            if image_ids is not None:
                ev.params.imgIds = sorted(int(i) for i in image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return np.asarray(ev.stats), ev.eval["precision"], list(ev.params.catIds)
    gt = _FAST_INDEX.get(coco_gt)  # its own index over the same dicts, built once per dataset
    if gt is None:
        gt = _FAST_INDEX[coco_gt] = module.COCO(coco_gt.dataset)
    if iou_type == "bbox":
        dt = result_index(module, gt, results)
    else:
        dt = gt.loadRes(_copies(results, iou_type))
    ev = module.COCOeval_faster(gt, dt, iouType=iou_type)
    if image_ids is not None:
        ev.params.imgIds = sorted(int(i) for i in image_ids)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return np.asarray(ev.stats[:12]), ev.eval["precision"], list(ev.params.catIds)


def _copies(results: list[dict[str, Any]], iou_type: str) -> list[dict[str, Any]]:
    """Copies of ``results`` for ``loadRes``, which writes into the records it loads (``id``,
    ``area``, a box's outline); a ``segm`` evaluation's without ``bbox``."""
    drop = "bbox" if iou_type == "segm" else None
    return [{k: v for k, v in r.items() if k != drop} for r in results]


def result_index(module: Any, gt: Any, results: list[dict[str, Any]]) -> Any:
    """faster-coco-eval's index of box ``results`` against its ground truth ``gt``: what
    ``gt.loadRes`` builds from them, in one pass: a new record per result with its own fields,
    ``area`` its box's ``w * h``, ``id`` ``1..N`` in order, ``iscrowd`` 0 (a result's own
    ``area``, ``id`` or ``iscrowd`` replaced, as loadRes does), less the box's outline as a
    polygon ``segmentation`` that box AP never reads; the image and category lists as loadRes
    copies them.

    Raises:
        ValueError: a result of an image ``gt`` does not have (loadRes: an AssertionError).
    """
    records = [
        {**r, "area": r["bbox"][2] * r["bbox"][3], "id": k, "iscrowd": 0}
        for k, r in enumerate(results, 1)
    ]
    if not {r["image_id"] for r in records} <= gt.imgs.keys():
        raise ValueError("results of images the ground truth does not have")
    dt = module.COCO()
    dt.dataset = {
        "info": copy.deepcopy(gt.dataset.get("info", {})),
        "images": list(gt.dataset["images"]),
        "categories": copy.deepcopy(gt.dataset["categories"]),
        "annotations": records,
    }
    dt.createIndex()
    return dt
