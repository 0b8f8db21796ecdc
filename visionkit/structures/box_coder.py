"""Box regression deltas ``(dx, dy, dw, dh)`` between reference boxes and targets (R-CNN).

For a reference box of centre ``(x_a, y_a)`` and size ``(w_a, h_a)`` (``w = x2 - x1``) and a
target ``(x, y, w, h)``::

    dx = wx * (x - x_a) / w_a    dy = wy * (y - y_a) / h_a
    dw = ww * log(w / w_a)       dh = wh * log(h / h_a)

The weights ``(wx, wy, ww, wh)`` scale targets to unit-ish variance (RPN: 1, 1, 1, 1; the Fast
R-CNN head: 10, 10, 5, 5, i.e. py-faster-rcnn's target normalization by stds 0.1, 0.1, 0.2, 0.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)  # largest dw/dh applied when decoding


class BoxCoder:
    """Encode xyxy boxes as deltas to reference boxes and decode them back, vectorized.

    Args:
        weights: ``(wx, wy, ww, wh)`` multipliers of the deltas.
        scale_clamp: upper bound of ``dw / ww`` and ``dh / wh`` when decoding (keeps ``exp``
            finite for wild predictions).
    """

    def __init__(
        self,
        weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        scale_clamp: float = DEFAULT_SCALE_CLAMP,
    ) -> None:
        if len(weights) != 4:
            raise ValueError(f"box coder weights need 4 values, got {list(weights)}")
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def encode(self, reference: Tensor, target: Tensor) -> Tensor:
        """Deltas taking ``reference`` to ``target``.

        Args:
            reference, target: ``(..., 4)`` float xyxy boxes (same shape, positive sizes).

        Returns:
            ``(..., 4)`` float deltas ``(dx, dy, dw, dh)``.
        """
        wx, wy, ww, wh = self.weights
        rw, rh = reference[..., 2] - reference[..., 0], reference[..., 3] - reference[..., 1]
        rx, ry = reference[..., 0] + 0.5 * rw, reference[..., 1] + 0.5 * rh
        tw, th = target[..., 2] - target[..., 0], target[..., 3] - target[..., 1]
        tx, ty = target[..., 0] + 0.5 * tw, target[..., 1] + 0.5 * th
        return torch.stack(
            [
                wx * (tx - rx) / rw,
                wy * (ty - ry) / rh,
                ww * torch.log(tw / rw),
                wh * torch.log(th / rh),
            ],
            -1,
        )

    def decode(self, deltas: Tensor, reference: Tensor) -> Tensor:
        """Apply deltas to reference boxes.

        Args:
            deltas: ``(N, 4 * K)`` float deltas (K boxes per reference, e.g. one per class).
            reference: ``(N, 4)`` float xyxy boxes.

        Returns:
            ``(N, 4 * K)`` float xyxy boxes (``(N, 4)`` when K = 1), unclipped.
        """
        return self.decode_boxes(deltas, reference).flatten(1)

    def decode_boxes(self, deltas: Tensor, reference: Tensor) -> Tensor:
        """:meth:`decode` as ``(N, K, 4)`` boxes (no reshape of the result: an exported graph
        cannot reshape a tensor of ``N = 0`` rows into a size it infers)."""
        wx, wy, ww, wh = self.weights
        reference = reference.to(deltas.dtype)
        rw = (reference[:, 2] - reference[:, 0])[:, None]
        rh = (reference[:, 3] - reference[:, 1])[:, None]
        rx, ry = reference[:, 0, None] + 0.5 * rw, reference[:, 1, None] + 0.5 * rh
        dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.scale_clamp)
        cx, cy = dx * rw + rx, dy * rh + ry
        w, h = torch.exp(dw) * rw, torch.exp(dh) * rh
        return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)
