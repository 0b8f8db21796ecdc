"""COCO detection: an instances JSON and an image folder, read through pycocotools."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from visionkit.data.coco_checks import (
    check_coco_dataset,
    check_image_sizes,
    check_segmentation,
    read_sized_image,
)
from visionkit.data.instance_masks import (
    MaskShapes,
    instance_masks,
    mask_shapes,
    pack_segmentations,
    unpack_segmentations,
)
from visionkit.data.packed import ImageTable, PackedArrays, Record
from visionkit.errors import DataError, shown
from visionkit.io.image import image_to_float
from visionkit.io.structured import read_json
from visionkit.structures.boxes import clip_to_sizes, convert_boxes, valid_boxes_mask


def open_coco(ann_file: str | Path, image_dir: str | Path) -> tuple[Path, Path, dict, ImageTable]:
    """``(ann_file, image_dir, data, table)`` of a COCO split: the image folder checked to exist,
    the instances file read and checked (:func:`read_coco_json`), every image's size checked
    against its file (:func:`check_image_sizes`) and the images packed into an
    :class:`~visionkit.data.packed.ImageTable` (ascending ids)."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    try:
        found = image_dir.is_dir()
    except OSError:  # a name too long for the file system
        found = False
    if not found:
        raise DataError(f"COCO image folder not found: {shown(str(image_dir))}")
    data = read_coco_json(ann_file)
    stored = check_image_sizes(data["images"], image_dir, ann_file)
    images = sorted(data["images"], key=lambda im: im["id"])
    table = ImageTable(
        np.array([im["id"] for im in images], np.int64),
        [im["file_name"] for im in images],
        np.array([(im["height"], im["width"]) for im in images], np.int32),
        np.array([im["id"] in stored for im in images], bool),
        image_dir,
    )
    return ann_file, image_dir, data, table


def read_coco_json(ann_file: Path) -> dict[str, Any]:
    """Load (:func:`~visionkit.io.structured.read_json`) and sanity-check an instances JSON
    (:func:`check_coco_dataset`); errors name the file."""
    if not ann_file.is_file():
        raise DataError(f"COCO annotation file not found: {ann_file}")
    data = read_json(ann_file)
    missing = [
        k
        for k in ("images", "annotations", "categories")
        if not isinstance(data, dict) or k not in data
    ]
    if missing:
        raise DataError(f"{ann_file}: not a COCO instances file (no '{missing[0]}')")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data[key], list):
            raise DataError(f"{ann_file}: '{key}' must be a list, got {type(data[key]).__name__}")
    if not data["images"]:
        raise DataError(f"{ann_file}: holds no images")
    check_coco_dataset(data, ann_file)
    return data


