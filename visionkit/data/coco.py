"""COCO detection: an instances JSON and an image folder, read through pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from visionkit.data.coco_checks import check_coco_dataset, check_image_sizes, read_sized_image
from visionkit.errors import DataError
from visionkit.structures.boxes import clip_boxes, convert_boxes, valid_boxes_mask


def open_coco(ann_file: str | Path, image_dir: str | Path) -> tuple[Path, Path, COCO, set[int]]:
    """``(ann_file, image_dir, COCO, stored)`` of a COCO split: the image folder checked to exist,
    every image's size checked against its file (:func:`check_image_sizes`; ``stored``: the ids
    read without their EXIF rotation)."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    if not image_dir.is_dir():
        raise DataError(f"COCO image folder not found: {image_dir}")
    coco = load_coco(ann_file)
    return ann_file, image_dir, coco, check_image_sizes(coco.imgs, image_dir, ann_file)


def load_coco(ann_file: Path) -> COCO:
    """Load and sanity-check an instances JSON; errors name the file."""
    if not ann_file.is_file():
        raise DataError(f"COCO annotation file not found: {ann_file}")
    try:
        data = json.loads(ann_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{ann_file}: not valid JSON") from None
    missing = [
        k
        for k in ("images", "annotations", "categories")
        if not isinstance(data, dict) or k not in data
    ]
    if missing:
        raise DataError(f"{ann_file}: not a COCO instances file (no '{missing[0]}')")
    if not data["images"]:
        raise DataError(f"{ann_file}: holds no images")
    check_coco_dataset(data, ann_file)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(Dataset):
    """Images and boxes of a COCO-format dataset.

    Samples are ``(image, target)``: ``image`` float32 ``(3, H, W)`` RGB in [0, 1]; ``target`` has
    ``boxes`` float32 ``(N, 4)`` xyxy pixels, ``labels`` int64 ``(N,)`` in ``0..C-1``, ``image_id``
    (the file's id) and ``orig_size`` ``(H, W)``. Crowd regions are left out of the targets (they
    stay in :attr:`coco` for evaluation); degenerate boxes are dropped with one warning.

    Attributes:
        coco: the ground truth, original pixels, the file's own category ids.
        cat_ids: label -> category id (sorted ids, so possibly non-contiguous).
        class_names: label -> category name. ids: image ids in dataset order.
    """

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        transforms: Callable | None = None,
        filter_empty: bool = False,
    ) -> None:
        self.ann_file, self.image_dir, self.coco, self._stored = open_coco(ann_file, image_dir)
        self.transforms = transforms
        self.cat_ids = sorted(self.coco.getCatIds())
        self.class_names = [self.coco.cats[c]["name"] for c in self.cat_ids]
        label_of = {c: i for i, c in enumerate(self.cat_ids)}
        self._targets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        dropped = 0
        for img_id in sorted(self.coco.imgs):
            info = self.coco.imgs[img_id]
            anns = [a for a in self.coco.imgToAnns.get(img_id, []) if not a.get("iscrowd", 0)]
            boxes = convert_boxes(
                np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4), "xywh", "xyxy"
            )
            boxes = clip_boxes(boxes, (info["height"], info["width"]))
            keep = valid_boxes_mask(boxes, 1.0)
            dropped += int((~keep).sum())
            labels = np.array([label_of[a["category_id"]] for a in anns], np.int64)[keep.numpy()]
            self._targets[img_id] = (boxes[keep].numpy(), labels)
        if dropped:
            warnings.warn(
                f"{self.ann_file}: dropped {dropped} degenerate boxes (width or height <= 1 px)",
                stacklevel=2,
            )
        self.ids = [
            i for i in sorted(self.coco.imgs) if not filter_empty or len(self._targets[i][1])
        ]
        if not self.ids:
            raise DataError(f"{self.ann_file}: no images left (all without annotations?)")
        # boxes the training targets hold (crowd regions and degenerate boxes left out)
        self.num_objects = sum(len(self._targets[i][1]) for i in self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self.image_dir / self.coco.imgs[self.ids[index]]["file_name"]

    def orientation(self, index: int) -> bool:
        """Whether image ``index`` is read turned by its EXIF orientation (what a proposal search
        must do to see the pixels the boxes describe; see :func:`read_sized_image`)."""
        return self.ids[index] not in self._stored

    def read(self, img_id: int) -> np.ndarray:
        """Image ``img_id`` as its annotations see it (:func:`read_sized_image`)."""
        info = self.coco.imgs[img_id]
        where = f"{self.ann_file}: image id {img_id}"
        return read_sized_image(
            self.image_dir / info["file_name"], info["height"], info["width"], where
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        img_id = self.ids[index]
        image = self.read(img_id)
        boxes, labels = self._targets[img_id]
        return to_sample(image, boxes, labels, img_id, self.transforms)


def to_sample(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    image_id: int,
    transforms: Callable | None,
    mask: np.ndarray | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Apply ``transforms`` and make the ``(image tensor, target dict)`` pair.

    A ``mask`` (``(H, W)`` uint8 label map, 255 = ignore) becomes the target's ``sem_seg``
    (``(H, W)`` int64, moved with the pixels).
    """
    orig_size = image.shape[:2]
    if transforms is not None:
        image, boxes, labels, mask = transforms(image, boxes, labels, mask)
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
    target = {
        "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.as_tensor(labels, dtype=torch.int64).reshape(-1),
        "image_id": int(image_id),
        "orig_size": (int(orig_size[0]), int(orig_size[1])),
    }
    if mask is not None:
        target["sem_seg"] = torch.from_numpy(np.ascontiguousarray(mask)).long()
    return tensor, target
