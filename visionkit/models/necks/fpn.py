"""Feature Pyramid Network (Lin et al., 2017): a top-down pathway with lateral connections.

Each backbone level ``C_l`` gets a 1x1 lateral conv to ``out_channels``; from the coarsest level
down, the running map is upsampled x2 (nearest) and added to the next lateral; a 3x3 conv then
smooths each sum into ``P_l``. ``P6`` (optional) is ``P5`` subsampled by a stride-2 max pooling
(kernel 1), as in the paper, where it serves the RPN's largest anchors only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class FPN(nn.Module):
    """Backbone levels (fine to coarse) -> pyramid levels of equal width.

    Args:
        in_channels: per input level, its channels (fine to coarse).
        in_strides: per input level, its stride (each twice the previous).
        out_channels: width of every output level (paper: 256).
        extra_pool: append ``P6``, a stride-2 subsampling of the coarsest output.

    Attributes:
        strides: per output level, its stride (``in_strides`` plus ``2 * in_strides[-1]``).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        out_channels: int = 256,
        extra_pool: bool = True,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(in_strides):
            raise ValueError(f"{len(in_channels)} channel counts for {len(in_strides)} strides")
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels
        )
        for conv in [*self.lateral, *self.output]:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)
        self.extra_pool = extra_pool
        self.strides = [int(s) for s in in_strides] + (
            [2 * int(in_strides[-1])] if extra_pool else []
        )
        self.out_channels = out_channels

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Per input level ``(N, C_l, H_l, W_l)`` -> per output level ``(N, out_channels, H, W)``."""
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            top = F.interpolate(merged[0], size=lateral.shape[-2:], mode="nearest")
            merged.insert(0, lateral + top)
        out = [conv(m) for conv, m in zip(self.output, merged, strict=True)]
        if self.extra_pool:
            out.append(F.max_pool2d(out[-1], kernel_size=1, stride=2))
        return out
