"""Instance masks: one binary mask per object of a target's ``boxes``, and masks pasted back into
an image.

:class:`InstanceMasks` holds the masks of one image in that image tensor's pixels, either as
polygons (per instance a list of ``(K, 2)`` float32 arrays of ``x, y``; COCO polygons and the
shapes dataset's) or as bitmaps (``(N, H, W)`` bool; COCO RLE, crowd RLE). Coordinates are
continuous: pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``, as boxes' (``boxes.py``), so a
polygon and its box move together under the same flip, scale or crop.

Mask R-CNN's training targets come from :meth:`InstanceMasks.crop_and_resize`: polygons are
rasterized inside each RoI at ``M x M`` (detectron2's ``rasterize_polygons_within_box``: shift
by the box origin, scale to ``M x M``, pycocotools), so an image with many objects never needs
its full-size bitmaps; bitmaps are sampled by ``roi_align`` as torchvision's
``project_masks_on_boxes`` does. At test time :func:`paste_masks` resizes each ``M x M``
probability map into its box and thresholds it (torchvision's ``paste_masks_in_image``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

Polygons = list[list[np.ndarray]]  # per instance, its parts: (K, 2) float32 x, y in pixels


class InstanceMasks:
    """The instance masks of one image: polygons or bitmaps (see the module).

    Build with :meth:`from_polygons`, :meth:`from_bitmaps` or :meth:`from_rles`. ``len(m)`` is
    the number of instances, ``m[index]`` (int, slice, list, bool or int64 tensor) a subset.
    Geometry (:meth:`flip_horizontal`, :meth:`resize`, :meth:`crop`, :meth:`affine`) returns new
    masks. Polygons with fewer than 3 points cover nothing.
    """

    def __init__(
        self,
        height: int,
        width: int,
        polygons: Polygons | None = None,
        bitmaps: Tensor | None = None,
    ) -> None:
        if (polygons is None) == (bitmaps is None):
            raise ValueError("InstanceMasks holds polygons or bitmaps (exactly one)")
        if int(height) < 1 or int(width) < 1:
            raise ValueError(f"InstanceMasks of a {height} x {width} image")
        self._height, self._width = int(height), int(width)
        self.polygons, self.bitmaps = polygons, bitmaps

    @classmethod
    def from_polygons(
        cls, polys: Sequence[Sequence[Any]], height: int, width: int
    ) -> InstanceMasks:
        """Per instance a list of polygons, each ``(K, 2)`` (or COCO's flat ``[x0, y0, x1, ...]``)
        ``x, y`` in pixels of a ``height x width`` image; ValueError for another shape or a
        non-finite coordinate."""
        out = []
        for parts in polys:
            arrays = []
            for p in parts:
                a = np.asarray(p, dtype=np.float32)
                if a.ndim == 1 and a.size % 2 == 0:
                    a = a.reshape(-1, 2)
                if a.ndim != 2 or a.shape[1] != 2 or not np.isfinite(a).all():
                    raise ValueError(f"a polygon must be (K, 2) finite x, y; got shape {a.shape}")
                arrays.append(a)
            out.append(arrays)
        return cls(height, width, polygons=out)

    @classmethod
    def from_bitmaps(cls, bitmaps: Tensor | np.ndarray) -> InstanceMasks:
        """``(N, H, W)`` uint8/bool bitmaps (non-zero = inside)."""
        b = torch.as_tensor(bitmaps)
        if b.dim() != 3:
            raise ValueError(f"bitmaps must be (N, H, W); got shape {tuple(b.shape)}")
        return cls(b.shape[1], b.shape[2], bitmaps=b != 0)

    @classmethod
    def from_rles(cls, rles: Sequence[dict], height: int, width: int) -> InstanceMasks:
        """COCO RLE dicts (``size`` ``[h, w]``, ``counts`` compressed str/bytes or an
        uncompressed list), decoded to bitmaps; ValueError for another size or list counts that
        do not sum to ``h * w``."""
        bitmaps = torch.zeros(len(rles), int(height), int(width), dtype=torch.bool)
        for i, rle in enumerate(rles):
            size = [int(v) for v in rle["size"]]
            if size != [int(height), int(width)]:
                raise ValueError(f"an RLE of size {size} in a {height} x {width} image")
            counts = rle["counts"]
            if isinstance(counts, list):
                if sum(int(c) for c in counts) != height * width:
                    raise ValueError(f"RLE counts sum to {sum(counts)}, not {height * width}")
                rle = mask_util.frPyObjects(rle, *size)
            elif isinstance(counts, str):
                rle = {"size": size, "counts": counts.encode("ascii")}
            bitmaps[i] = torch.from_numpy(mask_util.decode(rle) != 0)
        return cls(height, width, bitmaps=bitmaps)

    @property
    def height(self) -> int:
        return self._height

    @property
    def width(self) -> int:
        return self._width

    @property
    def is_polygons(self) -> bool:
        return self.polygons is not None

    def __len__(self) -> int:
        return len(self.polygons) if self.polygons is not None else self.bitmaps.shape[0]

    def __getitem__(
        self, index: int | slice | Sequence[int] | Tensor | np.ndarray
    ) -> InstanceMasks:
        if isinstance(index, int):
            index = [index]
        if self.bitmaps is not None:
            idx = torch.as_tensor(index) if not isinstance(index, slice) else index
            return InstanceMasks(self.height, self.width, bitmaps=self.bitmaps[idx])
        rows = np.arange(len(self))[np.asarray(index) if not isinstance(index, slice) else index]
        return InstanceMasks(self.height, self.width, polygons=[self.polygons[i] for i in rows])

    def __repr__(self) -> str:
        kind = "polygons" if self.is_polygons else "bitmaps"
        return f"InstanceMasks({len(self)} {kind}, {self.height} x {self.width})"

    def to_bitmaps(self) -> Tensor:
        """``(N, H, W)`` bool full-image masks (polygons rasterized by pycocotools)."""
        if self.bitmaps is not None:
            return self.bitmaps.clone()
        out = torch.zeros(len(self), self.height, self.width, dtype=torch.bool)
        for i, parts in enumerate(self.polygons):
            out[i] = torch.from_numpy(_rasterize(_flat(parts), self.height, self.width))
        return out

    def to_rles(self) -> list[dict]:
        """One COCO RLE per instance: ``{"size": [h, w], "counts": str}``."""
        if self.bitmaps is not None:
            return encode_rles(self.bitmaps)
        out = []
        for parts in self.polygons:
            flat = _flat(parts)
            if not flat:
                out.extend(encode_rles(torch.zeros(1, self.height, self.width, dtype=torch.bool)))
                continue
            rle = mask_util.merge(mask_util.frPyObjects(flat, self.height, self.width))
            out.append({"size": [self.height, self.width], "counts": rle["counts"].decode()})
        return out

    def crop_and_resize(
        self, boxes: Tensor, size: int = 28, indices: Tensor | None = None
    ) -> Tensor:
        """Each box's piece of its instance's mask at ``size x size``.

        Args:
            boxes: ``(P, 4)`` float xyxy in this image's pixels.
            size: the side ``M`` of the output.
            indices: ``(P,)`` int64 instance of each box; None: box ``i`` for instance ``i``.

        Returns:
            ``(P, M, M)`` float32 on the boxes' device: polygons rasterized inside each box
            (values 0/1, detectron2), bitmaps ``roi_align``-ed (fractions at the edges,
            torchvision's ``project_masks_on_boxes``: no half-pixel shift, adaptive sampling).
        """
        n = boxes.shape[0]
        index = torch.arange(n) if indices is None else indices.reshape(-1).long().cpu()
        if self.bitmaps is not None:
            rows, inverse = index.unique(return_inverse=True)
            source = self.bitmaps[rows.to(self.bitmaps.device)][:, None].float()
            rois = torch.cat([inverse.to(source)[:, None], boxes.to(source)], 1)
            return roi_align(source, rois, (size, size), 1.0)[:, 0].to(boxes.device)
        out = np.zeros((n, size, size), dtype=np.float32)
        corners = boxes.detach().cpu().double().numpy()
        for i, (box, j) in enumerate(zip(corners, index.tolist(), strict=True)):
            out[i] = _rasterize_within_box(self.polygons[j], box, size)
        return torch.from_numpy(out).to(boxes.device)

    # ---- geometry: each returns new masks ----
    def flip_horizontal(self) -> InstanceMasks:
        """Mirrored left-right: ``x -> width - x`` (the boxes' flip)."""
        if self.bitmaps is not None:
            return InstanceMasks(self.height, self.width, bitmaps=self.bitmaps.flip(-1))
        return self._map(
            lambda p: np.stack([self.width - p[:, 0], p[:, 1]], 1), self.height, self.width
        )

    def resize(self, new_h: int, new_w: int) -> InstanceMasks:
        """Scaled to a ``new_h x new_w`` image (bitmaps: nearest neighbour)."""
        if self.bitmaps is not None:
            b = self.bitmaps
            if len(self) == 0:
                b = b.new_zeros(0, new_h, new_w)
            elif (new_h, new_w) != (self.height, self.width):
                b = F.interpolate(b[None].float(), (new_h, new_w), mode="nearest")[0] > 0.5
            return InstanceMasks(new_h, new_w, bitmaps=b.clone())
        scale = np.array([new_w / self.width, new_h / self.height], dtype=np.float32)
        return self._map(lambda p: p * scale, new_h, new_w)

    def crop(self, x0: int, y0: int, x1: int, y1: int) -> InstanceMasks:
        """The window ``[x0, x1) x [y0, y1)`` (it may reach beyond the image: empty there) as a
        new image: polygons translated by ``(-x0, -y0)`` and clipped to it."""
        x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
        h, w = y1 - y0, x1 - x0
        if self.bitmaps is None:
            return self._map(lambda p: _clip_polygon(p - np.float32([x0, y0]), w, h), h, w)
        out = self.bitmaps.new_zeros(len(self), h, w)
        sx, sy = max(x0, 0), max(y0, 0)
        ex, ey = min(x1, self.width), min(y1, self.height)
        if sx < ex and sy < ey:
            out[:, sy - y0 : ey - y0, sx - x0 : ex - x0] = self.bitmaps[:, sy:ey, sx:ex]
        return InstanceMasks(h, w, bitmaps=out)

    def affine(self, matrix: np.ndarray, out_h: int, out_w: int) -> InstanceMasks:
        """Warped by the ``2 x 3`` ``matrix`` as ``cv2.warpAffine`` warps the image (source to
        destination, pixel centres at integer coordinates) into an ``out_h x out_w`` image;
        polygons clipped to it, bitmaps sampled by nearest neighbour."""
        m = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
        if self.bitmaps is not None:
            src = self.bitmaps.cpu().numpy().astype(np.uint8)
            out = np.zeros((len(self), out_h, out_w), dtype=np.uint8)
            for i in range(len(self)):
                out[i] = cv2.warpAffine(src[i], m, (out_w, out_h), flags=cv2.INTER_NEAREST)
            return InstanceMasks(out_h, out_w, bitmaps=torch.from_numpy(out) != 0)

        def warp(p: np.ndarray) -> np.ndarray:  # continuous coordinates: centres at +0.5
            q = (p.astype(np.float64) - 0.5) @ m[:, :2].T + m[:, 2] + 0.5
            return _clip_polygon(q.astype(np.float32), out_w, out_h)

        return self._map(warp, out_h, out_w)

    def _map(self, fn: Any, height: int, width: int) -> InstanceMasks:
        """Polygons: ``fn`` on every part; parts left with fewer than 3 points dropped."""
        polys = [[q for q in (fn(p) for p in parts) if len(q) >= 3] for parts in self.polygons]
        return InstanceMasks(height, width, polygons=polys)


def encode_rles(bitmaps: Tensor | np.ndarray) -> list[dict]:
    """``(N, H, W)`` bool/uint8 masks -> N COCO RLEs ``{"size": [H, W], "counts": str}``
    (pycocotools' ``mask.encode``, counts decoded to text for JSON)."""
    b = bitmaps.cpu().numpy() if isinstance(bitmaps, Tensor) else np.asarray(bitmaps)
    if b.shape[0] == 0:
        return []
    rles = mask_util.encode(np.asfortranarray(b.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode()} for r in rles]


def paste_masks(
    masks: Tensor, boxes: Tensor, height: int, width: int, threshold: float = 0.5
) -> Tensor:
    """Paste each ``M x M`` mask into its box of a ``height x width`` image, as torchvision's
    ``paste_masks_in_image`` (then ``> threshold``): the mask padded by one zero pixel on each
    side, the box widened by the same ``(M + 2) / M`` about its centre and truncated to integer
    pixels ``[x0, x1] x [y0, y1]`` (inclusive), the padded mask resized bilinearly
    (``align_corners=False``) to ``(y1 - y0 + 1) x (x1 - x0 + 1)`` and cut to the image.

    Args:
        masks: ``(N, 1, M, M)`` float probabilities.
        boxes: ``(N, 4)`` float xyxy in the image's pixels.
        height, width: the image's size.
        threshold: a pixel is inside where its resized probability exceeds it.

    Returns:
        ``(N, height, width)`` bool on the masks' device.
    """
    n, m = masks.shape[0], masks.shape[-1]
    out = torch.zeros(n, height, width, dtype=torch.bool, device=masks.device)
    if n == 0:
        return out
    padded = F.pad(masks.float(), (1, 1, 1, 1))
    scale = float(m + 2) / m
    b = boxes.float()
    half = (b[:, 2:] - b[:, :2]) * 0.5 * scale
    center = (b[:, 2:] + b[:, :2]) * 0.5
    corners = torch.cat([center - half, center + half], 1).to(torch.int64).tolist()
    for i, (x0, y0, x1, y1) in enumerate(corners):
        w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
        xa, xb, ya, yb = max(x0, 0), min(x1 + 1, width), max(y0, 0), min(y1 + 1, height)
        if xa >= xb or ya >= yb:
            continue
        resized = F.interpolate(padded[i : i + 1], (h, w), mode="bilinear", align_corners=False)
        out[i, ya:yb, xa:xb] = resized[0, 0, ya - y0 : yb - y0, xa - x0 : xb - x0] > threshold
    return out


def _flat(parts: list[np.ndarray]) -> list[np.ndarray]:
    """pycocotools' polygons: flat float64 ``[x0, y0, x1, y1, ...]`` of 3 points or more (its
    ``frPyObjects`` reads a 4-number list as a box)."""
    return [p.reshape(-1).astype(np.float64) for p in parts if len(p) >= 3]


def _rasterize(flat: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Flat polygons -> ``(height, width)`` bool, their union (pycocotools, COCO's rule)."""
    if not flat:
        return np.zeros((height, width), dtype=bool)
    rle = mask_util.merge(mask_util.frPyObjects(flat, height, width))
    return mask_util.decode(rle).astype(bool)


def _rasterize_within_box(parts: list[np.ndarray], box: np.ndarray, size: int) -> np.ndarray:
    """detectron2's ``rasterize_polygons_within_box``: the polygons shifted by the box origin,
    scaled so the box spans ``size x size`` (sides below 0.1 px count as 0.1), rasterized."""
    w, h = box[2] - box[0], box[3] - box[1]
    scale = np.array([size / max(w, 0.1), size / max(h, 0.1)])
    flat = [((p.astype(np.float64) - box[:2]) * scale).reshape(-1) for p in parts if len(p) >= 3]
    return _rasterize(flat, size, size)


def _clip_polygon(p: np.ndarray, width: float, height: float) -> np.ndarray:
    """A ``(K, 2)`` polygon clipped to ``[0, width] x [0, height]`` (Sutherland-Hodgman: one
    half-plane after another; each vertex kept where inside, each crossing edge adds its
    intersection)."""
    for axis, bound, below in (
        (0, 0.0, False),
        (0, width, True),
        (1, 0.0, False),
        (1, height, True),
    ):
        if len(p) == 0:
            break
        d = (p[:, axis] - bound).astype(np.float64)
        inside = d <= 0 if below else d >= 0
        nxt, d_nxt = np.roll(p, -1, 0), np.roll(d, -1)
        cross = inside != np.roll(inside, -1)
        t = np.where(cross, d / np.where(cross, d - d_nxt, 1.0), 0.0)
        hit = (p + t[:, None] * (nxt - p)).astype(np.float32)
        hit[cross, axis] = bound  # exactly on the edge
        p = np.stack([p, hit], 1).reshape(-1, 2)[np.stack([inside, cross], 1).reshape(-1)]
    return p.astype(np.float32)
