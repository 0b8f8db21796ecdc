"""Prediction layers: the last layer of a detection head, computed in float32 under autocast.

Under bfloat16 autocast a head's last layer would round its outputs to 8 significant bits:
objectness and class scores then tie by the thousand (the RPN's top-k and NMS order ties
arbitrarily) and box deltas lose sub-pixel precision, while the layer itself (a 1x1 conv or a
small linear layer on few inputs) costs next to nothing in float32. These subclasses keep
``nn.Linear``'s and ``nn.Conv2d``'s parameters and state-dict keys (checkpoints and
torchvision's key maps are unchanged); without autocast they are those layers, bit for bit.
Under autocast they compute in their parameters' dtype (float32; a model cast to bfloat16 as a
whole keeps computing in bfloat16).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def _autocast_on(x: Tensor) -> bool:
    device = x.device.type  # "meta" (shape-only runs) has no autocast
    return torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)


def prediction_input(x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``x`` cast to ``dtype`` under autocast, else as it is: for sibling prediction layers that
    share an input (the RPN's objectness and deltas), one cast instead of one per layer."""
    return x.to(dtype) if _autocast_on(x) else x


def in_float32(
    forward: Callable[[Tensor], Tensor], x: Tensor, dtype: torch.dtype = torch.float32
) -> Tensor:
    """``forward(x)``; under autocast on ``x``'s device, with autocast off and ``x`` cast to
    ``dtype`` (the layer's parameters' dtype: float32 unless the model was cast as a whole)."""
    if not _autocast_on(x):
        return forward(x)
    with torch.autocast(x.device.type, enabled=False):
        return forward(x.to(dtype))


class OutputLinear(nn.Linear):
    """``nn.Linear`` whose output is float32 under autocast: ``(..., in) -> (..., out)``."""

    def forward(self, x: Tensor) -> Tensor:
        return in_float32(super().forward, x, self.weight.dtype)


class OutputConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose output is float32 under autocast: ``(N, C, H, W) -> (N, C', H', W')``."""

    def forward(self, x: Tensor) -> Tensor:
        return in_float32(super().forward, x, self.weight.dtype)
