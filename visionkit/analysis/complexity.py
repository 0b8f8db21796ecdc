"""Parameters and multiply-accumulates (MACs) of every leaf layer, counted by forward hooks.

The model runs once on the meta device: a copy whose parameters and buffers are meta tensors
(shapes without storage), so nothing is computed or allocated and the model itself is untouched.
A hook on every leaf module (one without children) records each call's output shape and MACs:

- ``Conv1d/2d/3d``: output elements x ``in_channels / groups`` x kernel elements. Stride,
  padding and dilation enter through the output size (dilation only spaces the taps).
- ``ConvTranspose1d/2d/3d``: input elements x ``out_channels / groups`` x kernel elements (each
  input pixel is scattered through the kernel).
- ``Linear``: output elements x ``in_features``.
- Normalization (``BatchNorm``, ``GroupNorm``, ``LayerNorm``, ``InstanceNorm``): one per output
  element, the affine ``x * scale + shift`` it amounts to at inference (0 once folded into the
  preceding convolution).
- Pooling (max, average, adaptive), activations, dropout, upsampling, reshapes: 0; they compare
  or add, they do not multiply-accumulate.

Bias additions are not counted. Operations outside modules (residual additions, ``F.interpolate``,
RoI pooling calls) are not seen by the hooks and count 0. FLOPs are about twice the MACs.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from visionkit.analysis.paths import default_rois, network_input, run_for_summary

NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass
class LayerStats:
    """One call of one leaf layer; ``output_shape`` is None for a layer with parameters that the
    forward never ran.

    ``params`` are the layer's own parameters, given on its first call only (0 on later calls
    of a shared layer), so that the column sums to the model's parameters in leaf layers.
    """

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    params: int
    macs: int


@dataclass
class ModelStats:
    """A model's layers and totals (parameters counted once each, whether they ran or not)."""

    input_shape: tuple[int, ...]
    layers: list[LayerStats] = field(default_factory=list)
    params: int = 0
    trainable_params: int = 0
    macs: int = 0
    idle_params: int = 0  # parameters of layers the forward never ran
    rois: int | None = None  # regions the per-RoI layers ran on (two-stage detectors, R-CNN)


def layer_macs(module: nn.Module, inputs: Sequence[Any], output: Any) -> int:
    """Multiply-accumulates of one call of a leaf ``module`` (the rules in the module doc)."""
    out = _first_tensor(output)
    if out is None:
        return 0
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        x = _first_tensor(inputs)
        per_input = module.out_channels // module.groups * math.prod(module.kernel_size)
        return 0 if x is None else x.numel() * per_input
    if isinstance(module, nn.modules.conv._ConvNd):
        per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        return out.numel() * per_output
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    if isinstance(module, NORMS):
        return out.numel()
    return 0


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (list, tuple)):
        return next((t for v in value if (t := _first_tensor(v)) is not None), None)
    if isinstance(value, dict):
        return _first_tensor(list(value.values()))
    return None


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` (in eval mode) whose parameters and buffers are meta tensors of
    the same shapes; the originals' storage is never copied."""
    memo: dict[int, Any] = {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        empty = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(empty, t.requires_grad) if isinstance(t, nn.Parameter) else empty
    return copy.deepcopy(model, memo).eval()


def profile(
    model: nn.Module, run: Callable[[nn.Module], Any], input_shape: Sequence[int]
) -> ModelStats:
    """Count ``model``'s parameters and the MACs of ``run(copy)`` on a :func:`meta_copy`.

    Args:
        model: the model (any device; only its shapes are read).
        run: calls the copy on meta-device inputs.
        input_shape: recorded in the result.

    Returns:
        One :class:`LayerStats` per leaf call in call order, then one per leaf with parameters
        that never ran (shape None, 0 MACs); totals over all of ``model``'s parameters.
    """
    clone = meta_copy(model)
    layers: list[LayerStats] = []
    seen: set[str] = set()

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            out = _first_tensor(output)
            params = 0 if name in seen else _own_params(module)
            seen.add(name)
            shape = None if out is None else tuple(out.shape)
            layers.append(
                LayerStats(
                    name, type(module).__name__, shape, params, layer_macs(module, inputs, output)
                )
            )

        return record

    leaves = [(n, m) for n, m in clone.named_modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook(n)) for n, m in leaves]
    try:
        with torch.no_grad():
            run(clone)
    finally:
        for h in handles:
            h.remove()
    idle = [
        LayerStats(n, type(m).__name__, None, _own_params(m), 0)
        for n, m in leaves
        if n not in seen and _own_params(m)
    ]
    params = list(model.parameters())
    return ModelStats(
        input_shape=tuple(input_shape),
        layers=layers + idle,
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        macs=sum(layer.macs for layer in layers),
        idle_params=sum(layer.params for layer in idle),
    )


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def summarize(
    model: nn.Module, input_size: Sequence[int], num_rois: int | None = None
) -> ModelStats:
    """Per-layer statistics of ``model`` on one ``input_size`` ``(height, width)`` image.

    visionkit's models run their test-time network path (``paths.run_for_summary``): the image
    goes through the model's own resizing and padding first; two-stage detectors and R-CNN run
    their per-region layers on ``num_rois`` regions (default: the model's test-time proposal
    count, :func:`~visionkit.analysis.paths.default_rois`; other models ignore it). Any other
    module (a backbone, a classifier) is called on a ``(1, 3, height, width)`` batch.
    """
    rois = default_rois(model)
    if rois is not None and num_rois is not None:
        rois = num_rois
    shape = network_input(model, input_size, rois or 0)
    stats = profile(model, lambda clone: run_for_summary(clone, shape, rois or 0), shape)
    stats.rois = rois
    return stats


def count_params_and_macs(
    model: nn.Module, input_size: Sequence[int], num_rois: int | None = None
) -> tuple[int, int]:
    """``(parameters, MACs)`` of ``model`` on one ``input_size`` ``(height, width)`` image
    (:func:`summarize`'s totals)."""
    stats = summarize(model, input_size, num_rois)
    return stats.params, stats.macs
