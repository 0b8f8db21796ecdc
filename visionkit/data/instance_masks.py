"""Instance masks of the box readers, for instance segmentation models (task ``"instance"``).

A reader keeps each training object's outline in its packed index as it was written, never as a
bitmap (a COCO image of 20 objects at 640 x 480 would be 6 MB of bitmaps, its polygons a few
hundred numbers): COCO ``segmentation`` polygons and RLE as in the file, YOLO segments as polygons
in pixels (:func:`pack_segmentations`, one pickled list per image, ``data/packed.py``). A sample
turns its objects' outlines into :data:`MaskShapes`, which the transforms move with the pixels
(``data/transforms.py``), and the target's ``masks`` is an
:class:`~visionkit.structures.masks.InstanceMasks` of them, one per box, in the image tensor's
pixels; a model rasterizes only what it needs (inside each sampled RoI).

Polygons stay polygons when every object of the image has them (the usual case); an image with
an RLE object (COCO's rare non-crowd RLE) has all its objects decoded to ``(N, H, W)`` bitmaps,
which the transforms warp as they warp the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import torch
from pycocotools import mask as mask_utils

from visionkit.data.packed import PackedArrays, pack_objects, unpack_object
from visionkit.structures.masks import InstanceMasks

# One image's instance outlines before they become InstanceMasks: per object a list of (K, 2)
# float32 polygons (x, y in pixels), or (N, H, W) uint8 bitmaps (1 inside).
MaskShapes: TypeAlias = list[list[np.ndarray]] | np.ndarray


def pack_segmentations(per_image: Sequence[Sequence[list | dict]]) -> PackedArrays:
    """Each image's objects' COCO ``segmentation`` (a list of flat ``[x1, y1, ...]`` polygons, or
    an RLE dict), packed as written (:func:`~visionkit.data.packed.pack_objects`)."""
    return pack_objects([list(objs) for objs in per_image])


def unpack_segmentations(packed: PackedArrays, row: int) -> list[list | dict]:
    """Image ``row``'s segmentations, as :func:`pack_segmentations` got them."""
    return unpack_object(packed, row)


def segmentation_rle(segmentation: list | dict, size: tuple[int, int]) -> dict[str, Any]:
    """A COCO ``segmentation`` (polygons, an uncompressed or a compressed RLE) of an image of
    ``size`` ``(H, W)`` as one compressed RLE (pycocotools' ``COCO.annToRLE``)."""
    h, w = size
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, h, w)
    return segmentation


def mask_shapes(segmentations: Sequence[list | dict], size: tuple[int, int]) -> MaskShapes:
    """One image's objects' segmentations (checked: ``coco_checks.check_segmentation``) as
    :data:`MaskShapes` of an image of ``size`` ``(H, W)``: polygons (``(K, 2)`` float32 each)
    when every object has polygons, else ``(N, H, W)`` uint8 bitmaps (RLE decoded, polygons
    rasterized, by pycocotools)."""
    if all(isinstance(s, list) for s in segmentations):
        return [[np.asarray(p, np.float32).reshape(-1, 2) for p in s] for s in segmentations]
    rles = [segmentation_rle(s, size) for s in segmentations]
    return np.ascontiguousarray(mask_utils.decode(rles).transpose(2, 0, 1))


def instance_masks(shapes: MaskShapes, height: int, width: int) -> InstanceMasks:
    """:data:`MaskShapes` of a ``height`` x ``width`` image as
    :class:`~visionkit.structures.masks.InstanceMasks` (polygons or bitmaps, as given)."""
    if isinstance(shapes, np.ndarray):
        return InstanceMasks.from_bitmaps(torch.from_numpy(np.ascontiguousarray(shapes)).bool())
    return InstanceMasks.from_polygons(shapes, height, width)


def polygon_points(polygons: Sequence[Sequence[np.ndarray]]) -> tuple[np.ndarray, list[list[int]]]:
    """Every vertex of every object's polygons as one ``(V, 2)`` float32 array (for a transform
    to move at once), and per object its polygons' vertex counts (to split them back:
    :func:`split_points`)."""
    counts = [[len(p) for p in obj] for obj in polygons]
    parts = [np.asarray(p, np.float32).reshape(-1, 2) for obj in polygons for p in obj]
    points = np.concatenate(parts) if parts else np.zeros((0, 2), np.float32)
    return points, counts


def split_points(points: np.ndarray, counts: Sequence[Sequence[int]]) -> list[list[np.ndarray]]:
    """:func:`polygon_points` undone: ``(V, 2)`` vertices back into per-object polygons."""
    out, start = [], 0
    for obj in counts:
        polys = []
        for n in obj:
            polys.append(np.asarray(points[start : start + n], np.float32).reshape(-1, 2))
            start += n
        out.append(polys)
    return out


def to_bitmaps(shapes: MaskShapes, size: tuple[int, int]) -> np.ndarray:
    """:data:`MaskShapes` of an image of ``size`` ``(H, W)`` as ``(N, H, W)`` uint8 bitmaps
    (polygons rasterized: :meth:`~visionkit.structures.masks.InstanceMasks.to_bitmaps`)."""
    if isinstance(shapes, np.ndarray):
        return shapes
    return instance_masks(shapes, *size).to_bitmaps().numpy().astype(np.uint8)
