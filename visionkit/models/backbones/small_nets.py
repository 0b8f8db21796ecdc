"""Hand-written trunks: LeNet-style, and the YOLO papers' networks (with BatchNorm)."""

from __future__ import annotations

from torch import nn

from visionkit.models.backbones.base import Backbone, conv_bn_act


def lenet() -> Backbone:
    """LeNet-5-style: conv5x5-6, pool, conv5x5-16, pool (as LeNet-5), then a conv3x3-120 and a
    pool in place of its C5 layer so that it ends at stride 8. ReLU instead of tanh, 'same'
    padding so that strides are exact: ``c1`` (6, 2), ``c2`` (16, 4), ``c3`` (120, 8)."""
    return Backbone([
        ("c1", nn.Sequential(nn.Conv2d(3, 6, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(2)), 6, 2),
        ("c2", nn.Sequential(nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(2)), 16, 4),
        ("c3", nn.Sequential(nn.Conv2d(16, 120, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(2)), 120, 8),
    ])  # fmt: skip


def _seq(spec: list, cin: int) -> tuple[nn.Sequential, int]:
    """``spec`` items: ``(k, cout)`` a conv, ``(k, cout, stride)``, or ``"M"`` a 2x2 max-pool."""
    layers = []
    for item in spec:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        k, cout, *stride = item
        layers.append(conv_bn_act(cin, cout, k, stride[0] if stride else 1))
        cin = cout
    return nn.Sequential(*layers), cin


def yolo_darknet() -> Backbone:
    """YOLOv1's first 20 conv layers (the part pretrained on ImageNet), leaky ReLU 0.1, with
    BatchNorm after each conv (a deviation that lets it train from scratch).

    Levels: ``stage1`` (64, 4), ``stage2`` (192, 8), ``stage3`` (512, 16), ``stage4`` (1024, 32),
    ``stage5`` (1024, 32: the last two 1x1-512/3x3-1024 pairs)."""
    specs = [
        ("stage1", [(7, 64, 2), "M"], 4),
        ("stage2", [(3, 192), "M"], 8),
        ("stage3", [(1, 128), (3, 256), (1, 256), (3, 512), "M"], 16),
        ("stage4", [(1, 256), (3, 512)] * 4 + [(1, 512), (3, 1024), "M"], 32),
        ("stage5", [(1, 512), (3, 1024)] * 2, 32),
    ]
    stages, cin = [], 3
    for name, spec, stride in specs:
        module, cin = _seq(spec, cin)
        stages.append((name, module, cin, stride))
    return Backbone(stages)


def fast_yolo() -> Backbone:
    """Fast YOLO's trunk: 3x3 convs of 16..1024 filters, each of the first five followed by a 2x2
    max-pool (BatchNorm + leaky ReLU 0.1). ``stage1..stage5`` (16..256 at strides 2..32),
    ``stage6`` (512, 32) and ``stage7`` (1024, 32); the YOLO head adds the remaining layers."""
    stages, cin = [], 3
    for i, cout in enumerate([16, 32, 64, 128, 256, 512, 1024]):
        module, cin = _seq([(3, cout), "M"] if i < 5 else [(3, cout)], cin)
        stages.append((f"stage{i + 1}", module, cout, 2 ** min(i + 1, 5)))
    return Backbone(stages)
