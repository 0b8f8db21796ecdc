"""COCO evaluation time: faster-coco-eval against pycocotools on one generated COCO-sized case.

val2017's shape (5,000 images, 36,000 objects over COCO's 80 non-contiguous category ids, about
1 % of them crowd regions, objects in every area range, some images without objects) with 100
detections per image (jittered copies of the ground truth and random boxes, some of classes
absent from the image), scored by ``visionkit.evaluation.coco_box_metrics`` with each backend in
one process, end to end: loading the results (pycocotools' ``loadRes``; for faster-coco-eval
``coco_backends.result_index``, the same index in one pass), evaluate, accumulate, summarize and
the per-class AP. The ground truth index is built once, outside the timing, as a dataset holds
it; the results list is already parsed, as ``tools/eval.py`` holds it. One markdown table, and
whether the two backends' numbers are equal::

    python benchmarks/coco_eval_speed.py               # the COCO-sized case
    python benchmarks/coco_eval_speed.py --scale 0.01  # 1/100 of it (a smoke run)

``random_case`` is also the generator of ``tests/test_coco_backends.py``'s matrix (with masks).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import time
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from visionkit.evaluation.coco_backends import COCO_BACKENDS
from visionkit.evaluation.coco_eval import coco_box_metrics

VAL2017_IMAGES, VAL2017_OBJECTS, DETECTIONS_PER_IMAGE = 5_000, 36_000, 100
# COCO's 80 category ids (1..90 with gaps)
COCO_CAT_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def _polygon(box: np.ndarray, rng: np.random.Generator) -> list[float]:
    """A random star-shaped polygon of 8 vertices inside ``box`` (xywh), as COCO's flat list."""
    angles = np.sort(rng.uniform(0, 2 * math.pi, 8))
    radii = rng.uniform(0.8, 1.0, 8)
    cx, cy, w, h = box[0] + box[2] / 2, box[1] + box[3] / 2, box[2] / 2, box[3] / 2
    xy = np.stack([cx + w * radii * np.cos(angles), cy + h * radii * np.sin(angles)], 1)
    return np.round(xy, 2).ravel().tolist()


def _segmentation(
    box: np.ndarray, form: str, h: int, w: int, rng: np.random.Generator
) -> tuple[Any, float]:
    """A mask inside ``box`` as a ``polygon`` list, a compressed ``rle`` (counts a string, as
    JSON holds it) or an uncompressed ``counts`` RLE (COCO's crowd regions), and its area."""
    poly = _polygon(box, rng)
    rle = mask_utils.merge(mask_utils.frPyObjects([poly], h, w))
    area = float(mask_utils.area(rle))
    if form == "polygon":
        return [poly], area
    if form == "rle":
        return {"size": [h, w], "counts": rle["counts"].decode()}, area
    flat = mask_utils.decode(rle).ravel(order="F")
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return {"size": [h, w], "counts": np.diff(np.concatenate([[0], edges])).tolist()}, area


