"""Semantic segmentation readers: per-pixel label maps from VOC PNGs, SBD ``.mat`` files or COCO
instance annotations.

Samples are ``(image, target)`` as the detection readers give them (``boxes`` and ``labels``
empty) plus ``sem_seg``: ``(H, W)`` int64, ``0`` background, ``1..C-1`` the classes, ``255``
ignored (VOC's object boundaries, COCO's crowd regions and pixels claimed by two classes, padding
added by augmentation). Attributes: ``class_names`` (background first, so ``C`` = classes + 1),
``cat_ids`` (label -> the value in the label files, or the COCO category id with 0 for
background) and ``ids`` (image ids in dataset order).

Layouts::

    VOCdevkit/VOC2012/ImageSets/Segmentation/<split>.txt    entries "2012/<split>"
                      JPEGImages/<name>.jpg, SegmentationClass/<name>.png (palette indices)
    VOCdevkit/SBD/<split>.txt, img/<name>.jpg, cls/<name>.mat    entries "sbd/<split>" (SBD's
                      benchmark_RELEASE/dataset folder; reading it needs scipy)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from visionkit.data.coco import LazyGroundTruth, load_coco, open_coco, to_sample
from visionkit.data.coco_checks import check_segmentation, read_sized_image
from visionkit.data.instance_masks import segmentation_rle
from visionkit.data.packed import PackedStrings, pack_objects, unpack_object
from visionkit.errors import DataError, UnreadableImageError
from visionkit.io.image import read_image
from visionkit.io.structured import read_text
from visionkit.structures.labels import COCO_VOC_CAT_IDS, IGNORE_LABEL, VOC_CLASSES

SEG_VOC_CLASSES = ("background", *VOC_CLASSES)


def read_label_png(path: Path) -> np.ndarray:
    """``(H, W)`` uint8 class indices of a palette or greyscale PNG (palette indices, not RGB)."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise DataError(
                    f"{path}: a label map must be a palette or greyscale PNG ({im.mode})"
                )
            return np.array(im)
    except OSError as e:
        what = "missing" if not path.exists() else type(e).__name__
        raise UnreadableImageError(f"cannot read label map {path}: {what}", str(path)) from None


