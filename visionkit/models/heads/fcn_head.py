"""FCN's head (Long, Shelhamer & Darrell, 2015): score the deepest level, upsample with
transposed convolutions initialized to bilinear interpolation, fuse with zero-initialized scores of
finer levels (the skips of FCN-16s and -8s), and crop to the input.

Every map carries its geometry ``(stride, offset)``: pixel ``j`` is centred on input coordinate
``stride * j + offset`` (``backbones/geometry.py``). A transposed convolution of kernel ``2f``,
stride ``f`` and no padding maps ``(s, o)`` to ``(s / f, o - s / f * (f - 0.5))``, and
``F.interpolate`` by ``f`` to ``(s / f, o - s / f * (f - 1) / 2)``; the crops that align two maps
(and the final map with the input) follow, as Caffe's crop layers computed them for the paper.
With VGG-16, ``input_pad`` 100 and the valid 7x7 fc6 they are the paper's 5, 9 (skips) and 19,
27, 31 (final crops of 32s, 16s, 8s, with ``learn_final_upsample``; the fixed final
interpolation starts ``f / 2`` earlier: 3, 19, 27).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.errors import ConfigError


def bilinear_kernel(factor: int) -> Tensor:
    """``(2f, 2f)`` float32 filter of bilinear upsampling by ``f`` (FCN's ``upsample_filt``)."""
    t = 1 - (torch.arange(2 * factor, dtype=torch.float32) - (factor - 0.5)).abs() / factor
    return t[:, None] * t[None, :]


def bilinear_upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Learnable transposed conv (kernel ``2f``, stride ``f``, no bias): a full ``C x C`` kernel
    initialized to per-channel bilinear interpolation (zero off the diagonal)."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, factor, bias=False)
    with torch.no_grad():
        up.weight.zero_()
        idx = torch.arange(channels)
        up.weight[idx, idx] = bilinear_kernel(factor)
    return up


class BilinearUpsample(nn.Module):
    """The fixed (not learned) bilinear upsampling by ``factor``: ``F.interpolate``, which equals
    the bilinear transposed convolution away from the borders (shifted by ``f / 2`` pixels, as it
    does not pad) and replicates the edge where the convolution fades to zero. No parameters;
    checkpoints from before it hold the old fixed kernel as ``weight``, which loading drops."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, h, w)`` -> ``(N, C, f h, f w)``; output pixel ``i`` samples ``(i + 0.5) / f - 0.5``."""
        return F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=False)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        state_dict.pop(prefix + "weight", None)
        super()._load_from_state_dict(state_dict, prefix, *args)


def _round(x: float) -> int:
    return math.floor(x + 0.5)


def _overlap(a: Tensor, b: Tensor, shift: int) -> tuple[Tensor, Tensor]:
    """Crop ``a`` and ``b`` to their overlap, ``a``'s first pixel lying at ``b``'s ``shift``."""
    if shift >= 0:
        b = b[..., shift:, shift:]
    else:
        a = a[..., -shift:, -shift:]
    h, w = min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1])
    return a[..., :h, :w], b[..., :h, :w]


def crop_or_pad(x: Tensor, start: int, size: Sequence[int]) -> Tensor:
    """``x[..., start:start+H, start:start+W]``, edge-replicated where it falls outside ``x``."""
    h, w = size[0], size[1]  # no int(): traced sizes stay dynamic in an ONNX export
    top, lead = max(start, 0), max(-start, 0)
    x = x[..., top : top + h - lead, top : top + w - lead]
    bottom, right = h - lead - x.shape[-2], w - lead - x.shape[-1]
    if lead or bottom or right:
        x = F.pad(x, (lead, right, lead, bottom), mode="replicate")
    return x


