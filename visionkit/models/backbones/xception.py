"""Xception (Chollet, 2017): depthwise-separable convolutions with residual connections."""

from __future__ import annotations

from torch import Tensor, nn

from visionkit.models.backbones.base import Backbone


class SeparableConv(nn.Sequential):
    """3x3 depthwise conv then 1x1 pointwise conv, no biases (BatchNorm follows)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
        )


class XceptionBlock(nn.Module):
    """``reps`` x (ReLU, separable conv, BN), an optional 3x3/2 max-pool, and a residual
    (1x1 strided conv + BN when the shape changes)."""

    def __init__(self, cin: int, cout: int, reps: int, stride: int, first_relu: bool = True,
                 grow_first: bool = True) -> None:  # fmt: skip
        super().__init__()
        widths = [cout] * reps if grow_first else [cin] * (reps - 1) + [cout]
        layers, c = [], cin
        for i, w in enumerate(widths):
            if i > 0 or first_relu:
                layers.append(nn.ReLU(inplace=i > 0))
            layers += [SeparableConv(c, w), nn.BatchNorm2d(w)]
            c = w
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.body = nn.Sequential(*layers)
        self.skip = None
        if cout != cin or stride != 1:
            self.skip = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + (x if self.skip is None else self.skip(x))


def xception() -> Backbone:
    """Levels: ``entry1`` (128, 4), ``entry2`` (256, 8), ``middle`` (728, 16: the third entry
    block and the 8 middle-flow blocks), ``exit`` (2048, 32). 20.8M parameters (the paper's 22.9M
    include the 2048x1000 classifier)."""
    stem = nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
    )  # fmt: skip
    middle = [XceptionBlock(256, 728, 2, 2)] + [XceptionBlock(728, 728, 3, 1) for _ in range(8)]
    exit_flow = nn.Sequential(
        XceptionBlock(728, 1024, 2, 2, grow_first=False),
        SeparableConv(1024, 1536), nn.BatchNorm2d(1536), nn.ReLU(inplace=True),
        SeparableConv(1536, 2048), nn.BatchNorm2d(2048), nn.ReLU(inplace=True),
    )  # fmt: skip
    return Backbone([
        ("entry1", nn.Sequential(stem, XceptionBlock(64, 128, 2, 2, first_relu=False)), 128, 4),
        ("entry2", XceptionBlock(128, 256, 2, 2), 256, 8),
        ("middle", nn.Sequential(*middle), 728, 16),
        ("exit", exit_flow, 2048, 32),
    ])  # fmt: skip
