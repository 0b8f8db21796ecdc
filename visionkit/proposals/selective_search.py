"""Selective search (Uijlings et al., 2013): class-agnostic region proposals from an image alone.

One *strategy* is a colour space, a Felzenszwalb-Huttenlocher threshold ``k`` and a set of
similarities. For each strategy the image is over-segmented (``skimage.segmentation.felzenszwalb``,
sigma 0.8, minimum region size ``k``) and the two most similar neighbouring regions are merged
greedily until one region is left; every region of that hierarchy is a proposal. Similarities,
each in ``[0, 1]``, summed:

- colour (``c``): intersection of 25-bin per-channel histograms (L1-normalized, ``25 * C`` bins);
- texture (``t``): intersection of 10-bin histograms of Gaussian-derivative (sigma 1) responses in
  8 orientations per channel (``80 * C`` bins);
- size (``s``): ``1 - (size_i + size_j) / size_image`` (small regions merge early);
- fill (``f``): ``1 - (bbox_ij - size_i - size_j) / size_image`` (regions that fit together).

Histograms of a merged region are the size-weighted means of its parts, so nothing is recomputed
from pixels. Modes (the paper's): ``single`` (HSV, k 100, c+t+s+f), ``fast`` (HSV and Lab x k 50,
100 x {c+t+s+f, t+s+f}: 8 strategies), ``quality`` (HSV, Lab, rgI, H, I x k 50, 100, 150, 300 x
{c+t+s+f, t+s+f, f, s}: 80). Ranking: each region's position in its hierarchy (the whole image 1,
the one merged before it 2, ...) times a uniform random number; boxes are sorted by that value
and duplicates keep their best rank. The random numbers come from ``seed``: the output is
deterministic.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import cv2
import numpy as np
from scipy.ndimage import find_objects
from skimage.segmentation import felzenszwalb

from visionkit.errors import DataError

COLOUR_BINS, TEXTURE_BINS, ORIENTATIONS = 25, 10, 8
MODES: dict[str, tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]] = {
    "single": (("hsv",), (100,), ("ctsf",)),
    "fast": (("hsv", "lab"), (50, 100), ("ctsf", "tsf")),
    "quality": (("hsv", "lab", "rgi", "h", "i"), (50, 100, 150, 300), ("ctsf", "tsf", "f", "s")),
}


def convert_colour(image: np.ndarray, space: str) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W, C)`` uint8 in ``space`` (``hsv``, ``lab``, ``rgi``:
    normalized r, g and intensity, ``h``: hue, ``i``: intensity), every channel over 0-255."""
    if space in ("hsv", "h"):
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(np.uint16) * 255 // 179).astype(np.uint8)
        return hsv if space == "hsv" else hsv[..., :1]
    if space == "lab":
        return cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
    if space == "i":
        return grey
    if space == "rgi":
        rgb = image.astype(np.float32)
        rg = rgb[..., :2] / np.maximum(rgb.sum(-1, keepdims=True), 1.0) * 255
        return np.concatenate([rg.round().astype(np.uint8), grey], -1)
    raise ValueError(f"unknown colour space '{space}'")


def _histograms(
    labels: np.ndarray, bins: np.ndarray, num_bins: int, num_regions: int
) -> np.ndarray:
    """``(P,)`` region labels and ``(P, D)`` bin indices in ``0..num_bins-1`` -> ``(R, D *
    num_bins)`` float64 histograms, each L1-normalized."""
    d = bins.shape[1]
    idx = labels[:, None] * (d * num_bins) + np.arange(d) * num_bins + bins
    hist = np.bincount(idx.ravel(), minlength=num_regions * d * num_bins).astype(np.float64)
    hist = hist.reshape(num_regions, d * num_bins)
    return hist / hist.sum(1, keepdims=True)


