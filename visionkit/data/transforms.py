"""Box- and mask-aware augmentation with albumentations.

A transform is called as ``transform(image, boxes, labels, mask)`` with ``image`` ``(H, W, 3)``
uint8 RGB, ``boxes`` ``(N, 4)`` xyxy pixels, ``labels`` ``(N,)``, ``mask`` ``(H, W)`` or None,
and returns the four transformed (boxes float32, labels int64). Instance masks go through
:meth:`BoxTransform.apply_instances` with the boxes they belong to.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

# albumentations asks PyPI for a newer release at import: a network request on every start, a
# warning line offline. The user's own setting wins.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2
import numpy as np

from visionkit.config.schema import AugmentConfig
from visionkit.data.instance_masks import MaskShapes, polygon_points, split_points
from visionkit.errors import ConfigError
from visionkit.structures.labels import IGNORE_LABEL  # the mask value of padded pixels

PAD_VALUE = (114, 114, 114)  # grey padding for letterboxing and translation


class BoxTransform:
    """Wraps an ``A.Compose`` to take and return numpy boxes/labels/masks."""

    def __init__(self, compose: A.Compose | None) -> None:
        self.compose = compose

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        if self.compose is None:
            return (
                image,
                np.asarray(boxes, np.float32).reshape(-1, 4),
                np.asarray(labels, np.int64),
                mask,
            )
        kwargs = {"image": image, "bboxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                  "labels": np.asarray(labels, np.int64)}  # fmt: skip
        if mask is not None:
            kwargs["mask"] = mask
        out = self.compose(**kwargs)
        boxes_out = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        labels_out = np.asarray(out["labels"], np.int64).reshape(-1)
        return out["image"], boxes_out, labels_out, out.get("mask")

    def apply_instances(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, shapes: MaskShapes
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, MaskShapes]:
        """The image, its boxes and their instance masks through the same draw: ``shapes``
        (``data/instance_masks.py``: per box a list of ``(K, 2)`` float32 polygons in pixels, or
        ``(N, H, W)`` uint8 bitmaps) come out in the new image's pixels, each object's mask kept
        exactly when its box is (a box less than 30 % visible drops its mask too).

        Polygon vertices are moved as albumentations keypoints (never removed, wherever they
        land: the rasterization clips them to the image); bitmaps as the image's pixels
        (nearest neighbour; padding is outside every object)."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        labels = np.asarray(labels, np.int64).reshape(-1)
        if self.compose is None:
            return image, boxes, labels, shapes
        bitmaps = isinstance(shapes, np.ndarray)
        # the box's index rides as its label: the kept indices select labels and masks
        kwargs: dict[str, Any] = {"image": image, "bboxes": boxes, "labels": np.arange(len(boxes))}
        if bitmaps and len(shapes):
            kwargs["masks"] = list(shapes)
        elif not bitmaps:
            points, counts = polygon_points(shapes)
            if len(points):  # pixel corners -> albumentations' pixel centres
                kwargs["keypoints"] = points - 0.5
        out = self.compose(**kwargs)
        kept = np.asarray(out["labels"], np.int64).reshape(-1)
        image_out = out["image"]
        boxes_out = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        if bitmaps and len(shapes):
            moved: MaskShapes = (np.stack(out["masks"]) == 1).astype(np.uint8)[kept]
        elif bitmaps:
            moved = np.zeros((0, *image_out.shape[:2]), np.uint8)
        else:
            points = np.asarray(out.get("keypoints", points), np.float32).reshape(-1, 2) + 0.5
            polygons = split_points(points, counts)
            moved = [polygons[k] for k in kept.tolist()]
        return image_out, boxes_out, labels[kept], moved

    def set_seed(self, seed: int) -> None:
        """Make the random augmentation reproducible (one seed per DataLoader worker)."""
        if self.compose is not None:
            self.compose.set_random_seed(seed)


class _CentredKeypoints:
    """Keypoints scaled as the image's pixels are resampled: about pixel centres,
    ``(x + 0.5) * s - 0.5``, by the factor of the sizes (albumentations 2 scales them as
    ``x * s`` by the drawn factor, while its flips and ``Affine`` move pixel centres and the
    image's size is rounded): polygons moved as keypoints land on the pixels they outline."""

    def apply_to_keypoints(self, keypoints: np.ndarray, **params: Any) -> np.ndarray:
        h, w = params["shape"][:2]
        # the size the image gets, as this transform computes it (a blank image, resized)
        out_h, out_w = self.apply(np.zeros((h, w), np.uint8), **params).shape[:2]
        out = np.array(keypoints, np.float32, copy=True)
        out[:, 0] = (out[:, 0] + 0.5) * (out_w / w) - 0.5
        out[:, 1] = (out[:, 1] + 0.5) * (out_h / h) - 0.5
        return out


