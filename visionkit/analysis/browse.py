"""A dataset's ground truth drawn on its images as a model sees them (``visionkit browse``):
after the dataset's transform (the training augmentation when it was built with ``train=True``),
boxes tagged with their class, crowd regions and VOC's difficult objects in grey, instance masks
filled and outlined in their class's colour (crowd regions' grey), label maps as
half-transparent class colours with each class region outlined and a legend of the colours
(ignored pixels white); and a contact sheet of the drawings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from visionkit.analysis.dataset_summary import unwrap
from visionkit.data.coco import CocoDetection, to_sample
from visionkit.data.instance_masks import mask_shapes, to_bitmaps
from visionkit.data.transforms import seed_transforms
from visionkit.io.image import image_to_uint8, read_image
from visionkit.structures.boxes import clip_boxes, convert_boxes, valid_boxes_mask
from visionkit.structures.labels import IGNORE_LABEL
from visionkit.utils.draw import (
    class_colors,
    draw_instance_masks,
    draw_labelled_boxes,
    draw_segmentation,
)

CROWD_COLOR = (150, 150, 150)  # crowd regions and difficult objects: grey, whatever the class
IGNORE_COLOR = (255, 255, 255)  # ignored pixels of a label map


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """A ``(3, H, W)`` float tensor in ``[0, 1]`` -> ``(H, W, 3)`` uint8."""
    return image_to_uint8(image).permute(1, 2, 0).numpy()


def draw_detection_sample(dataset: Dataset, index: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """Sample ``index`` of a box dataset with its ground truth drawn, and its image id.

    The objects to train on and the crowd (difficult) regions go through the dataset's transform
    together (crowd ones with labels shifted by ``C``), so both land where the augmentation put the
    pixels; the transform is seeded with ``seed`` first. A reader of instance masks (``masks``)
    also has each object's mask filled and outlined in its class's colour, crowd regions' in
    grey, under the boxes (:func:`~visionkit.utils.draw.draw_instance_masks`)."""
    reader = unwrap(dataset)
    names, c = list(reader.class_names), len(reader.class_names)
    r = reader.record(index)
    image = reader.read(r.image_id) if isinstance(reader, CocoDetection) else read_image(r.path)
    crowd = np.zeros((0, 4), np.float32)
    crowd_labels = np.zeros(0, np.int64)
    crowd_anns: list[dict] = []
    if not getattr(reader, "use_difficult", False):  # else difficult objects are trained on
        anns = [a for a in reader.coco.imgToAnns.get(r.image_id, []) if a.get("iscrowd", 0)]
        xywh = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        boxes = clip_boxes(convert_boxes(xywh, "xywh", "xyxy"), r.size)
        keep = valid_boxes_mask(boxes).numpy()
        label_of = {int(cat): i for i, cat in enumerate(reader.cat_ids)}
        crowd = boxes.numpy()[keep]
        crowd_labels = np.array([label_of[a["category_id"]] + c for a in anns], np.int64)[keep]
        crowd_anns = [a for a, k in zip(anns, keep.tolist(), strict=True) if k]
    shapes = None
    if getattr(reader, "masks", False):
        shapes = reader.instance_shapes(index)
        if crowd_anns:  # crowd regions are RLE, as a rule: every mask as a bitmap
            regions = mask_shapes([a["segmentation"] for a in crowd_anns], r.size)
            shapes = np.concatenate([to_bitmaps(shapes, r.size), to_bitmaps(regions, r.size)])
    seed_transforms(dataset, seed)  # the wrappers' transforms (a ProposalDataset takes them over)
    tensor, target = to_sample(
        image,
        np.concatenate([r.boxes, crowd]),
        np.concatenate([r.labels, crowd_labels]),
        r.image_id,
        dataset.transforms,
        instances=shapes,
    )
    labels = target["labels"].tolist()
    colors = class_colors(c)
    region = "difficult" if hasattr(reader, "use_difficult") else "crowd"
    texts = [names[lb] if lb < c else f"{region}: {names[lb - c]}" for lb in labels]
    box_colors = [tuple(colors[lb]) if lb < c else CROWD_COLOR for lb in labels]
    order = np.argsort([lb < c for lb in labels], kind="stable")  # objects over crowd regions
    drawn = _to_uint8(tensor)
    if "masks" in target:
        grey = np.vstack([colors, np.array([CROWD_COLOR], np.uint8)])  # crowd regions: class c
        mask_labels = np.minimum(np.asarray(labels, np.int64), c)[order]
        drawn = draw_instance_masks(drawn, target["masks"].to_bitmaps()[order], mask_labels, grey)
    drawn = draw_labelled_boxes(
        drawn,
        target["boxes"][order],
        [texts[i] for i in order],
        [box_colors[i] for i in order],
    )
    return drawn, r.image_id


def draw_segmentation_sample(dataset: Dataset, index: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """Sample ``index`` of a label-map dataset with its label map drawn (half-transparent class
    colours, each class region outlined, a legend of the colours; background left unpainted
    when class 0 is named so, ignored pixels white, "ignored" in the legend), and its image
    id."""
    names = list(dataset.class_names)
    seed_transforms(unwrap(dataset), seed)
    tensor, target = dataset[index]
    seg = target["sem_seg"].numpy()
    colors = np.vstack([class_colors(len(names)), np.array([IGNORE_COLOR], np.uint8)])
    labels = np.where(seg == IGNORE_LABEL, len(names), seg)
    background = 0 if names[0] == "background" else None
    drawn = draw_segmentation(
        _to_uint8(tensor), labels, [*names, "ignored"], colors, background, 0.5, [len(names)]
    )
    return drawn, target["image_id"]


def contact_sheet(images: Sequence[np.ndarray], cell: int = 192, gap: int = 4) -> np.ndarray:
    """The images scaled to fit ``cell`` x ``cell`` (aspect kept) on a grey grid, row by row,
    as square as the count allows."""
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    sheet = np.full((rows * (cell + gap) + gap, cols * (cell + gap) + gap, 3), 64, np.uint8)
    for k, image in enumerate(images):
        h, w = image.shape[:2]
        s = cell / max(h, w)
        th, tw = max(1, round(h * s)), max(1, round(w * s))
        thumb = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
        y = gap + (k // cols) * (cell + gap) + (cell - th) // 2
        x = gap + (k % cols) * (cell + gap) + (cell - tw) // 2
        sheet[y : y + th, x : x + tw] = thumb
    return sheet