def random_case(
    seed: int,
    images: int,
    objects: int,
    detections: int,
    cat_ids: list[int] = COCO_CAT_IDS,
    crowd: float = 0.01,
    masks: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A COCO instances dict and COCO results for it: ``images`` images of 64..640 px a side, 5 %
    of them (at least one) without objects, ``objects`` boxes of 2..400 px a side (log-uniform: every area
    range) of the first three quarters of ``cat_ids`` (the rest have detections only),
    ``crowd`` of them crowd regions; ``detections`` per image on average (Poisson; one image in
    10, at least one, holds 2.5x as many, all of one class), half jittered copies of its objects, half random, with
    scores on a 0.01 grid (ties). ``masks``: each object also has a segmentation (crowd regions
    an uncompressed RLE, the others a polygon or a compressed RLE at random) and each detection
    a compressed RLE, ``area`` from the mask."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(64, 641, (images, 2))  # (width, height)
    weights = rng.uniform(0.2, 1.8, images)
    weights[rng.choice(images, max(1, round(images * 0.05)), replace=False)] = 0.0
    owner = np.sort(rng.choice(images, objects, p=weights / weights.sum()))
    gt_cats = np.asarray(cat_ids[: max(1, len(cat_ids) * 3 // 4)])
    side = np.exp(rng.uniform(math.log(2), math.log(400), (objects, 2)))
    wh = np.minimum(side, sizes[owner])
    boxes = np.round(
        np.concatenate([(sizes[owner] - wh) * rng.uniform(size=(objects, 2)), wh], 1), 2
    )
    labels, is_crowd = rng.choice(gt_cats, objects), rng.uniform(size=objects) < crowd
    forms = np.where(is_crowd, "counts", rng.choice(["polygon", "rle"], objects))
    image_list = [{"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": int(w), "height": int(h)}
                  for i, (w, h) in enumerate(sizes)]  # fmt: skip
    anns = []
    for k in range(objects):
        w, h = (int(v) for v in sizes[owner[k]])
        ann = {"id": k + 1, "image_id": int(owner[k]) + 1, "category_id": int(labels[k]),
               "bbox": boxes[k].tolist(), "area": float(boxes[k, 2] * boxes[k, 3]),
               "iscrowd": int(is_crowd[k])}  # fmt: skip
        if masks:
            shape = np.random.default_rng([seed, k])  # its detections' masks: the same shape
            ann["segmentation"], ann["area"] = _segmentation(boxes[k], forms[k], h, w, shape)
        anns.append(ann)
    categories = [{"id": c, "name": f"class{c}"} for c in cat_ids]
    gt = {"images": image_list, "annotations": anns, "categories": categories}
    return gt, _detections(seed, rng, gt, sizes, boxes, owner, detections, cat_ids, masks)


def _detections(
    seed: int,
    rng: np.random.Generator,
    gt: dict[str, Any],
    sizes: np.ndarray,
    boxes: np.ndarray,
    owner: np.ndarray,
    per_image: int,
    cat_ids: list[int],
    masks: bool,
) -> list[dict[str, Any]]:
    """``random_case``'s results: per image, jittered copies of its objects and random boxes."""
    results = []
    starts = np.searchsorted(owner, np.arange(len(sizes) + 1))
    many = set(rng.choice(len(sizes), max(1, round(len(sizes) * 0.1)), replace=False).tolist())
    for i, (w, h) in enumerate(sizes.tolist()):
        mine = np.arange(starts[i], starts[i + 1])
        crowded = i in many
        n = rng.poisson(per_image * (2.5 if crowded else 0.75 / 0.9))
        src = rng.choice(mine, n // 2) if len(mine) else np.zeros(0, np.int64)
        spread = rng.uniform(0.02, 0.2, (len(src), 1)) * boxes[src][:, [2, 3, 2, 3]]
        jitter = boxes[src] + rng.normal(0, 1, (len(src), 4)) * spread
        side = np.exp(rng.uniform(math.log(2), math.log(400), (n - len(src), 2)))
        extra = np.concatenate([rng.uniform(size=(len(side), 2)) * (w, h), side], 1)
        xywh = np.concatenate([jitter, extra])
        xywh[:, :2] = np.clip(xywh[:, :2], 0, (w - 1, h - 1))
        xywh[:, 2:] = np.clip(xywh[:, 2:], 1, (w, h) - xywh[:, :2])
        labels = [gt["annotations"][k]["category_id"] for k in src]
        labels += rng.choice(cat_ids, len(extra)).tolist()
        if crowded:
            labels = [labels[0] if labels else cat_ids[0]] * n
        scores = np.round(rng.uniform(0.01, 1.0, n), 2)
        shapes = [np.random.default_rng([seed, k]) for k in src] + [rng] * len(extra)
        for b, c, s, shape in zip(np.round(xywh, 2), labels, scores, shapes, strict=True):
            r = {"image_id": i + 1, "category_id": int(c), "bbox": b.tolist(), "score": float(s)}
            if masks:
                r["segmentation"] = _segmentation(b, "rle", h, w, shape)[0]
            results.append(r)
    return results


def time_backend(coco: COCO, results: list[dict[str, Any]], backend: str) -> tuple[float, dict]:
    """Seconds ``coco_box_metrics`` takes with ``backend`` on a fresh copy of ``results``, and
    its numbers."""
    fresh = [dict(r) for r in results]  # loadRes adds keys to each record
    start = time.perf_counter()
    metrics = coco_box_metrics(coco, fresh, sorted(coco.getImgIds()), backend)
    return time.perf_counter() - start, metrics


def same(a: dict[str, float], b: dict[str, float]) -> bool:
    """Every number of ``a`` equal to ``b``'s within 1e-6 (NaN equal to NaN)."""
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or abs(a[k] - b[k]) <= 1e-6 for k in a
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the images and objects")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    images = max(2, round(VAL2017_IMAGES * args.scale))
    objects = max(1, round(VAL2017_OBJECTS * args.scale))
    gt, results = random_case(args.seed, images, objects, DETECTIONS_PER_IMAGE)
    coco = COCO()
    coco.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    print(f"command: python benchmarks/coco_eval_speed.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"case: {images} images, {objects} objects, {len(results)} detections, "
          f"{len(gt['categories'])} categories; {os.cpu_count()} CPU cores")  # fmt: skip
    timed = {b: time_backend(coco, results, b) for b in reversed(COCO_BACKENDS)}
    reference = timed["pycocotools"][0]
    print("\n| backend | seconds | speed-up over pycocotools |\n|---|---:|---:|")
    for backend, (seconds, _) in timed.items():
        print(f"| {backend} | {seconds:.2f} | {reference / seconds:.2f}x |")
    equal = same(timed["faster-coco-eval"][1], timed["pycocotools"][1])
    print(f"\nthe 12 numbers and per-class AP equal to 1e-6: {'yes' if equal else 'NO'}")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