def _texture_bins(image: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` uint8 -> ``(H * W, C * 8)`` bins of the positive Gaussian-derivative response
    in 8 orientations, each scaled by its maximum over the image."""
    out = []
    for c in range(image.shape[2]):
        smooth = cv2.GaussianBlur(image[..., c].astype(np.float32), (0, 0), 1.0)
        gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3).ravel()
        gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3).ravel()
        for o in range(ORIENTATIONS):
            theta = o * 2 * np.pi / ORIENTATIONS
            r = np.maximum(np.cos(theta) * gx + np.sin(theta) * gy, 0)
            out.append(np.minimum(r * (TEXTURE_BINS / max(float(r.max()), 1e-6)), TEXTURE_BINS - 1))
    return np.stack(out, 1).astype(np.int64)


def _regions(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(H, W)`` labels ``0..R-1`` -> ``(R,)`` sizes, ``(R, 4)`` xyxy boxes (exclusive right and
    bottom edges) and ``(E, 2)`` int64 pairs of 4-connected neighbouring regions (``a < b``)."""
    r = int(labels.max()) + 1
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=r).astype(np.float64)
    slices = find_objects(labels + 1)
    boxes = np.array([[x.start, y.start, x.stop, y.stop] for y, x in slices], np.float64)
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    differ = a != b
    lo, hi = np.minimum(a[differ], b[differ]), np.maximum(a[differ], b[differ])
    keys = np.unique(lo.astype(np.int64) * r + hi)
    return sizes, boxes, np.stack(np.divmod(keys, r), 1)


class _Hierarchy:
    """Greedy grouping of one over-segmentation with one similarity set (``"ctsf"`` letters)."""

    def __init__(
        self,
        sizes: np.ndarray,
        boxes: np.ndarray,
        colour: np.ndarray,
        texture: np.ndarray,
        similarities: str,
        image_area: float,
    ) -> None:
        r = len(sizes)
        cap = 2 * r - 1
        self.sim_set, self.area = similarities, image_area
        self.size = np.concatenate([sizes, np.zeros(cap - r)])
        self.box = np.concatenate([boxes, np.zeros((cap - r, 4))])
        self.colour = np.concatenate([colour, np.zeros((cap - r, colour.shape[1]))])
        self.texture = np.concatenate([texture, np.zeros((cap - r, texture.shape[1]))])
        self.count = r

    def similarity(self, a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
        """``(E,)`` region indices ``a`` against ``b`` (indices or one index) -> ``(E,)``."""
        s = np.zeros(len(a))
        sa, sb = self.size[a], self.size[b]
        if "c" in self.sim_set:
            s += np.minimum(self.colour[a], self.colour[b]).sum(1)
        if "t" in self.sim_set:
            s += np.minimum(self.texture[a], self.texture[b]).sum(1)
        if "s" in self.sim_set:
            s += 1 - (sa + sb) / self.area
        if "f" in self.sim_set:
            ba, bb = self.box[a], self.box[b]
            wh = np.maximum(ba[:, 2:], bb[..., 2:]) - np.minimum(ba[:, :2], bb[..., :2])
            s += 1 - (wh[:, 0] * wh[:, 1] - sa - sb) / self.area
        return s

    def merge(self, i: int, j: int) -> int:
        t, si, sj = self.count, self.size[i], self.size[j]
        self.count += 1
        self.size[t] = si + sj
        self.box[t, :2] = np.minimum(self.box[i, :2], self.box[j, :2])
        self.box[t, 2:] = np.maximum(self.box[i, 2:], self.box[j, 2:])
        self.colour[t] = (self.colour[i] * si + self.colour[j] * sj) / (si + sj)
        self.texture[t] = (self.texture[i] * si + self.texture[j] * sj) / (si + sj)
        return t

    def run(self, pairs: np.ndarray) -> np.ndarray:
        """Merge until no neighbours are left; ``(2R - 1, 4)`` boxes in creation order."""
        neighbours: list[set[int]] = [set() for _ in range(len(self.size))]
        for a, b in pairs.tolist():
            neighbours[a].add(b)
            neighbours[b].add(a)
        sims = self.similarity(pairs[:, 0], pairs[:, 1])
        heap = list(zip((-sims).tolist(), pairs[:, 0].tolist(), pairs[:, 1].tolist(), strict=True))
        heapq.heapify(heap)
        alive = np.ones(len(self.size), bool)
        while heap:
            _, i, j = heapq.heappop(heap)
            if not (alive[i] and alive[j]):
                continue
            t = self.merge(i, j)
            alive[i] = alive[j] = False
            nbs = (neighbours[i] | neighbours[j]) - {i, j}
            neighbours[t] = nbs
            for k in nbs:
                neighbours[k] -= {i, j}
                neighbours[k].add(t)
            if nbs:
                ks = np.fromiter(nbs, np.int64, len(nbs))
                for s, k in zip((-self.similarity(ks, t)).tolist(), ks.tolist(), strict=True):
                    heapq.heappush(heap, (s, k, t))
        return self.box[: self.count]


def _strategy_boxes(
    image: np.ndarray, space: str, k: int, similarity_sets: Sequence[str]
) -> list[np.ndarray]:
    """One over-segmentation of ``image`` in ``space`` with threshold ``k``; per similarity set
    its hierarchy's ``(n, 4)`` boxes in creation order."""
    converted = convert_colour(image, space)
    labels = felzenszwalb(converted, scale=k, sigma=0.8, min_size=k, channel_axis=-1)
    _, labels = np.unique(labels, return_inverse=True)
    labels = labels.reshape(image.shape[:2]).astype(np.int64)
    sizes, boxes, pairs = _regions(labels)
    flat = labels.ravel()
    colour_bins = converted.reshape(-1, converted.shape[2]).astype(np.int64) * COLOUR_BINS // 256
    colour = _histograms(flat, colour_bins, COLOUR_BINS, len(sizes))
    texture = _histograms(flat, _texture_bins(converted), TEXTURE_BINS, len(sizes))
    area = float(labels.size)
    return [
        _Hierarchy(sizes, boxes, colour, texture, sims, area).run(pairs) for sims in similarity_sets
    ]


def selective_search(image: np.ndarray, mode: str = "fast", seed: int = 0) -> np.ndarray:
    """Region proposals of one image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        mode: ``single``, ``fast`` or ``quality`` (the strategies above).
        seed: seeds the random ranking (same image, mode and seed: same output).

    Returns:
        ``(N, 4)`` float32 xyxy boxes in the image's pixels (integer edges, exclusive right and
        bottom), best ranked first, no duplicates.
    """
    if mode not in MODES:
        raise ValueError(f"unknown selective search mode '{mode}'; choose one of {list(MODES)}")
    shape_ok = image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 2
    if not shape_ok or image.dtype != np.uint8:
        raise DataError(
            f"selective search takes an (H, W, 3) uint8 RGB image; got {image.dtype} {image.shape}"
        )
    spaces, ks, similarity_sets = MODES[mode]
    rng = np.random.default_rng(seed)
    all_boxes, all_ranks = [], []
    for space in spaces:
        for k in ks:
            for boxes in _strategy_boxes(image, space, k, similarity_sets):
                position = np.arange(len(boxes), 0, -1, dtype=np.float64)
                all_boxes.append(boxes)
                all_ranks.append(position * rng.random(len(boxes)))
    boxes = np.concatenate(all_boxes)[np.argsort(np.concatenate(all_ranks), kind="stable")]
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)].astype(np.float32)
