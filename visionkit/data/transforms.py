"""Box- and mask-aware augmentation with albumentations.

A transform is called as ``transform(image, boxes, labels, mask)`` with ``image`` ``(H, W, 3)``
uint8 RGB, ``boxes`` ``(N, 4)`` xyxy pixels, ``labels`` ``(N,)``, ``mask`` ``(H, W)`` or None,
and returns the four transformed (boxes float32, labels int64).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

# albumentations asks PyPI for a newer release at import: a network request on every start, a
# warning line offline. The user's own setting wins.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2
import numpy as np

from visionkit.config.schema import AugmentConfig
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

    def set_seed(self, seed: int) -> None:
        """Make the random augmentation reproducible (one seed per DataLoader worker)."""
        if self.compose is not None:
            self.compose.set_random_seed(seed)


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
    image and ``IGNORE_LABEL`` in the mask. An empty ``input_size`` keeps the size. Evaluation: no
    change at all (models resize internally and map predictions back to original pixels).
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
            A.RandomScale(scale_limit=(lo - 1, hi - 1), p=1.0),
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
    return BoxTransform(A.Compose(ops, bbox_params=bbox_params))


def _resize_ops(aug: AugmentConfig, input_size: Sequence[int] | None) -> list[A.BasicTransform]:
    """Stretch (or letterbox) to ``input_size`` ``(h, w)``; nothing when it is empty."""
    if not input_size:
        return []
    h, w = int(input_size[0]), int(input_size[1])
    if not aug.letterbox:
        return [A.Resize(h, w)]
    return [
        A.LongestMaxSize(max_size=max(h, w)),
        A.PadIfNeeded(
            h, w, border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE, fill_mask=IGNORE_LABEL
        ),
    ]
