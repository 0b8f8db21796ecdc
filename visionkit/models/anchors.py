"""Anchors: reference boxes of several sizes and aspect ratios at every feature-map position.

Convention: the anchors of the cell ``(i, j)`` of a level of stride ``s`` are centred at
``((j + 0.5) * s, (i + 0.5) * s)`` in input pixels, the centre of the ``s x s`` patch the cell
covers (the original Faster R-CNN code's centre, ``7.5 + 16 j`` in 1-based inclusive pixels;
torchvision centres them at ``j * s``). Sizes are not rounded: an anchor of size ``a`` and ratio
``r = h / w`` has ``w = a / sqrt(r)``, ``h = a * sqrt(r)`` and area ``a^2``.

``layout="torchvision"`` reproduces torchvision's ``AnchorGenerator`` instead: corners rounded to
whole pixels, cell ``(i, j)`` at ``(j * s_x, i * s_y)``, where a level's strides are the padded
batch's sides (level 0's sides times its stride) integer-divided by the level's sides (so a P6
of 13 rows under an 800-row batch has ``s_y = 61``, not 64).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class AnchorGenerator(nn.Module):
    """Anchors for one or more feature levels.

    Args:
        sizes: per level, the square roots of the anchor areas in input pixels (paper, one level:
            ``[[128, 256, 512]]``).
        aspect_ratios: ``h / w`` ratios shared by every level (paper: ``[0.5, 1, 2]``).
        strides: per level, the stride in input pixels (paper: ``[16]``).
        layout: ``centered`` (this module's convention) or ``torchvision`` (see the module).

    Attributes:
        num_anchors: per level, ``A = len(sizes[l]) * len(aspect_ratios)`` anchors per position.
    """

    def __init__(
        self,
        sizes: Sequence[Sequence[float]] = ((128.0, 256.0, 512.0),),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        strides: Sequence[int] = (16,),
        layout: str = "centered",
    ) -> None:
        super().__init__()
        if len(sizes) != len(strides):
            raise ValueError(f"{len(sizes)} anchor size lists for {len(strides)} feature levels")
        if layout not in ("centered", "torchvision"):
            raise ValueError(f"unknown anchor layout {layout!r}; expected centered or torchvision")
        self.strides, self.layout = [int(s) for s in strides], layout
        self.cell_anchors = [self._cell_anchors(s, aspect_ratios, layout) for s in sizes]
        self.num_anchors = [len(c) for c in self.cell_anchors]
        # grids by (level, H, W, device, batch shape): the same every step at a fixed input size
        self._grids: dict[tuple, Tensor] = {}

    @staticmethod
    def _cell_anchors(sizes: Sequence[float], ratios: Sequence[float], layout: str) -> Tensor:
        """``(A, 4)`` float32 xyxy anchors centred at 0, ratio-major then size (rounded to
        whole pixels, computed as torchvision does, in the ``torchvision`` layout)."""
        r = torch.tensor(ratios, dtype=torch.float32).sqrt()[:, None]
        a = torch.tensor(sizes, dtype=torch.float32)[None, :]
        if layout == "torchvision":
            w, h = (1 / r * a).reshape(-1), (r * a).reshape(-1)
            return (torch.stack([-w, -h, w, h], 1) / 2).round()
        w, h = (a / r).reshape(-1), (a * r).reshape(-1)
        return torch.stack([-w, -h, w, h], 1) / 2

    def grid_anchors(
        self,
        level: int,
        height: int,
        width: int,
        device: torch.device,
        batch_shape: tuple[int, int] | None = None,
    ) -> Tensor:
        """``(height * width * A, 4)`` float32 xyxy anchors of one level, position-major
        (row, column, then anchor), the order of a ``(N, A*k, H, W)`` head output permuted to
        ``(N, H, W, A, k)``. ``batch_shape``: the padded batch's ``(H, W)``, which sets the
        strides of the ``torchvision`` layout."""
        if self.layout == "torchvision" and batch_shape is not None:
            sy, sx = batch_shape[0] // height, batch_shape[1] // width
            ys = torch.arange(height, device=device, dtype=torch.float32) * sy
            xs = torch.arange(width, device=device, dtype=torch.float32) * sx
        else:
            s = self.strides[level]
            ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * s
            xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * s
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        centres = torch.stack([cx, cy, cx, cy], -1).reshape(-1, 1, 4)
        return (centres + self.cell_anchors[level].to(device)).reshape(-1, 4)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Per level, ``(H_l * W_l * A_l, 4)`` anchors for features ``(N, C, H_l, W_l)``; the same
        for every image of the batch, computed once per feature-map size (cached; not while
        tracing). The returned tensors are shared: never modify them in place."""
        s = self.strides[0]
        batch_shape = (features[0].shape[-2] * s, features[0].shape[-1] * s)
        if torch.jit.is_tracing():  # sizes are graph values: computed in the graph
            return [
                self.grid_anchors(i, f.shape[-2], f.shape[-1], f.device, batch_shape)
                for i, f in enumerate(features)
            ]
        out = []
        for i, f in enumerate(features):
            key = (i, f.shape[-2], f.shape[-1], str(f.device), batch_shape)
            if key not in self._grids:
                if len(self._grids) >= 64:  # many input sizes (shorter-side resizing): bounded
                    self._grids.clear()
                self._grids[key] = self.grid_anchors(i, *key[1:3], f.device, batch_shape)
            out.append(self._grids[key])
        return out
