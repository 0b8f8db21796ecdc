"""Where a backbone level's pixels sit in the input image (Caffe's ``coord_map``, used by FCN's
crops): pixel ``j`` of a level is centred on input coordinate ``stride * j + offset``; and the
smallest input a network runs on (:func:`min_input_side`)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from visionkit.models.backbones.base import Backbone

GEOMETRIC = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


def _layers(module: nn.Module) -> Iterator[nn.Module | None]:
    """Leaf layers in order through nested ``nn.Sequential``; ``None`` at a branching block."""
    if isinstance(module, nn.Sequential):
        for child in module:
            yield from _layers(child)
    elif next(module.children(), None) is not None:
        yield None
    else:
        yield module


def _first(v: int | tuple[int, ...]) -> int:
    return v if isinstance(v, int) else v[0]


def level_geometry(backbone: Backbone) -> dict[str, tuple[int, float]]:
    """Per level ``(stride, offset)`` in input pixels, the same along both axes.

    Convolutions and pools move the offset by ``stride_in * (dilation * (kernel - 1) / 2 -
    padding)``; element-wise layers change nothing. From a stage's first branching block
    (residual, dense, inception) to its end the offset is kept and the stride is the declared
    one: exact for ResNet (its strided 3x3 convs and 1x1 shortcuts keep centres), within a pixel
    for the others.
    """
    stride, offset, out = 1, 0.0, {}
    for name, stage in backbone.stages.items():
        for layer in _layers(stage):
            if layer is None:
                break
            if isinstance(layer, GEOMETRIC):
                k, s, p = (_first(layer.kernel_size), _first(layer.stride), _first(layer.padding))
                d = _first(getattr(layer, "dilation", 1))
                offset += stride * (d * (k - 1) / 2 - p)
                stride *= s
        stride = backbone.levels[name][1]
        out[name] = (stride, offset)
    return out


def runs_at(net: nn.Module, side: int) -> bool:
    """Whether ``net`` (a backbone, or a model whose ``forward`` takes a normalized batch) runs on
    a ``(1, 3, side, side)`` input: a shape-only forward on the ``meta`` device (no memory, no
    arithmetic; the parameters are not touched), in eval mode."""
    state = {k: v.to("meta") for k, v in net.state_dict(keep_vars=True).items()}
    was_training = net.training
    net.eval()
    try:
        torch.func.functional_call(net, state, (torch.empty(1, 3, side, side, device="meta"),))
    except (RuntimeError, ValueError):  # "Output size is too small", "Kernel size can't be ..."
        return False
    finally:
        net.train(was_training)
    return True


def min_input_side(net: nn.Module, stride: int, limit: int) -> int:
    """The smallest input side (px, both axes: every layer here treats them alike) at which
    ``net`` runs and its deepest level used, of ``stride``, has at least one pixel: ``stride``,
    or more where a layer needs a larger map (AlexNet's valid convolutions and pools, FCN's valid
    7 x 7 fc6). ``limit + 1`` when it does not run at ``limit``."""
    if runs_at(net, stride):
        return stride
    lo, hi = stride, limit + 1  # runs_at(lo) is False; hi: the answer when nothing runs
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if runs_at(net, mid) else (mid, hi)
    return hi