def read_sbd_mat(path: Path) -> np.ndarray:
    """``(H, W)`` uint8 class indices of an SBD ``cls/<name>.mat`` file (``GTcls.Segmentation``)."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError("reading SBD .mat label maps needs scipy: pip install scipy") from None
    try:
        return np.asarray(loadmat(str(path))["GTcls"][0]["Segmentation"][0], np.uint8)
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise UnreadableImageError(
            f"cannot read SBD label map {path}: {type(e).__name__}", str(path)
        ) from None


def voc_layout_samples(folder: Path, split: str) -> list[tuple[Path, Path]]:
    """``(image, label PNG)`` paths listed in ``folder/ImageSets/Segmentation/<split>.txt``."""
    listing = folder / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise DataError(f"segmentation split list not found: {listing}")
    return [
        (folder / "JPEGImages" / f"{n}.jpg", folder / "SegmentationClass" / f"{n}.png")
        for n in read_text(listing).split()
    ]


class SegmentationDataset(Dataset):
    """Images and label-map files (PNG or SBD ``.mat``); see the module docstring.

    Args:
        samples: ``(image path, label path)`` pairs.
        class_names: background first; label values ``>= len(class_names)`` other than 255 are
            a DataError naming the file.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, Path]],
        class_names: Sequence[str],
        transforms: Callable | None = None,
    ) -> None:
        if not samples:
            raise DataError("no images listed for this segmentation dataset")
        # packed (data/packed.py): loader workers share the paths instead of copying them
        self._images = PackedStrings([str(image) for image, _ in samples])
        self._labels = PackedStrings([str(label) for _, label in samples])
        self.class_names = list(class_names)
        self.cat_ids = list(range(len(self.class_names)))
        self.ids = list(range(1, len(samples) + 1))
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self._images)

    def image_path(self, index: int) -> Path:
        return Path(self._images[index])

    def label_path(self, index: int) -> Path:
        return Path(self._labels[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        label_path = self.label_path(index)
        image = read_image(self.image_path(index))
        mask = (
            read_sbd_mat(label_path) if label_path.suffix == ".mat" else read_label_png(label_path)
        )
        if mask.shape != image.shape[:2]:
            raise DataError(f"{label_path}: size {mask.shape} differs from its image's")
        bad = mask[(mask >= len(self.class_names)) & (mask != IGNORE_LABEL)]
        if bad.size:
            raise DataError(
                f"{label_path}: label {int(bad[0])} outside 0..{len(self.class_names) - 1} "
                f"and {IGNORE_LABEL}"
            )
        return to_sample(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                         index + 1, self.transforms, mask)  # fmt: skip


def voc_segmentation(
    root: str | Path, splits: Sequence[str], transforms: Callable | None = None
) -> SegmentationDataset:
    """VOC (``"2012/train"``) and SBD (``"sbd/train"``) entries, concatenated; an image named by
    an earlier entry is not repeated (``["2012/train", "sbd/train"]`` is the usual union; keep
    VOC's val images out of SBD's list, e.g. with FCN's ``train_noval.txt``)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"Pascal VOC not found at {root}: put VOCdevkit there (VOC2012/, optionally SBD/) or "
            "set data.train.root; visionkit/configs/*_shapes.yaml run with no data at all"
        )
    samples: dict[str, tuple[Path, Path]] = {}
    for entry in splits:
        year, _, split = entry.partition("/")
        if year.lower() == "sbd":
            folder = root / "SBD"
            listing = folder / f"{split}.txt"
            if not listing.is_file():
                raise DataError(f"SBD split list not found: {listing}")
            pairs = [(folder / "img" / f"{n}.jpg", folder / "cls" / f"{n}.mat")
                     for n in read_text(listing).split()]  # fmt: skip
        else:
            pairs = voc_layout_samples(root / f"VOC{year}", split)
        for image, label in pairs:
            samples.setdefault(image.stem, (image, label))
    return SegmentationDataset(list(samples.values()), SEG_VOC_CLASSES, transforms)


def coco_semantic_mask(objects: Sequence[SegObject], size: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` uint8 label map of one image's objects (polygons or RLE of an image of
    ``size``).

    Instance pixels take their object's label; pixels covered by instances of two different
    classes and crowd regions are ``IGNORE_LABEL``; the rest is 0 (background).
    """
    mask = np.zeros(size, np.uint8)
    if not objects:
        return mask
    masks = mask_utils.decode([segmentation_rle(o.segmentation, size) for o in objects])
    masks = masks.astype(bool)  # (H, W, N)
    crowd = np.array([o.crowd for o in objects])
    labels = np.array([o.label for o in objects], np.uint8)
    objs, obj_labels = masks[..., ~crowd], labels[~crowd]
    high = np.where(objs, obj_labels, 0).max(-1, initial=0)
    low = np.where(objs, obj_labels, IGNORE_LABEL).min(-1, initial=IGNORE_LABEL)
    mask[:] = high
    mask[objs.any(-1) & (high != low)] = IGNORE_LABEL
    mask[masks[..., crowd].any(-1)] = IGNORE_LABEL
    return mask


class SegObject(NamedTuple):
    """One annotation a COCO label map is drawn from: its ``label`` (1..C-1), whether it is a
    ``crowd`` region, and its COCO ``segmentation``."""

    label: int
    crowd: bool
    segmentation: list | dict


class CocoSegmentation(LazyGroundTruth, Dataset):
    """COCO instances turned into semantic label maps (see :func:`coco_semantic_mask`). The
    images and each image's objects are packed (``data/packed.py``): loader workers share them;
    :attr:`coco` is built from the file on first use.

    Args:
        coco_to_voc: keep only VOC's 20 categories (torchvision's reference), in VOC order; other
            objects become background. Otherwise every category, sorted by id, is a class.
        filter_empty: drop images without a (kept, non-crowd) object.
    """

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        transforms: Callable | None = None,
        filter_empty: bool = False,
        coco_to_voc: bool = False,
    ) -> None:
        self.ann_file, self.image_dir, data, self._table = open_coco(ann_file, image_dir)
        check_segmentation(data, self.ann_file)
        self.transforms = transforms
        names = {c["id"]: c["name"] for c in data["categories"]}
        kept = list(COCO_VOC_CAT_IDS) if coco_to_voc else sorted(names)
        self.class_names = ["background", *(VOC_CLASSES if coco_to_voc else map(names.get, kept))]
        self.cat_ids = [0, *kept]
        label_of = {c: i + 1 for i, c in enumerate(kept)}
        objects: list[list[SegObject]] = [[] for _ in range(len(self._table))]
        for a in data["annotations"]:
            if a["category_id"] in label_of:
                obj = SegObject(label_of[a["category_id"]], bool(a["iscrowd"]), a["segmentation"])
                objects[self._table.row(a["image_id"])].append(obj)
        self._objects = pack_objects(objects)
        has = np.array([any(not o.crowd for o in objs) for objs in objects], bool)
        self._rows = np.flatnonzero(has | (not filter_empty))
        if not len(self._rows):
            raise DataError(f"{self.ann_file}: no images left (none with a kept category?)")
        self.ids: list[int] = self._table.ids[self._rows].tolist()

    def _build_coco(self) -> COCO:
        return load_coco(self.ann_file)

    def __len__(self) -> int:
        return len(self._rows)

    def image_path(self, index: int) -> Path:
        return self._table.path(int(self._rows[index]))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        row = int(self._rows[index])
        img_id = int(self._table.ids[row])
        h, w = self._table.sizes[row].tolist()
        where = f"{self.ann_file}: image id {img_id}"
        image = read_sized_image(self._table.path(row), h, w, where)
        mask = coco_semantic_mask(unpack_object(self._objects, row), image.shape[:2])
        return to_sample(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), img_id,
                         self.transforms, mask)  # fmt: skip
