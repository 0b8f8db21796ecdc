"""Prediction layers: the last layer of a detection head, computed in float32 under autocast.

Under bfloat16 autocast a head's last layer would round its outputs to 8 significant bits:
objectness and class scores then tie by the thousand (the RPN's top-k and NMS order ties
arbitrarily) and box deltas lose sub-pixel precision, while the layer itself (a 1x1 conv or a
small linear layer on few inputs) costs next to nothing in float32. These subclasses keep
``nn.Linear``'s and ``nn.Conv2d``'s parameters and state-dict keys (checkpoints and
torchvision's key maps are unchanged); without autocast they are those layers, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def _float32(forward: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``forward(x)`` in float32 when autocast is on for ``x``'s device, else as is."""
    device = x.device.type  # "meta" (shape-only runs) has no autocast
    if not (torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)):
        return forward(x)
    with torch.autocast(device, enabled=False):
        return forward(x.float())


class OutputLinear(nn.Linear):
    """``nn.Linear`` whose output is float32 under autocast: ``(..., in) -> (..., out)``."""

    def forward(self, x: Tensor) -> Tensor:
        return _float32(super().forward, x)


class OutputConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose output is float32 under autocast: ``(N, C, H, W) -> (N, C', H', W')``."""

    def forward(self, x: Tensor) -> Tensor:
        return _float32(super().forward, x)