class Resize(_CentredKeypoints, A.Resize):
    """``A.Resize``, keypoints about pixel centres (:class:`_CentredKeypoints`)."""


class LongestMaxSize(_CentredKeypoints, A.LongestMaxSize):
    """``A.LongestMaxSize``, keypoints about pixel centres (:class:`_CentredKeypoints`)."""


class RandomScale(_CentredKeypoints, A.RandomScale):
    """``A.RandomScale``, keypoints about pixel centres (:class:`_CentredKeypoints`)."""


def seed_transforms(dataset: object, seed: int) -> None:
    """Seed ``dataset.transforms`` when it is a seedable :class:`BoxTransform` pipeline."""
    transforms = getattr(dataset, "transforms", None)
    if hasattr(transforms, "set_seed"):
        transforms.set_seed(seed)


def build_transforms(
    aug: AugmentConfig, input_size: Sequence[int] | None, train: bool
) -> BoxTransform:
    """The training pipeline (YOLO paper's jitter) or the evaluation one (identity).

    Training: random scaling by up to ``aug.scale`` and translation by up to ``aug.translate`` of
    the image size, a horizontal flip with probability ``aug.hflip``, exposure (brightness) and
    saturation factors drawn from ``[1/x, x]``, all after a resize to ``input_size`` ``(h, w)``
    (stretched, or letterboxed when ``aug.letterbox``). Boxes are clipped to the image and dropped
    when less than 30 % of them stays visible. ``aug.scale_range`` ``[lo, hi]`` replaces the
    ``1 +- aug.scale`` factors. With ``aug.crop_size`` (segmentation, torchvision's reference) the
    image is instead rescaled by a factor from that range, padded to at least the crop size and
    randomly cropped to it. Masks move with the pixels (nearest neighbour); padding is grey in the
    image and ``IGNORE_LABEL`` in the mask. Instance polygons move as keypoints (never dropped
    on their own; :meth:`BoxTransform.apply_instances`). An empty ``input_size`` keeps the size.
    Evaluation: no change at all (models resize internally and map predictions back to original
    pixels).
    """
    if not train:
        return BoxTransform(None)
    if len(aug.scale_range) not in (0, 2) or len(aug.crop_size) not in (0, 2):
        raise ConfigError("data.augment.scale_range and crop_size take two values (or none)")
    lo, hi = aug.scale_range or (1 - aug.scale, 1 + aug.scale)
    resize = _resize_ops(aug, input_size)
    ops: list[A.BasicTransform] = []
    if aug.crop_size:
        ch, cw = int(aug.crop_size[0]), int(aug.crop_size[1])
        ops += [
            RandomScale(scale_limit=(lo - 1, hi - 1), p=1.0),
            A.PadIfNeeded(ch, cw, border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE,
                          fill_mask=IGNORE_LABEL),
            A.RandomCrop(ch, cw),
        ]  # fmt: skip
    else:
        # Resizing first makes the same jitter cheaper (fewer pixels to warp and recolour).
        ops += resize
        resize = []
        if lo != 1 or hi != 1 or aug.translate > 0:
            ops.append(A.Affine(
                scale=(lo, hi), translate_percent=(-aug.translate, aug.translate),
                border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE, fill_mask=IGNORE_LABEL, p=1.0,
            ))  # fmt: skip
    if aug.hflip > 0:
        ops.append(A.HorizontalFlip(p=aug.hflip))
    if aug.exposure > 1 or aug.saturation > 1 or aug.hue > 0:
        ops.append(A.ColorJitter(
            brightness=(1 / aug.exposure, aug.exposure), contrast=(1.0, 1.0),
            saturation=(1 / aug.saturation, aug.saturation), hue=(-aug.hue, aug.hue), p=1.0,
        ))  # fmt: skip
    ops += resize
    bbox_params = A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.3,
                               clip=True, filter_invalid_bboxes=True)  # fmt: skip
    # instance polygons' vertices: kept wherever they land, so that each outline keeps its shape
    keypoint_params = A.KeypointParams(format="xy", remove_invisible=False)
    return BoxTransform(A.Compose(ops, bbox_params=bbox_params, keypoint_params=keypoint_params))


def _resize_ops(aug: AugmentConfig, input_size: Sequence[int] | None) -> list[A.BasicTransform]:
    """Stretch (or letterbox) to ``input_size`` ``(h, w)``; nothing when it is empty."""
    if not input_size:
        return []
    h, w = int(input_size[0]), int(input_size[1])
    if not aug.letterbox:
        return [Resize(h, w)]
    return [
        LongestMaxSize(max_size=max(h, w)),
        A.PadIfNeeded(
            h, w, border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE, fill_mask=IGNORE_LABEL
        ),
    ]