class FCNHead(nn.Module):
    """Head layers, class scores, skip scores, upsampling and crops.

    Args:
        levels: ``(name, channels, stride, offset)`` from shallow to deep; the last goes through
            the head layers, the others are skips (FCN-16s: one, FCN-8s: two).
        num_classes: C, background included.
        kind: ``"fc"`` the paper's fc6 (7x7) and fc7 (1x1), each + ReLU + dropout;
            ``"conv"`` torchvision's 3x3 conv + BatchNorm + ReLU + dropout.
        channels: the head layers' width (paper: 4096). dropout: their dropout probability.
        valid_fc6: fc6 without padding (the paper, with ``input_pad``); else padded by 3.
        learn_final_upsample: the paper keeps the last upsampling bilinear (here
            :class:`BilinearUpsample`); earlier ones are learned transposed convolutions.
        resize_to_input: the last upsampling resizes the scores bilinearly to the input's size
            (``F.interpolate``, no alignment crop: torchvision's FCN) instead of upsampling by
            the stride and cropping where the geometry says.
    """

    def __init__(
        self,
        levels: Sequence[tuple[str, int, int, float]],
        num_classes: int,
        kind: str = "fc",
        channels: int = 4096,
        dropout: float = 0.5,
        valid_fc6: bool = False,
        learn_final_upsample: bool = False,
        resize_to_input: bool = False,
    ) -> None:
        super().__init__()
        if resize_to_input and learn_final_upsample:
            raise ConfigError("model.fcn.final_resize needs learn_final_upsample false")
        self.resize_to_input = resize_to_input
        deep, cin, stride, offset = levels[-1]
        self.deep = deep
        if kind == "fc":
            self.layers = nn.Sequential(
                nn.Conv2d(cin, channels, 7, padding=0 if valid_fc6 else 3), nn.ReLU(True),
                nn.Dropout2d(dropout), nn.Conv2d(channels, channels, 1), nn.ReLU(True),
                nn.Dropout2d(dropout),
            )  # fmt: skip
            offset += stride * 3 if valid_fc6 else 0
        else:
            self.layers = nn.Sequential(
                nn.Conv2d(cin, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                nn.ReLU(True), nn.Dropout(dropout),
            )  # fmt: skip
        self.score = self._zero_conv(channels, num_classes)
        self.skips = [name for name, *_ in reversed(levels[:-1])]
        self.skip_scores = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        self.shifts: list[int] = []
        for name, c, s, o in reversed(levels[:-1]):
            stride, offset = self._add_upsampler(num_classes, stride, offset, s, name, True)
            self.skip_scores.append(self._zero_conv(c, num_classes))
            shift = _round((offset - o) / s)
            self.shifts.append(shift)
            offset = o + max(shift, 0) * s
        _, offset = self._add_upsampler(
            num_classes, stride, offset, 1, "the input", learn_final_upsample
        )
        self.final_start = _round(-offset)

    @staticmethod
    def _zero_conv(cin: int, cout: int) -> nn.Conv2d:
        conv = nn.Conv2d(cin, cout, 1)
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
        return conv

    def _add_upsampler(
        self, c: int, stride: int, offset: float, target: int, name: str, learnable: bool
    ) -> tuple[int, float]:
        """Append the upsampling from ``stride`` to ``target``; the new ``(stride, offset)``."""
        if stride % target:
            raise ConfigError(f"FCN cannot upsample stride {stride} to {name}'s stride {target}")
        f = stride // target
        if f == 1:
            self.upsamplers.append(nn.Identity())
            return stride, offset
        if learnable:
            self.upsamplers.append(bilinear_upsampler(c, f))
            return target, offset - target * (f - 0.5)
        self.upsamplers.append(BilinearUpsample(f))
        return target, offset - target * (f - 1) / 2

    def forward(self, features: dict[str, Tensor], size: Sequence[int]) -> Tensor:
        """Backbone levels -> ``(N, C, size[0], size[1])`` class scores (logits)."""
        x = self.score(self.layers(features[self.deep]))
        for name, score, up, shift in zip(
            self.skips, self.skip_scores, self.upsamplers, self.shifts, strict=False
        ):
            x, skip = _overlap(up(x), score(features[name]), shift)
            x = x + skip
        if self.resize_to_input:
            return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
        return crop_or_pad(self.upsamplers[-1](x), self.final_start, size)
