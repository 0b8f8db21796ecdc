"""Receptive fields, computed analytically from the layers' kernels, strides, paddings and
dilations (no forward pass, no gradients).

A feature map's geometry along one axis is a :class:`Field`: its pixel ``i`` sees input pixels
``jump * i + start`` to ``jump * i + end`` (inclusive). A convolution or pooling of kernel ``k``,
stride ``s``, padding ``p`` and dilation ``d`` maps ``(jump, start, end)`` to ``(jump * s,
start - jump * p, end + jump * (d * (k - 1) - p))``; element-wise layers keep it. The receptive
field is ``end - start + 1`` (padding included: the theoretical field, not the part of it inside
the image); its centre ``(start + end) / 2`` is ``geometry.py``'s offset.

Sequential stacks are walked layer by layer. Blocks that branch and merge (residual additions,
Inception and DenseNet concatenations) are traced with ``torch.fx``: every tensor of the graph
carries its field, and a merge takes the union of its inputs' fields (they must share a stride),
so a block's field is that of its widest path. Layers that resample (transposed convolutions,
upsampling, adaptive pooling) have no single field here and raise :class:`UnsupportedLayer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import fx, nn

from visionkit.models.backbones.base import Backbone

WINDOWED = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)
RESAMPLING = (
    nn.modules.conv._ConvTransposeNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
    nn.modules.pooling._MaxUnpoolNd,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
    nn.Upsample,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.Unfold,
    nn.Fold,
)
SPATIAL_FUNCTIONS = {
    F.conv1d, F.conv2d, F.conv_transpose1d, F.conv_transpose2d, F.max_pool1d, F.max_pool2d,
    F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.interpolate, F.pixel_shuffle, F.unfold,
    F.fold, F.pad,
}  # fmt: skip


class UnsupportedLayer(ValueError):
    """A layer whose effect on the field is not a fixed window (or branches that disagree)."""


@dataclass(frozen=True)
class Field:
    """Pixel ``i`` of a map sees input pixels ``jump * i + start`` .. ``jump * i + end``."""

    jump: int = 1
    start: int = 0
    end: int = 0

    @property
    def size(self) -> int:
        """The receptive field in input pixels."""
        return self.end - self.start + 1

    @property
    def centre(self) -> float:
        """Input coordinate of the centre of pixel 0's field (``geometry.py``'s offset)."""
        return (self.start + self.end) / 2

    def window(self, kernel: int, stride: int, padding: int, dilation: int = 1) -> Field:
        """The field after a convolution or pooling window."""
        j = self.jump
        return Field(
            j * stride, self.start - j * padding, self.end + j * (dilation * (kernel - 1) - padding)
        )

    def union(self, other: Field) -> Field:
        """The field of a merge (sum, concatenation) of two maps of the same stride."""
        if other.jump != self.jump:
            raise UnsupportedLayer(f"merging maps of strides {self.jump} and {other.jump}")
        return Field(self.jump, min(self.start, other.start), max(self.end, other.end))


def _axis(value: int | tuple[int, ...], axis: int) -> int:
    if isinstance(value, int):
        return value
    return value[min(axis, len(value) - 1)]


def _through_layer(layer: nn.Module, field: Field, axis: int) -> Field:
    """The field after one of PyTorch's own layers (fx's leaf modules): a window for
    convolutions and poolings, an error for resampling layers, unchanged for the others."""
    if isinstance(layer, RESAMPLING):
        raise UnsupportedLayer(f"{type(layer).__name__} resamples its input")
    if isinstance(layer, WINDOWED):
        if isinstance(layer.padding, str):
            raise UnsupportedLayer(f"{type(layer).__name__} with padding='{layer.padding}'")
        return field.window(
            _axis(layer.kernel_size, axis),
            _axis(layer.stride, axis),
            _axis(layer.padding, axis),
            _axis(getattr(layer, "dilation", 1), axis),
        )
    return field


def _fields_in(args: Any, fields: dict[fx.Node, Field]) -> list[Field]:
    found: list[Field] = []
    fx.node.map_arg(args, lambda n: found.append(fields[n]) if n in fields else None)
    return found


def _through_graph(module: nn.Module, field: Field, axis: int) -> Field:
    """Trace ``module`` with fx and carry ``field`` from its input to its output: PyTorch's
    layers by :func:`_through_layer`, spatial functions (``F.conv2d``, ``F.max_pool2d``,
    ``F.interpolate``, ...) raise, any other function or method is element-wise and merges the
    fields of its tensor inputs (a residual sum, a concatenation; one input passes through)."""
    graph = fx.symbolic_trace(module).graph
    fields: dict[fx.Node, Field] = {}
    out = field
    for node in graph.nodes:
        inputs = _fields_in((node.args, node.kwargs), fields)
        if node.op == "placeholder":
            fields[node] = field
        elif not inputs:
            continue
        elif node.op == "call_module":
            fields[node] = _through_layer(module.get_submodule(node.target), _union(inputs), axis)
        elif node.target in SPATIAL_FUNCTIONS:
            raise UnsupportedLayer(f"functional {getattr(node.target, '__name__', node.target)}")
        elif node.op == "output":
            out = _union(inputs)
        else:
            fields[node] = _union(inputs)
    return out


def _union(fields: list[Field]) -> Field:
    out = fields[0]
    for f in fields[1:]:
        out = out.union(f)
    return out


def receptive_field(module: nn.Module, field: Field | None = None, axis: int = 0) -> Field:
    """The :class:`Field` of ``module``'s output along ``axis`` (0: height, 1: width).

    Args:
        module: one of PyTorch's layers, an ``nn.Sequential``, or any fx-traceable module with
            one input map.
        field: the geometry of its input (default: the image itself).
        axis: the index into the layers' kernel, stride, padding and dilation tuples (2-d
            layers: 0 height, 1 width).

    Raises:
        UnsupportedLayer: a resampling layer, or branches of different strides.
    """
    field = field or Field()
    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
        for child in module:
            field = receptive_field(child, field, axis)
        return field
    if fx.Tracer().is_leaf_module(module, ""):
        return _through_layer(module, field, axis)
    return _through_graph(module, field, axis)


def level_fields(backbone: Backbone, axis: int = 0) -> dict[str, Field | None]:
    """Per backbone level, the field of its pixels along ``axis``; None from the first stage
    whose field cannot be computed (see :func:`receptive_field`) on."""
    field: Field | None = Field()
    out: dict[str, Field | None] = {}
    for name, stage in backbone.stages.items():
        if field is not None:
            try:
                field = receptive_field(stage, field, axis)
            except (UnsupportedLayer, fx.proxy.TraceError):
                field = None
        out[name] = field
    return out
