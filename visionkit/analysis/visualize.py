"""Seeing inside a network: its first-layer filters and its feature maps, as image grids.

Every grid is a ``uint8`` BGR array (OpenCV's order, ready for ``cv2.imwrite``): tiles of the
same size in rows, a 1-px white line between tiles and around them.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from visionkit.errors import ConfigError, VisionkitError
from visionkit.io.atomic import write_bytes
from visionkit.io.image import image_to_uint8, unit_float_to_uint8
from visionkit.models.backbones.base import Backbone
from visionkit.models.base import BaseModel

SEPARATOR = 255  # the grid lines' grey level
MAX_TILE = 4096  # px: the largest a filter or feature map is enlarged to
MAX_CHANNELS = 4096  # feature-map channels drawn per layer
MAX_GRID_PIXELS = 8192 * 8192  # a grid is at most this many pixels (192 MiB of BGR)
# modules with no feature map of their own: containers never called, a backbone's dict of levels
NO_MAP = (nn.ModuleDict, nn.ModuleList, Backbone)


def grid_shape(n: int, h: int, w: int, columns: int | None = None) -> tuple[int, int]:
    """``(height, width)`` px of the grid of ``n`` tiles of ``h x w`` px: ``columns`` (default
    ``ceil(sqrt(n))``) per row, 1-px separators.

    Raises:
        ConfigError: a grid above :data:`MAX_GRID_PIXELS`, before anything is allocated.
    """
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    gh, gw = rows * (h + 1) + 1, cols * (w + 1) + 1
    if gh * gw > MAX_GRID_PIXELS:
        raise ConfigError(
            f"a grid of {n} tiles of {h}x{w} px would be {gh}x{gw} px ({gh * gw * 3 / 2**30:.1f} "
            f"GiB); at most {MAX_GRID_PIXELS} px: draw fewer channels or smaller tiles"
        )
    return gh, gw


def tile_grid(tiles: Sequence[np.ndarray], columns: int | None = None) -> np.ndarray:
    """Lay ``(h, w, 3)`` uint8 tiles of one size out in rows with 1-px separators.

    ``columns`` defaults to ``ceil(sqrt(len(tiles)))``; the grid is
    ``(rows * (h + 1) + 1, columns * (w + 1) + 1, 3)`` (:func:`grid_shape`, which bounds it);
    empty cells stay white.
    """
    n = len(tiles)
    cols = columns or math.ceil(math.sqrt(n))
    h, w = tiles[0].shape[:2]
    grid = np.full((*grid_shape(n, h, w, cols), 3), SEPARATOR, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[1 + r * (h + 1) : (r + 1) * (h + 1), 1 + c * (w + 1) : (c + 1) * (w + 1)] = tile
    return grid


def _normalize(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Min-max scale to [0, 1] over ``dims`` (a constant slice becomes 0)."""
    lo, hi = x.amin(dims, keepdim=True), x.amax(dims, keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def _factor(h: int, w: int, size: int) -> int:
    """The integer factor that brings the longer of ``h, w`` to ``size`` px at most (at least
    1: tiles larger than ``size`` keep their pixels); ``size`` in ``[1, MAX_TILE]``."""
    if not 1 <= size <= MAX_TILE:
        raise ConfigError(f"a tile size must be in [1, {MAX_TILE}] px, got {size}")
    return max(1, size // max(h, w))


def _upscaled(n: int, h: int, w: int, size: int) -> int:
    """The factor of :func:`_factor`, once the grid of ``n`` such tiles is known to fit."""
    factor = _factor(h, w, size)
    grid_shape(n, h * factor, w * factor)
    return factor


def _upscale(tile: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling by ``factor``."""
    return np.repeat(np.repeat(tile, factor, 0), factor, 1)


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The name and module of the model's first convolution (the first in its backbone)."""
    root = getattr(model, "backbone", model)
    prefix = "backbone." if root is not model else ""
    for name, module in root.named_modules():
        if isinstance(module, nn.Conv2d):
            return prefix + name, module
    raise VisionkitError(f"{type(model).__name__} has no Conv2d layer")


def filter_grid(weight: Tensor, tile: int = 32) -> np.ndarray:
    """``(O, I, kh, kw)`` conv weights -> a grid of ``O`` tiles, each filter min-max normalized on
    its own and upscaled (nearest) towards ``tile`` px. Three input channels are shown as RGB;
    any other number as the grey level of their mean. A ``tile`` outside ``[1, MAX_TILE]`` or a
    grid above :data:`MAX_GRID_PIXELS` is a ConfigError, raised before any allocation."""
    w = weight.detach().float().cpu()
    w = w if w.shape[1] == 3 else w.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    factor = _upscaled(w.shape[0], w.shape[2], w.shape[3], tile)
    w = _normalize(w, (1, 2, 3))
    rgb = unit_float_to_uint8(w.permute(0, 2, 3, 1).numpy())
    return tile_grid([_upscale(np.ascontiguousarray(t[..., ::-1]), factor) for t in rgb])


def feature_grid(
    fmap: Tensor, max_channels: int = 32, tile: int = 64, colormap: int = cv2.COLORMAP_VIRIDIS
) -> np.ndarray:
    """``(C, H, W)`` activations -> a grid of the first ``max_channels`` channels, each min-max
    normalized on its own, upscaled (nearest) towards ``tile`` px and colour-mapped. Sizes are
    bounded as :func:`filter_grid`'s."""
    if not 1 <= max_channels <= MAX_CHANNELS:
        raise ConfigError(f"max_channels must be in [1, {MAX_CHANNELS}], got {max_channels}")
    c, h, w = fmap.shape
    factor = _upscaled(min(c, max_channels), h, w, tile)
    x = _normalize(fmap[:max_channels].detach().float().cpu(), (1, 2))
    gray = unit_float_to_uint8(x.numpy())
    return tile_grid([cv2.applyColorMap(_upscale(g[..., None], factor), colormap) for g in gray])


def backbone_levels(model: nn.Module) -> dict[str, str]:
    """Each backbone level the model computes (up to its deepest returned level) -> its module
    name, e.g. ``{"c1": "backbone.stages.c1", ...}``; empty for a model without a backbone."""
    backbone = getattr(model, "backbone", None)
    if backbone is None or not hasattr(backbone, "stages"):
        return {}
    names = list(backbone.stages)
    used = names[: names.index(backbone.out_features[-1]) + 1]
    return {n: f"backbone.stages.{n}" for n in used}


def _dense(model: nn.Module) -> bool:
    """Whether the model's ``forward`` maps a batch to dense outputs (YOLOv1, FCN, a bare
    backbone), as opposed to per-region outputs (the two-stage detectors, R-CNN: models with
    ``regions_per_image``)."""
    return not isinstance(model, BaseModel) or model.regions_per_image() is None


def _computed(model: nn.Module, name: str) -> bool:
    """Whether :func:`feature_maps` runs the module ``name``: not the preprocessor, only the
    backbone for models without a dense ``forward``, no backbone stage past the deepest used."""
    parts = name.split(".")
    if parts[0] == "preprocess" or (not _dense(model) and parts[0] != "backbone"):
        return False
    if parts[:2] == ["backbone", "stages"] and len(parts) > 2:
        return parts[2] in backbone_levels(model)
    return True


def layer_names(model: nn.Module) -> list[tuple[str, str]]:
    """Every module whose feature map one can draw: ``(name, description)`` in registration
    order (leaf modules are described by their type and arguments)."""
    out = []
    for name, module in model.named_modules():
        if not name or not _computed(model, name) or isinstance(module, NO_MAP):
            continue
        leaf = next(module.children(), None) is None
        out.append((name, f"{type(module).__name__}({module.extra_repr()})" if leaf else ""))
    return out


def resolve_layers(model: nn.Module, names: Sequence[str]) -> list[str]:
    """Module names for ``names``; a backbone level's name stands for its stage.

    A name that is no module, or a module :func:`feature_maps` does not run, is a one-line
    :class:`ConfigError` (suggesting the closest valid name).
    """
    levels = backbone_levels(model)
    drawable = [n for n, _ in layer_names(model)]
    modules = dict(model.named_modules())
    out = []
    for name in names:
        if name in levels:
            out.append(levels[name])
        elif name in drawable:
            out.append(name)
        elif name in modules:
            last = list(levels)[-1] if levels else "?"
            why = (
                f"the model does not use it (its backbone stops at level '{last}')"
                if _dense(model)
                else f"only the backbone runs, up to level '{last}'"
            )
            raise ConfigError(
                f"layer '{name}' is not computed here: {why}; --list-layers shows the layers"
            )
        else:
            close = difflib.get_close_matches(name, [*levels, *drawable], n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"the model has no layer '{name}'; {hint}--list-layers shows them")
    return out


@torch.no_grad()
def feature_maps(
    model: nn.Module, image: Tensor, layers: Sequence[str]
) -> tuple[Tensor, dict[str, Tensor]]:
    """Run ``image`` (``(3, H, W)`` float RGB in [0, 1]) through the model and keep the output of
    each named module.

    The model's own preprocessor resizes and normalizes the image, so the maps are those it
    computes on that image. Models with a dense ``forward`` (YOLOv1, FCN) run whole; the others
    run their backbone. Returns the normalized input batch ``(1, 3, h, w)`` and
    ``{layer: (C, h_l, w_l)}``.
    """
    modules = dict(model.named_modules())
    captured: dict[str, Any] = {}

    def keeper(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            captured.setdefault(name, output)

        return hook

    handles = [modules[n].register_forward_hook(keeper(n)) for n in layers]
    model.eval()
    try:
        batch = model.preprocess([image]).tensor
        (model if _dense(model) else model.backbone)(batch)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for name in layers:
        if name not in captured:
            raise VisionkitError(f"layer '{name}' did not run: the model does not use its output")
        value = captured[name]
        if not isinstance(value, Tensor) or value.dim() != 4:
            raise VisionkitError(f"layer '{name}' gives no (N, C, H, W) feature map")
        out[name] = value[0]
    return batch, out


def input_image(model: nn.Module, batch: Tensor) -> np.ndarray:
    """The normalized ``(1, 3, h, w)`` batch back in BGR uint8: the image as the model sees it
    (resized, padded)."""
    mean = model.preprocess.pixel_mean.reshape(3, 1, 1)
    std = model.preprocess.pixel_std.reshape(3, 1, 1)
    rgb = image_to_uint8((batch[0].cpu() * std + mean).clamp(0, 1)).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(rgb[..., ::-1])


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write ``image`` (BGR uint8) as a PNG atomically, creating the folder; a failure is a
    one-line error."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise VisionkitError(f"cannot encode {path}")
    write_bytes(path, buf.tobytes())
