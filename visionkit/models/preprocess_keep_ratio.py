"""Aspect-preserving resize for detectors that take any image shape (Faster R-CNN).

The sibling of :class:`~visionkit.models.preprocess.FixedSizePreprocessor` with the same
interface: each image is scaled so that its shorter side becomes ``min_size`` unless its longer
side would then exceed ``max_size`` (Faster R-CNN: 600 / 1000), normalized, and zero-padded at the
bottom/right into a batch whose sides are multiples of ``size_divisibility``. Padding never moves
boxes; the scale factors are the exact ratios of the integer resized size to the original one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.models.preprocess import padded_size


class ShorterSidePreprocessor(nn.Module):
    """Resize keeping the aspect ratio, normalize, pad into a batch.

    Args:
        min_size: target length of the shorter side in pixels.
        max_size: cap on the longer side in pixels.
        pixel_mean, pixel_std: per-channel RGB statistics of ``[0, 1]`` images.
        size_divisibility: the padded batch's height and width are multiples of this.
    """

    def __init__(
        self,
        min_size: int,
        max_size: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisibility: int = 32,
    ) -> None:
        super().__init__()
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.size_divisibility = max(int(size_divisibility), 1)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(3, 1, 1), False)

    def resized_sizes(self, sizes: Tensor) -> Tensor:
        """``(N, 2)`` float original ``(H, W)`` -> ``(N, 2)`` float resized ``(h, w)`` (integers)."""
        scale = torch.minimum(
            self.min_size / sizes.min(1).values, self.max_size / sizes.max(1).values
        )
        return (sizes * scale[:, None]).round().clamp(min=1)

    def forward(self, images: Sequence[Tensor] | Tensor) -> tuple[Tensor, Tensor]:
        """Batch ``images``.

        Args:
            images: ``(N, 3, H, W)`` tensor or a list of ``(3, H_i, W_i)`` float tensors in [0, 1].

        Returns:
            ``(N, 3, h, w)`` normalized, zero-padded batch, and ``(N, 2)`` float original sizes
            ``(H_i, W_i)``. Image ``i`` fills the top-left ``resized_sizes(sizes)[i]`` pixels.
        """
        images = list(images)
        sizes = torch.tensor([img.shape[-2:] for img in images], dtype=torch.float32)
        new = self.resized_sizes(sizes).long().tolist()
        h, w = padded_size(new, self.size_divisibility)
        batch = images[0].new_zeros(len(images), 3, h, w)
        for i, (img, (nh, nw)) in enumerate(zip(images, new, strict=True)):
            if tuple(img.shape[-2:]) != (nh, nw):
                img = F.interpolate(img[None], (nh, nw), mode="bilinear", align_corners=False)[0]
            batch[i, :, :nh, :nw] = (img - self.pixel_mean) / self.pixel_std
        return batch, sizes.to(batch.device)

    def scale_factors(self, sizes: Tensor) -> Tensor:
        """``(N, 4)`` multipliers taking xyxy boxes from original pixels to input pixels."""
        new = self.resized_sizes(sizes)
        sy, sx = (new / sizes).unbind(1)
        return torch.stack([sx, sy, sx, sy], 1)
