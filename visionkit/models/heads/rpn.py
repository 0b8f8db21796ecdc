"""The Region Proposal Network's head (Ren et al., 2015): objectness and box deltas for every
anchor position, the layers of :class:`~visionkit.models.proposers.rpn.RegionProposalNetwork`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.models.heads.outputs import OutputConv2d, prediction_input


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then 1x1 convs to ``A`` logits and ``4A`` deltas per position.

    Args:
        in_channels: channels of the feature level(s). conv_channels: the 3x3 conv's width.
        num_anchors: A, anchors per position (the same on every level).
    """

    def __init__(self, in_channels: int, conv_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, conv_channels, 3, padding=1)
        self.objectness = OutputConv2d(conv_channels, num_anchors, 1)
        self.deltas = OutputConv2d(conv_channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level ``(N, C, H, W)`` -> logits ``(N, A, H, W)`` and deltas ``(N, 4A, H, W)``
        (float32 under autocast)."""
        logits, deltas = [], []
        for f in features:
            # float32 once for both prediction layers under autocast (outputs.py)
            t = prediction_input(F.relu(self.conv(f)), self.objectness.weight.dtype)
            logits.append(self.objectness(t))
            deltas.append(self.deltas(t))
        return logits, deltas
