"""Turning a list of images into a normalized batch, and mapping boxes between the two.

Every model owns one :class:`FixedSizePreprocessor`: images enter as float RGB in ``[0, 1]`` of
any size; the model resizes them to its input size, normalizes them, and maps predicted boxes
back to each original image's pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FixedSizePreprocessor(nn.Module):
    """Resize (stretch) every image to ``input_size`` and normalize with mean/std.

    Args:
        input_size: ``(height, width)`` of the batch the network sees.
        pixel_mean, pixel_std: per-channel RGB statistics of ``[0, 1]`` images.
    """

    def __init__(
        self, input_size: Sequence[int], pixel_mean: Sequence[float], pixel_std: Sequence[float]
    ) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), False)

    def forward(self, images: Sequence[Tensor] | Tensor) -> tuple[Tensor, Tensor]:
        """Batch ``images``.

        Args:
            images: ``(N, 3, H, W)`` tensor or a list of ``(3, H_i, W_i)`` float tensors in [0, 1].

        Returns:
            ``(N, 3, h, w)`` normalized batch at ``input_size``, and ``(N, 2)`` float original
            sizes ``(H_i, W_i)``.
        """
        h, w = self.input_size
        if isinstance(images, Tensor) and images.dim() == 4:
            sizes = torch.tensor([images.shape[-2:]] * images.shape[0], dtype=torch.float32)
            batch = images if images.shape[-2:] == (h, w) else _resize(images, (h, w))
        else:
            sizes = torch.tensor([img.shape[-2:] for img in images], dtype=torch.float32)
            if all(img.shape[-2:] == (h, w) for img in images):
                batch = torch.stack(list(images))
            else:
                batch = torch.cat([_resize(img[None], (h, w)) for img in images])
        batch = (batch - self.pixel_mean) / self.pixel_std
        return batch, sizes.to(batch.device)

    def scale_factors(self, sizes: Tensor) -> Tensor:
        """``(N, 4)`` multipliers taking xyxy boxes from original pixels to input pixels."""
        h, w = self.input_size
        sx = w / sizes[:, 1]
        sy = h / sizes[:, 0]
        return torch.stack([sx, sy, sx, sy], 1)


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)


def padded_size(sizes: Sequence[Sequence[int]], divisor: int) -> tuple[int, int]:
    """The smallest ``(H, W)`` holding every ``(h, w)`` of ``sizes``, each side rounded up to a
    multiple of ``divisor`` (the batch that every image is padded into)."""
    h = max(int(s[0]) for s in sizes)
    w = max(int(s[1]) for s in sizes)
    return -(-h // divisor) * divisor, -(-w // divisor) * divisor


class PaddedBatchPreprocessor(nn.Module):
    """For fully convolutional models: optionally stretch to ``input_size``, normalize, and pad
    (bottom/right) into one batch whose sides are multiples of ``size_divisor``.

    Args:
        input_size: ``()`` keeps every image's own size; ``(height, width)`` stretches to it.
        pixel_mean, pixel_std: per-channel RGB statistics of ``[0, 1]`` images; the padding is
            0 after normalization (the mean colour).
        size_divisor: the deepest stride, so that every level of the network aligns.
    """

    def __init__(
        self,
        input_size: Sequence[int],
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisor: int = 32,
    ) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1])) if input_size else None
        self.size_divisor = size_divisor
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(3, 1, 1), False)

    def forward(
        self, images: Sequence[Tensor] | Tensor
    ) -> tuple[Tensor, list[tuple[int, int]], list[tuple[int, int]]]:
        """Batch ``images`` (a ``(N, 3, H, W)`` tensor or ``(3, H_i, W_i)`` tensors in [0, 1]).

        Returns the ``(N, 3, H_pad, W_pad)`` normalized batch, each image's ``(h, w)`` inside it
        (from the top-left corner) and each image's original ``(H_i, W_i)``.
        """
        orig = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        if self.input_size is not None:
            images = [_resize(img[None], self.input_size)[0] for img in images]
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        ph, pw = padded_size(sizes, self.size_divisor)
        batch = torch.stack([
            F.pad((img - self.pixel_mean) / self.pixel_std, (0, pw - w, 0, ph - h))
            for img, (h, w) in zip(images, sizes, strict=True)
        ])  # fmt: skip
        return batch, sizes, orig

    def masks(self, masks: Sequence[Tensor], shape: Sequence[int], fill: int) -> Tensor:
        """``(H_i, W_i)`` int64 label maps -> ``(N, H_pad, W_pad)``, resized (nearest) like their
        images and padded with ``fill``."""
        out = []
        for m in masks:
            if self.input_size is not None and tuple(m.shape) != self.input_size:
                m = F.interpolate(m[None, None].float(), self.input_size, mode="nearest")[0, 0]
            out.append(
                F.pad(
                    m.long(), (0, shape[-1] - m.shape[-1], 0, shape[-2] - m.shape[-2]), value=fill
                )
            )
        return torch.stack(out)
