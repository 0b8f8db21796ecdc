"""What a dataset holds, before any training: images, objects per class, images without objects,
boxes the readers drop, image sizes and box sizes (COCO's small / medium / large), or for
segmentation the pixels and images of each class. ``visionkit browse`` prints it.

Detection counts come from the dataset's evaluation ground truth (``dataset.coco``: original
pixels, every annotation, crowd regions and VOC's difficult objects flagged ``iscrowd``), with the
readers' rules: a crowd (difficult) object is never an object to train on; a box whose annotated
width or height is not above the reader's minimum (COCO 1 px, VOC any size) is *degenerate*; one
with no more than that left inside the image is *outside*. VOC boxes are clipped when read
(``data/voc.py``), so VOC counts a box outside its image as degenerate.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from visionkit.data.coco import CocoDetection
from visionkit.structures.boxes import clip_boxes, convert_boxes, valid_boxes_mask
from visionkit.structures.labels import IGNORE_LABEL

SMALL, LARGE = 32**2, 96**2  # COCO's area ranges: small < 32^2 <= medium < 96^2 <= large


@dataclass
class DatasetSummary:
    """Counts over one dataset split.

    Attributes:
        images: images in the split.
        class_names: label -> name.
        objects: class -> objects to train on (detection) or pixels (segmentation).
        crowd: class -> crowd regions / difficult objects (detection; empty for segmentation).
        crowd_name: ``"crowd"`` (COCO) or ``"difficult"`` (VOC).
        images_per_class: class -> images holding it (segmentation; empty for detection).
        images_without_objects: images with no object to train on (segmentation: no pixel of a
            class other than the background).
        degenerate, outside: boxes dropped (module docstring).
        image_sizes: ``(height, width)`` -> images.
        box_sizes: ``small`` / ``medium`` / ``large`` -> objects, by box area in original pixels.
    """

    images: int
    class_names: list[str]
    objects: dict[str, int]
    crowd: dict[str, int] = field(default_factory=dict)
    crowd_name: str = "crowd"
    images_per_class: dict[str, int] = field(default_factory=dict)
    images_without_objects: int = 0
    degenerate: int = 0
    outside: int = 0
    image_sizes: Counter = field(default_factory=Counter)
    box_sizes: dict[str, int] = field(default_factory=dict)


def unwrap(dataset: Dataset) -> Dataset:
    """The reader under a dataset's wrappers (``BadImageGuard``, ``ProposalDataset``)."""
    while "dataset" in vars(dataset):
        dataset = vars(dataset)["dataset"]
    return dataset


def detection_summary(dataset: Dataset) -> DatasetSummary:
    """The summary of a box dataset (:class:`~visionkit.data.coco.CocoDetection` or
    :class:`~visionkit.data.voc.VOCDetection`, wrapped or not) from its ``coco`` ground truth."""
    reader = unwrap(dataset)
    coco, names = reader.coco, list(reader.class_names)
    min_size = 1.0 if isinstance(reader, CocoDetection) else 1e-3  # the readers' own rules
    label_of = {int(c): i for i, c in enumerate(reader.cat_ids)}
    c = len(names)
    objects, crowd = np.zeros(c, np.int64), np.zeros(c, np.int64)
    summary = DatasetSummary(len(reader.ids), names, {}, crowd_name="crowd")
    if not isinstance(reader, CocoDetection):
        summary.crowd_name = "difficult"
    areas = []
    for image_id in reader.ids:
        info = coco.imgs[int(image_id)]
        size = (int(info["height"]), int(info["width"]))
        summary.image_sizes[size] += 1
        anns = coco.imgToAnns.get(int(image_id), [])
        is_crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
        labels = np.array([label_of[a["category_id"]] for a in anns], np.int64)
        boxes = convert_boxes(np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4),
                              "xywh", "xyxy")  # fmt: skip
        clipped = clip_boxes(boxes, size)
        sound = valid_boxes_mask(boxes, min_size).numpy()
        inside = valid_boxes_mask(clipped, min_size).numpy()
        kept = ~is_crowd & sound & inside
        summary.degenerate += int((~is_crowd & ~sound).sum())
        summary.outside += int((~is_crowd & sound & ~inside).sum())
        np.add.at(objects, labels[kept], 1)
        np.add.at(crowd, labels[is_crowd], 1)
        summary.images_without_objects += int(not kept.any())
        wh = (clipped[:, 2:] - clipped[:, :2]).numpy()
        areas.append(wh[kept].prod(1))
    area = np.concatenate(areas) if areas else np.zeros(0)
    summary.objects = dict(zip(names, objects.tolist(), strict=True))
    summary.crowd = dict(zip(names, crowd.tolist(), strict=True))
    summary.box_sizes = {
        "small": int((area < SMALL).sum()),
        "medium": int(((area >= SMALL) & (area < LARGE)).sum()),
        "large": int((area >= LARGE).sum()),
    }
    return summary


def segmentation_summary(dataset: Dataset) -> DatasetSummary:
    """The summary of a label-map dataset read without augmentation (every image and label map
    read once): pixels and images per class (255, ignored, not counted), images holding only
    background, image sizes."""
    names = list(dataset.class_names)
    c = len(names)
    pixels, images = np.zeros(c, np.int64), np.zeros(c, np.int64)
    summary = DatasetSummary(len(dataset), names, {})
    for i in range(len(dataset)):
        _, target = dataset[i]
        seg = target["sem_seg"]
        counts = torch.bincount(seg[seg != IGNORE_LABEL].flatten(), minlength=c)[:c].numpy()
        pixels += counts
        images += counts > 0
        summary.images_without_objects += int(not counts[1:].any())
        summary.image_sizes[tuple(int(v) for v in seg.shape)] += 1
    summary.objects = dict(zip(names, pixels.tolist(), strict=True))
    summary.images_per_class = dict(zip(names, images.tolist(), strict=True))
    return summary


def format_summary(summary: DatasetSummary) -> str:
    """The summary as aligned text lines."""
    seg = bool(summary.images_per_class)
    width = max(len(n) for n in summary.class_names)
    lines = [f"images: {summary.images}"]
    if seg:
        lines.append("pixels per class (images holding it):")
        for n in summary.class_names:
            lines.append(
                f"  {n:<{width}}  {summary.objects[n]:>10}  ({summary.images_per_class[n]})"
            )
    else:
        total = sum(summary.objects.values())
        lines.append(f"objects: {total} ({summary.crowd_name} in brackets)")
        for n in summary.class_names:
            lines.append(f"  {n:<{width}}  {summary.objects[n]:>7}  ({summary.crowd[n]})")
    what = "images with background only" if seg else "images without objects"
    lines.append(f"{what}: {summary.images_without_objects}")
    if not seg:
        lines.append(
            f"boxes dropped: {summary.degenerate} degenerate, {summary.outside} outside the image"
        )
        sizes = summary.box_sizes
        lines.append(
            f"box sizes: {sizes['small']} small (< 32^2 px), {sizes['medium']} medium, "
            f"{sizes['large']} large (>= 96^2 px)"
        )
    hs = [h for h, _ in summary.image_sizes]
    ws = [w for _, w in summary.image_sizes]
    common = ", ".join(f"{w}x{h} ({n})" for (h, w), n in summary.image_sizes.most_common(3))
    lines.append(
        f"image sizes (w x h): {len(summary.image_sizes)} distinct, width {min(ws)}-{max(ws)}, "
        f"height {min(hs)}-{max(hs)}; most common: {common}"
    )
    return "\n".join(lines)