def coco_index(data: dict[str, Any]) -> COCO:
    """A pycocotools index over an instances dict (``images``, ``annotations``,
    ``categories``)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco(ann_file: Path) -> COCO:
    """The checked instances JSON at ``ann_file`` as a pycocotools index."""
    return coco_index(read_coco_json(ann_file))


class LazyGroundTruth:
    """Mixin: ``coco``, the evaluation ground truth (a pycocotools index), built on first use by
    ``_build_coco()`` in the process that asks for it (the evaluating one), never pickled (a
    spawned loader worker does not receive it; a forked one does not touch it)."""

    _coco: COCO | None = None

    @property
    def coco(self) -> COCO:
        if self._coco is None:
            self._coco = self._build_coco()
        return self._coco

    def _build_coco(self) -> COCO:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_coco"}


def pack_coco_boxes(
    annotations: list[dict[str, Any]], table: ImageTable, cat_ids: list[int]
) -> tuple[PackedArrays, PackedArrays, int, PackedArrays]:
    """The training targets of every image of ``table``, in one vectorized pass: boxes
    (``(n_i, 4)`` float32 xyxy pixels, clipped to the image) and labels (``(n_i,)`` int64 index
    into ``cat_ids``), each image's in the file's order; crowd regions and boxes not wider and
    taller than 1 px after clipping left out. Returns them, the number of degenerate boxes
    dropped and each object's annotation (``(n_i,)`` int64 index into ``annotations``: where
    its instance mask is)."""
    n = len(annotations)
    crowd = np.fromiter((bool(a["iscrowd"]) for a in annotations), bool, n)
    source = np.flatnonzero(~crowd)
    anns = [annotations[k] for k in source.tolist()]
    rows = np.searchsorted(table.ids, np.fromiter((a["image_id"] for a in anns), np.int64))
    cats = np.fromiter((a["category_id"] for a in anns), np.int64)
    labels = np.searchsorted(np.asarray(cat_ids, np.int64), cats)
    xywh = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
    boxes = convert_boxes(xywh, "xywh", "xyxy")
    boxes = clip_to_sizes(boxes[:, None], torch.from_numpy(table.sizes[rows]))[:, 0]
    keep = valid_boxes_mask(boxes, 1.0).numpy()
    rows = rows[keep]
    packed_boxes = PackedArrays.grouped(boxes.numpy()[keep], rows, len(table))
    packed_labels = PackedArrays.grouped(labels[keep], rows, len(table))
    packed_source = PackedArrays.grouped(source[keep], rows, len(table))
    return packed_boxes, packed_labels, int((~keep).sum()), packed_source


class CocoDetection(LazyGroundTruth, Dataset):
    """Images and boxes (and, with ``masks``, instance masks) of a COCO-format dataset.

    Samples are ``(image, target)``: ``image`` float32 ``(3, H, W)`` RGB in [0, 1]; ``target`` has
    ``boxes`` float32 ``(N, 4)`` xyxy pixels, ``labels`` int64 ``(N,)`` in ``0..C-1``, ``image_id``
    (the file's id) and ``orig_size`` ``(H, W)``. Crowd regions are left out of the targets (they
    stay in :attr:`coco` for evaluation); degenerate boxes are dropped with one warning. The
    index the samples are read from is packed (``data/packed.py``): loader workers share it.

    With ``masks`` (instance segmentation models), every annotation's ``segmentation`` is checked
    first (polygons of at least 3 points or an RLE of its image's size:
    :func:`~visionkit.data.coco_checks.check_segmentation`), the training objects' are packed as
    written (``data/instance_masks.py``), and ``target["masks"]`` is an
    :class:`~visionkit.structures.masks.InstanceMasks`, one per box, moved with it by the
    transforms.

    Attributes:
        coco: the ground truth, original pixels, the file's own category ids (built from the
            file on first use, :class:`LazyGroundTruth`).
        cat_ids: label -> category id (sorted ids, so possibly non-contiguous).
        class_names: label -> category name. ids: image ids in dataset order (ascending).
        masks: whether the targets carry instance masks.
    """

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        transforms: Callable | None = None,
        filter_empty: bool = False,
        masks: bool = False,
    ) -> None:
        self.ann_file, self.image_dir, data, self._table = open_coco(ann_file, image_dir)
        self.transforms, self.masks = transforms, masks
        if masks:  # before anything is packed: one line, not a failure mid-epoch
            check_segmentation(data, self.ann_file, "instance masks", min_points=3)
        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.cat_ids = [c["id"] for c in cats]
        self.class_names = [c["name"] for c in cats]
        self._boxes, self._labels, dropped, source = pack_coco_boxes(
            data["annotations"], self._table, self.cat_ids
        )
        self._segmentations: PackedArrays | None = None
        if masks:
            anns = data["annotations"]
            per_image = (source[row].tolist() for row in range(len(self._table)))
            self._segmentations = pack_segmentations(
                [[anns[k]["segmentation"] for k in objs] for objs in per_image]
            )
        if dropped:
            warnings.warn(
                f"{self.ann_file}: dropped {dropped} degenerate boxes (width or height <= 1 px)",
                stacklevel=2,
            )
        counts = self._labels.counts()
        self._rows = np.flatnonzero(counts > 0) if filter_empty else np.arange(len(counts))
        if not len(self._rows):
            raise DataError(f"{self.ann_file}: no images left (all without annotations?)")
        self.ids: list[int] = self._table.ids[self._rows].tolist()
        # boxes the training targets hold (crowd regions and degenerate boxes left out)
        self.num_objects = int(counts[self._rows].sum())

    def _build_coco(self) -> COCO:
        return load_coco(self.ann_file)

    def __len__(self) -> int:
        return len(self._rows)

    def record(self, index: int) -> Record:
        """Sample ``index``'s :class:`~visionkit.data.packed.Record`, from the packed index."""
        row = int(self._rows[index])
        h, w = self._table.sizes[row]
        return Record(int(self._table.ids[row]), self._table.path(row), (int(h), int(w)),
                      self._boxes[row], self._labels[row])  # fmt: skip

    def image_path(self, index: int) -> Path:
        return self._table.path(int(self._rows[index]))

    def orientation(self, index: int) -> bool:
        """Whether image ``index`` is read turned by its EXIF orientation (what a proposal search
        must do to see the pixels the boxes describe; see :func:`read_sized_image`)."""
        return not self._table.stored[self._rows[index]]

    def read(self, img_id: int) -> np.ndarray:
        """Image ``img_id`` as its annotations see it (:func:`read_sized_image`)."""
        row = self._table.row(img_id)
        h, w = self._table.sizes[row]
        return self._read(self._table.path(row), (int(h), int(w)), img_id)

    def _read(self, path: Path, size: tuple[int, int], img_id: int) -> np.ndarray:
        return read_sized_image(path, *size, f"{self.ann_file}: image id {img_id}")

    def instance_shapes(self, index: int) -> MaskShapes:
        """Sample ``index``'s training objects' instance masks in original pixels, one per box of
        its :meth:`record` (:func:`~visionkit.data.instance_masks.mask_shapes`); the reader must
        have been built with ``masks``."""
        if self._segmentations is None:
            raise ValueError("this reader was built without masks")
        row = int(self._rows[index])
        size = tuple(int(v) for v in self._table.sizes[row])
        return mask_shapes(unpack_segmentations(self._segmentations, row), size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        r = self.record(index)
        image = self._read(r.path, r.size, r.image_id)
        shapes = self.instance_shapes(index) if self.masks else None
        return to_sample(image, r.boxes, r.labels, r.image_id, self.transforms, instances=shapes)


def to_sample(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    image_id: int,
    transforms: Callable | None,
    mask: np.ndarray | None = None,
    instances: MaskShapes | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Apply ``transforms`` and make the ``(image tensor, target dict)`` pair.

    A ``mask`` (``(H, W)`` uint8 label map, 255 = ignore) becomes the target's ``sem_seg``
    (``(H, W)`` int64, moved with the pixels). ``instances`` (one per box, original pixels:
    ``data/instance_masks.py``) become the target's ``masks``, an
    :class:`~visionkit.structures.masks.InstanceMasks` in the image tensor's pixels, moved and
    dropped with their boxes (:meth:`~visionkit.data.transforms.BoxTransform.apply_instances`).
    """
    orig_size = image.shape[:2]
    if instances is not None and transforms is not None:
        image, boxes, labels, instances = transforms.apply_instances(
            image, boxes, labels, instances
        )
    elif transforms is not None:
        image, boxes, labels, mask = transforms(image, boxes, labels, mask)
    tensor = image_to_float(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
    target = {
        "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.as_tensor(labels, dtype=torch.int64).reshape(-1),
        "image_id": int(image_id),
        "orig_size": (int(orig_size[0]), int(orig_size[1])),
    }
    if mask is not None:
        target["sem_seg"] = torch.from_numpy(np.ascontiguousarray(mask)).long()
    if instances is not None:
        target["masks"] = instance_masks(instances, *image.shape[:2])
    return tensor, target
