"""RoI feature extraction: a fixed-size feature for each region of one or more feature maps.

- ``roi_pool``: Fast R-CNN's RoI max pooling into ``k x k`` bins (``torchvision.ops.roi_pool``).
- ``roi_align``: Mask R-CNN's bilinear RoIAlign (``torchvision.ops.roi_align``), no quantization.
- ``spp``: SPPNet's spatial pyramid pooling: max pooling into ``l x l`` bins for every pyramid
  level ``l`` (e.g. 1, 2, 3, 6), flattened and concatenated, so the output length
  ``C * sum(l^2)`` does not depend on the region's shape.

Regions are xyxy boxes in input pixels; ``1 / stride`` maps them onto a map. With several maps
(a feature pyramid) each region is pooled from one level, chosen by its size (FPN, eq. 1):
``k = floor(k0 + log2(sqrt(w h) / 224))``, clamped to the available levels, ``k0 = 4``.
torchvision's ``MultiScaleRoIAlign`` is ``roi_align`` with ``aligned=False`` and
``level_eps="after_log"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visionkit.models.cpu_parallel import pool_rois

POOLER_KINDS = ("roi_pool", "roi_align", "spp")


class RoIPooler(nn.Module):
    """Pool per-image boxes from one level, or from one level each of a pyramid.

    Args:
        kind: ``roi_pool``, ``roi_align`` or ``spp``.
        output_size: ``k`` of the ``k x k`` output (``roi_pool`` / ``roi_align``).
        strides: per feature level, its stride in input pixels (several: powers of 2, fine to
            coarse, consecutive).
        sampling_ratio: RoIAlign's sampling points per bin side (0 = adaptive).
        spp_levels: the pyramid's bins per side (``spp``).
        canonical_size, canonical_level: a ``canonical_size``-px RoI goes to the level of stride
            ``2 ** canonical_level`` (FPN: 224 and 4).
        aligned: RoIAlign's half-pixel shift of the box corners (``roi_align``'s ``aligned``).
        level_eps: the level rule's epsilon 1e-6 ``in_log`` (``log2(s / 224 + eps)``) or
            ``after_log`` (``log2(s / 224) + eps``, torchvision's ``LevelMapper``).
    """

    def __init__(
        self,
        kind: str = "roi_pool",
        output_size: int = 7,
        strides: Sequence[int] = (16,),
        sampling_ratio: int = 0,
        spp_levels: Sequence[int] = (1, 2, 3, 6),
        canonical_size: float = 224.0,
        canonical_level: int = 4,
        aligned: bool = True,
        level_eps: str = "in_log",
    ) -> None:
        super().__init__()
        if kind not in POOLER_KINDS:
            raise ValueError(f"unknown pooler '{kind}'; choose one of {', '.join(POOLER_KINDS)}")
        self.kind, self.output_size = kind, int(output_size)
        self.strides, self.sampling_ratio = [int(s) for s in strides], int(sampling_ratio)
        self.spp_levels = [int(v) for v in spp_levels]
        self.canonical_size, self.canonical_level = float(canonical_size), int(canonical_level)
        if level_eps not in ("in_log", "after_log"):
            raise ValueError(f"unknown level_eps {level_eps!r}; expected in_log or after_log")
        self.aligned, self.level_eps = aligned, level_eps
        self.min_level = int(math.log2(self.strides[0]))
        if len(self.strides) > 1 and self.strides != [
            2 ** (self.min_level + i) for i in range(len(self.strides))
        ]:
            raise ValueError(f"pyramid strides must be consecutive powers of 2: {self.strides}")

    def output_shape(self, channels: int) -> tuple[int, ...]:
        """The per-region output shape: ``(C, k, k)``, or ``(C * sum(l^2),)`` for ``spp``."""
        if self.kind == "spp":
            return (channels * sum(v * v for v in self.spp_levels),)
        return (channels, self.output_size, self.output_size)

    def assign_levels(self, rois: Tensor) -> Tensor:
        """``(K, 5)`` rois -> ``(K,)`` int64 index into the levels (FPN's eq. 1)."""
        x1, y1, x2, y2 = rois[:, 1:].unbind(1)
        size = ((x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)).sqrt()
        if self.level_eps == "after_log":
            k = torch.floor(self.canonical_level + torch.log2(size / self.canonical_size) + 1e-6)
        else:
            k = torch.floor(self.canonical_level + torch.log2(size / self.canonical_size + 1e-6))
        k = torch.nan_to_num(
            k, nan=float(self.min_level)
        )  # a NaN box (a diverged model): any level
        return (k - self.min_level).clamp(0, len(self.strides) - 1).long()

    def _pool(self, features: Tensor, rois: Tensor, stride: int) -> Tensor:
        scale = 1.0 / stride
        if self.kind != "spp":  # on the CPU's threads (cpu_parallel.py), torchvision's result
            return pool_rois(
                features, rois, self.kind, self.output_size, scale, self.sampling_ratio,
                self.aligned,
            )  # fmt: skip
        pooled = [pool_rois(features, rois, "roi_pool", v, scale) for v in self.spp_levels]
        return torch.cat([p.flatten(1) for p in pooled], 1)

    def forward(self, features: Sequence[Tensor], rois: Tensor) -> Tensor:
        """Pool.

        Args:
            features: per level ``(N, C, H_l, W_l)`` float maps (one for a single level).
            rois: ``(R, 5)`` float ``(image index, x1, y1, x2, y2)`` in input pixels
                (:func:`boxes_to_rois`).

        Returns:
            ``(R, C, k, k)`` float32, or ``(R, C * sum(l^2))`` for ``spp``, in the order of
            ``rois``. Pooling runs in float32 (half-precision box coordinates would be off by
            pixels).
        """
        # float32 NCHW in one copy (torchvision's CPU kernels read NCHW: a bfloat16 NHWC map
        # under autocast would otherwise be converted twice)
        feats = [f.to(torch.float32, memory_format=torch.contiguous_format) for f in features]
        if len(feats) != len(self.strides):
            raise ValueError(f"{len(feats)} feature maps for {len(self.strides)} pooler levels")
        rois = rois.float()
        if len(feats) == 1:
            return self._pool(feats[0], rois, self.strides[0])
        levels = self.assign_levels(rois)
        # every RoI is assigned one level, so every row is written: no zero fill (a memset of
        # R x C x k x k floats, ~5 % of Faster R-CNN's test time on CPU)
        out = feats[0].new_empty(rois.shape[0], *self.output_shape(feats[0].shape[1]))
        for i, (f, stride) in enumerate(zip(feats, self.strides, strict=True)):
            idx = torch.nonzero(levels == i).squeeze(1)  # may be empty: pooling none is fine
            out[idx] = self._pool(f, rois[idx], stride)
        return out


def boxes_to_rois(boxes: Sequence[Tensor]) -> Tensor:
    """Per image ``(K_i, 4)`` xyxy boxes -> ``(sum K_i, 5)`` float32 ``(image index, x1, y1, x2,
    y2)``, in image order: the RoI layout of ``torchvision.ops``."""
    flat = torch.cat([b.float().reshape(-1, 4) for b in boxes])
    image = torch.repeat_interleave(
        torch.arange(len(boxes), device=flat.device),
        torch.tensor([len(b) for b in boxes], device=flat.device),
    )
    return torch.cat([image[:, None].float(), flat], 1)
