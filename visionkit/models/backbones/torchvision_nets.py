"""Backbones cut from torchvision's classification networks (same layers, same parameters).

Each factory builds the torchvision model without weights, loads ``state_dict`` into the full
model when one is given (a torchvision checkpoint; its classifier keys are ignored), then cuts
the trunk into stages. Feature strides assume inputs divisible by 32.
"""

from __future__ import annotations

from typing import Any

import torchvision
from torch import nn

from visionkit.errors import CheckpointError, ConfigError
from visionkit.models.backbones.base import Backbone

CLASSIFIER_PREFIXES = ("fc.", "classifier.", "aux1.", "aux2.", "avgpool.")


def load_trunk_weights(model: nn.Module, state_dict: dict[str, Any] | None, name: str) -> None:
    """Load a torchvision state_dict into ``model``, ignoring classifier keys; errors in one line."""
    if state_dict is None:
        return
    state = {k: v for k, v in state_dict.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(CLASSIFIER_PREFIXES)}
    missing = [k for k in own if k not in state]
    if missing:
        raise CheckpointError(
            f"weights for {name} lack {len(missing)} tensors (e.g. '{missing[0]}')"
        )
    shapes = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if shapes:
        raise CheckpointError(f"weights for {name} have another shape for '{shapes[0]}'")
    model.load_state_dict(state, strict=False)


def vgg(name: str, state_dict: dict[str, Any] | None = None) -> Backbone:
    """VGG-11/16 without BN: ``pool1..pool4`` (strides 2-16), ``conv5`` (conv5_3 + ReLU, stride
    16, Faster R-CNN's feature) and ``pool5`` (stride 32)."""
    model = getattr(torchvision.models, name)(weights=None)
    load_trunk_weights(model, state_dict, name)
    f = model.features
    p = [i for i, m in enumerate(f) if isinstance(m, nn.MaxPool2d)]
    return Backbone([
        ("pool1", f[: p[0] + 1], 64, 2),
        ("pool2", f[p[0] + 1 : p[1] + 1], 128, 4),
        ("pool3", f[p[1] + 1 : p[2] + 1], 256, 8),
        ("pool4", f[p[2] + 1 : p[3] + 1], 512, 16),
        ("conv5", f[p[3] + 1 : p[4]], 512, 16),
        ("pool5", f[p[4]], 512, 32),
    ])  # fmt: skip


def alexnet(state_dict: dict[str, Any] | None = None) -> Backbone:
    """AlexNet (torchvision's single-GPU variant: 64 conv1 filters). Its valid 11x11/4 conv and
    3x3/2 pools make each level one or two pixels smaller than input/stride."""
    model = torchvision.models.alexnet(weights=None)
    load_trunk_weights(model, state_dict, "alexnet")
    f = model.features
    return Backbone([
        ("conv1", nn.Sequential(*f[0:3]), 64, 8),  # conv 11x11/4, ReLU, max-pool 3x3/2
        ("conv2", nn.Sequential(*f[3:6]), 192, 16),  # conv 5x5, ReLU, max-pool
        ("conv5", nn.Sequential(*f[6:12]), 256, 16),  # conv3, conv4, conv5 (+ ReLUs)
        ("pool5", f[12], 256, 32),
    ])  # fmt: skip


def resnet(name: str, state_dict: dict[str, Any] | None = None) -> Backbone:
    """ResNet-18/34/50/101: ``res2..res5`` at strides 4, 8, 16, 32."""
    model = getattr(torchvision.models, name)(weights=None)
    load_trunk_weights(model, state_dict, name)
    widths = [64, 128, 256, 512] if name in ("resnet18", "resnet34") else [256, 512, 1024, 2048]
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1)
    return Backbone([
        ("res2", stem, widths[0], 4),
        ("res3", model.layer2, widths[1], 8),
        ("res4", model.layer3, widths[2], 16),
        ("res5", model.layer4, widths[3], 32),
    ])  # fmt: skip


def densenet121(state_dict: dict[str, Any] | None = None) -> Backbone:
    """DenseNet-121: ``block1..block4`` at strides 4, 8, 16, 32 (block4 after norm5 + ReLU)."""
    model = torchvision.models.densenet121(weights=None)
    load_trunk_weights(model, state_dict, "densenet121")
    f = model.features
    return Backbone([
        ("block1", nn.Sequential(f.conv0, f.norm0, f.relu0, f.pool0, f.denseblock1), 256, 4),
        ("block2", nn.Sequential(f.transition1, f.denseblock2), 512, 8),
        ("block3", nn.Sequential(f.transition2, f.denseblock3), 1024, 16),
        ("block4", nn.Sequential(f.transition3, f.denseblock4, f.norm5, nn.ReLU()), 1024, 32),
    ])  # fmt: skip


def googlenet(state_dict: dict[str, Any] | None = None) -> Backbone:
    """GoogLeNet (Inception v1): ``conv3`` (stride 4), ``inception3/4/5`` (strides 8, 16, 32)."""
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    load_trunk_weights(model, state_dict, "googlenet")
    m = model
    return Backbone([
        ("conv3", nn.Sequential(m.conv1, m.maxpool1, m.conv2, m.conv3), 192, 4),
        ("inception3", nn.Sequential(m.maxpool2, m.inception3a, m.inception3b), 480, 8),
        ("inception4", nn.Sequential(m.maxpool3, m.inception4a, m.inception4b, m.inception4c,
                                     m.inception4d, m.inception4e), 832, 16),
        ("inception5", nn.Sequential(m.maxpool4, m.inception5a, m.inception5b), 1024, 32),
    ])  # fmt: skip


def dilate_resnet(backbone: Backbone, output_stride: int) -> None:
    """torchvision's ``replace_stride_with_dilation`` on a built ResNet backbone: ``res5`` (output
    stride 16), or ``res4`` and ``res5`` (8), keep the resolution of the level before them and
    dilate their 3x3 convs instead (2, then 4; a stage's first block keeps the previous rate)."""
    if output_stride not in (8, 16, 32):
        raise ConfigError(f"model.backbone.output_stride must be 8, 16 or 32; got {output_stride}")
    names = {8: ["res4", "res5"], 16: ["res5"], 32: []}[output_stride]
    if names and not all(n in backbone.stages for n in ("res4", "res5")):
        raise ConfigError("model.backbone.output_stride < 32 needs a ResNet backbone")
    rate = 1
    for name in names:
        previous, rate = rate, rate * 2
        for i, block in enumerate(backbone.stages[name]):
            d = previous if i == 0 else rate
            for conv in block.modules():
                if isinstance(conv, nn.Conv2d):
                    conv.stride = (1, 1)
                    if conv.kernel_size == (3, 3):
                        conv.dilation, conv.padding = (d, d), (d, d)
        backbone.levels[name] = (backbone.levels[name][0], output_stride)
