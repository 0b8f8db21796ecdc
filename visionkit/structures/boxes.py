"""Conversions between box formats.

Inside visionkit every box is ``(N, 4)`` float32 ``xyxy`` in absolute pixels of the image the
tensor describes (x2/y2 exclusive edges, so ``width = x2 - x1``). Other formats exist only at
the edges and are converted here:

- ``xyxy``: absolute ``(x1, y1, x2, y2)``.
- ``xywh``: COCO's absolute ``(x, y, w, h)``, top-left corner.
- ``cxcywh``: absolute centre and size.
- ``voc``: Pascal VOC's 1-based inclusive pixel indices ``(xmin, ymin, xmax, ymax)``;
  the pixel ``xmin`` covers ``[xmin - 1, xmin)`` in 0-based continuous coordinates.
- ``cxcywh_norm``: YOLO's centre and size divided by the image width/height (needs ``image_size``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

BOX_FORMATS = ("xyxy", "xywh", "cxcywh", "voc", "cxcywh_norm")


def _to_xyxy(b: Tensor, fmt: str, image_size: tuple[int, int] | None) -> Tensor:
    if fmt == "xyxy":
        return b
    a0, a1, a2, a3 = b.unbind(-1)
    if fmt == "xywh":
        return torch.stack([a0, a1, a0 + a2, a1 + a3], -1)
    if fmt == "voc":
        return torch.stack([a0 - 1, a1 - 1, a2, a3], -1)
    if fmt == "cxcywh_norm":
        h, w = _require_size(image_size)
        a0, a1, a2, a3 = a0 * w, a1 * h, a2 * w, a3 * h
    return torch.stack([a0 - a2 / 2, a1 - a3 / 2, a0 + a2 / 2, a1 + a3 / 2], -1)


def _from_xyxy(b: Tensor, fmt: str, image_size: tuple[int, int] | None) -> Tensor:
    if fmt == "xyxy":
        return b
    x1, y1, x2, y2 = b.unbind(-1)
    if fmt == "xywh":
        return torch.stack([x1, y1, x2 - x1, y2 - y1], -1)
    if fmt == "voc":
        return torch.stack([x1 + 1, y1 + 1, x2, y2], -1)
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    if fmt == "cxcywh_norm":
        ih, iw = _require_size(image_size)
        cx, cy, w, h = cx / iw, cy / ih, w / iw, h / ih
    return torch.stack([cx, cy, w, h], -1)


def _require_size(image_size: tuple[int, int] | None) -> tuple[int, int]:
    if image_size is None:
        raise ValueError("the 'cxcywh_norm' box format needs image_size=(height, width)")
    return image_size


def convert_boxes(
    boxes: Tensor | np.ndarray | list,
    src: str,
    dst: str,
    image_size: tuple[int, int] | None = None,
) -> Tensor:
    """Convert boxes between formats.

    Args:
        boxes: ``(..., 4)`` boxes in format ``src`` (tensor, array or nested list).
        src, dst: one of :data:`BOX_FORMATS`.
        image_size: ``(height, width)`` of the image, needed by ``cxcywh_norm``.

    Returns:
        ``(..., 4)`` float32 tensor in format ``dst`` (float64 input stays float64).
    """
    for fmt in (src, dst):
        if fmt not in BOX_FORMATS:
            raise ValueError(f"unknown box format {fmt!r}; expected one of {BOX_FORMATS}")
    b = torch.as_tensor(boxes)
    if not b.is_floating_point():
        b = b.float()
    if b.numel() == 0:
        return b.reshape(*b.shape[:-1], 4) if b.dim() > 0 and b.shape[-1] == 4 else b.reshape(0, 4)
    if src == dst:
        return b.clone()
    return _from_xyxy(_to_xyxy(b, src, image_size), dst, image_size)


def clip_boxes(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Clip ``(N, 4)`` xyxy boxes to an image of ``(height, width)``; returns a new tensor."""
    h, w = image_size
    x = boxes[..., 0::2].clamp(0, w)
    y = boxes[..., 1::2].clamp(0, h)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], -1)


# a box not wider and taller than this (px) is degenerate: a proposal or detection is dropped
MIN_BOX_SIZE = 1e-2


def clip_to_sizes(boxes: Tensor, image_sizes: Tensor) -> Tensor:
    """Clip ``(N, K, 4)`` xyxy boxes, ``K`` per image, to per-image ``(N, 2)`` sizes ``(h, w)``."""
    limit = image_sizes[:, [1, 0, 1, 0]].to(boxes.dtype)[:, None, :]
    return torch.minimum(boxes.clamp(min=0), limit)


def valid_boxes_mask(boxes: Tensor, min_size: float = 1e-3) -> Tensor:
    """``(N,)`` bool mask of xyxy boxes whose width and height both exceed ``min_size``."""
    return ((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1]) > min_size)


def aligned_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of corresponding xyxy boxes: ``a`` and ``b`` broadcast to ``(..., 4)``; returns ``(...)``.

    ``torchvision.ops.box_iou`` gives the all-pairs ``(N, M)`` matrix; this is its diagonal for
    boxes already paired up (e.g. each predictor with the object of its cell).
    """
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-9)
