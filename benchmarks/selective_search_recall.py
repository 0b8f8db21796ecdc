"""Recall and speed of visionkit's selective search on the shapes validation split.

For each image the proposals are ranked as returned; an object is recalled at IoU t within the
top n when one of the first n proposals overlaps its box with IoU >= t. Prints a markdown table:
recall at IoU 0.5 and 0.7 for the top 100, 500 and 2000 proposals, the mean number of proposals
and seconds per image (one process; run it with OMP_NUM_THREADS=1 for one core).

    OMP_NUM_THREADS=1 python benchmarks/selective_search_recall.py --images 30 --modes fast
"""

from __future__ import annotations

import argparse
import time

import torch
from torchvision.ops import box_iou

from visionkit.config.schema import AugmentConfig, DatasetConfig
from visionkit.data import build_dataset
from visionkit.io.image import image_to_uint8
from visionkit.proposals.selective_search import MODES, selective_search

TOP_N = (100, 500, 2000)
IOUS = (0.5, 0.7)


def measure(dataset, num_images: int, mode: str) -> dict[str, float]:
    """Recall per (IoU, top n), mean proposals and seconds per image over the first images."""
    hits = {(t, n): 0 for t in IOUS for n in TOP_N}
    objects, count, seconds = 0, 0, 0.0
    for index in range(min(num_images, len(dataset))):
        image, target = dataset[index]
        rgb = image_to_uint8(image.permute(1, 2, 0)).numpy()
        start = time.perf_counter()
        proposals = torch.from_numpy(selective_search(rgb, mode))
        seconds += time.perf_counter() - start
        count += len(proposals)
        gt = target["boxes"]
        objects += len(gt)
        if not len(gt):
            continue
        iou = box_iou(gt, proposals)
        for n in TOP_N:
            best = iou[:, :n].max(1).values
            for t in IOUS:
                hits[(t, n)] += int((best >= t).sum())
    images = max(min(num_images, len(dataset)), 1)
    return {
        **{f"R@{t}/{n}": hits[(t, n)] / max(objects, 1) for t in IOUS for n in TOP_N},
        "proposals": count / images,
        "s/img": seconds / images,
        "objects": objects,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=30, help="first N images of shapes val")
    p.add_argument("--modes", nargs="+", default=["fast"], choices=list(MODES))
    args = p.parse_args()
    dataset = build_dataset(DatasetConfig(splits=["val"]), AugmentConfig(), None, train=False)
    cols = [f"R@{t}/{n}" for t in IOUS for n in TOP_N]
    head = ["mode", *[f"recall IoU {t} top {n}" for t in IOUS for n in TOP_N]]
    print(f"shapes val, first {min(args.images, len(dataset))} images")
    print("| " + " | ".join([*head, "proposals / image", "s / image"]) + " |")
    print("|" + "---|" * (len(head) + 2))
    for mode in args.modes:
        r = measure(dataset, args.images, mode)
        values = [f"{r[c]:.3f}" for c in cols] + [f"{r['proposals']:.0f}", f"{r['s/img']:.2f}"]
        print("| " + " | ".join([mode, *values]) + " |")


if __name__ == "__main__":
    main()
