"""One preprocessor for every model: images in, one :class:`ImageBatch` out, and the way back.

Images enter a model as float RGB in ``[0, 1]``, any size, as a list of ``(3, H_i, W_i)``
tensors or one ``(N, 3, H, W)`` tensor. :class:`Preprocessor` resizes each image (``resize``:
``fixed`` stretches to ``input_size``; ``shorter_side`` scales the shorter side to ``min_size``
unless the longer one would exceed ``max_size``; ``none`` keeps it), normalizes it with the
model's mean/std and zero-pads it (bottom/right, 0 = the mean colour after normalization) into a
batch whose sides are multiples of ``size_divisor``. Padding never moves a pixel, so boxes only
scale: the scale of an image is the exact ratio of its integer resized size to its original
one. :meth:`ImageBatch.postprocess` maps predictions back to each original image, as
torchvision's ``GeneralizedRCNNTransform.postprocess`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.config.schema import ModelConfig
from visionkit.errors import ConfigError
from visionkit.structures.boxes import MIN_BOX_SIZE, clip_boxes, valid_boxes_mask
from visionkit.structures.labels import IGNORE_LABEL

RESIZE_MODES = ("fixed", "shorter_side", "none")


@dataclass
class ImageBatch:
    """A preprocessed batch and where each image lies in it.

    Attributes:
        tensor: ``(N, 3, H, W)`` normalized, zero-padded batch; ``H``, ``W`` multiples of the
            preprocessor's ``size_divisor``.
        image_sizes: ``(N, 2)`` float ``(h, w)`` of each resized image, from the top-left corner
            of its slot (integers).
        original_sizes: ``(N, 2)`` float ``(H, W)`` of each image as given.
        scales: ``(N, 4)`` float ``(sx, sy, sx, sy)``: xyxy boxes in original pixels times a
            row are in input (batch) pixels.
        images: the images as given (what a proposer that reads pixels, selective search,
            looks at).
    """

    tensor: Tensor
    image_sizes: Tensor
    original_sizes: Tensor
    scales: Tensor
    images: Sequence[Tensor] | Tensor

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def targets_to_input(
        self, boxes: Sequence[Tensor], labels: Sequence[Tensor], min_size: float = 1e-3
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Ground truth in input pixels: per image ``(M_i, 4)`` xyxy boxes in original pixels
        times the image's scale row, and its ``(M_i,)`` labels; boxes not wider and taller than
        ``min_size`` after scaling (degenerate) are dropped from both."""
        out_boxes, out_labels = [], []
        for b, lab, scale in zip(boxes, labels, self.scales, strict=True):
            b = b.to(scale.device, torch.float32).reshape(-1, 4) * scale
            keep = valid_boxes_mask(b, min_size)
            out_boxes.append(b[keep])
            out_labels.append(lab.to(scale.device).reshape(-1)[keep])
        return out_boxes, out_labels

    def clip_to_input(
        self, boxes: Sequence[Tensor], min_size: float = MIN_BOX_SIZE
    ) -> list[Tensor]:
        """Per image ``(K_i, 4)`` xyxy in original pixels (e.g. region proposals) -> float32 in
        input pixels, clipped to the image inside the batch, those not wider and taller than
        ``min_size`` dropped."""
        out = []
        for i, b in enumerate(boxes):
            b = b.to(self.scales.device, torch.float32).reshape(-1, 4) * self.scales[i]
            b = clip_boxes(b, (float(self.image_sizes[i, 0]), float(self.image_sizes[i, 1])))
            out.append(b[valid_boxes_mask(b, min_size)])
        return out

    def masks_to_input(self, masks: Sequence[Tensor], fill: int = IGNORE_LABEL) -> Tensor:
        """``(H_i, W_i)`` integer label maps -> ``(N, H, W)`` int64, resized (nearest) as their
        images were and padded with ``fill`` to the batch's size."""
        h_pad, w_pad = self.tensor.shape[-2:]
        out = []
        for m, size in zip(masks, self.image_sizes.long().tolist(), strict=True):
            if list(m.shape) != size:
                m = F.interpolate(m[None, None].float(), size, mode="nearest")[0, 0]
            m = m.to(self.tensor.device).long()
            out.append(F.pad(m, (0, w_pad - m.shape[-1], 0, h_pad - m.shape[-2]), value=fill))
        return torch.stack(out)

    def postprocess(self, results: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        """Map per-image results from input pixels to original pixels, in place.

        ``boxes`` ``(K, 4)`` xyxy are divided by the image's scale and clipped to its original
        size. ``logits`` ``(C, H, W)`` scores over the batch are cut to the image's region and
        resized bilinearly to its original size (when it was resized); ``sem_seg`` ``(H_i,
        W_i)`` int64 is then their arg-max. Give ``logits`` as ``batch_logits[i : i + 1]`` (a
        ``(1, C, H, W)`` slice) when the network is channels-last: a slice keeps that layout
        through the resize, so the arg-max over classes reads contiguous memory (~10x faster
        than over the channel planes that resizing a ``(C, H, W)`` view gives).
        """
        for i, r in enumerate(results):
            orig = (int(self.original_sizes[i, 0]), int(self.original_sizes[i, 1]))
            if "boxes" in r:
                r["boxes"] = clip_boxes(r["boxes"] / self.scales[i], orig)
            if "logits" in r:
                h, w = (int(v) for v in self.image_sizes[i].tolist())
                scores = r["logits"]  # (C, H, W), or (1, C, H, W): a slice of the batch's
                scores = (scores[None] if scores.dim() == 3 else scores)[..., :h, :w]
                if (h, w) != orig:
                    scores = F.interpolate(scores, orig, mode="bilinear", align_corners=False)
                r["logits"] = scores[0]
                r["sem_seg"] = scores[0].argmax(0)
        return results


class Preprocessor(nn.Module):
    """Resize, normalize and pad images into an :class:`ImageBatch`.

    Args:
        resize: ``fixed`` (stretch to ``input_size``), ``shorter_side`` (keep the aspect ratio:
            shorter side ``min_size``, longer side at most ``max_size``) or ``none``.
        pixel_mean, pixel_std: per-channel RGB statistics of ``[0, 1]`` images.
        input_size: ``(height, width)`` of ``fixed``.
        min_size, max_size: pixels, for ``shorter_side``.
        size_divisor: the batch's sides are multiples of it (the deepest stride of a fully
            convolutional model; 1: no padding beyond the largest image).
        rounding: ``shorter_side``'s resized sides: ``round`` (``side * scale`` rounded) or
            ``floor`` (torchvision's ``GeneralizedRCNNTransform``: ``floor(side * scale)`` with
            ``scale = min(min_size / shorter, max_size / longer)`` in double precision).
    """

    def __init__(
        self,
        resize: str,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        input_size: Sequence[int] = (),
        min_size: int = 600,
        max_size: int = 1000,
        size_divisor: int = 1,
        rounding: str = "round",
    ) -> None:
        super().__init__()
        if resize not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {resize!r}; expected one of {RESIZE_MODES}")
        if resize == "fixed" and len(input_size) != 2:
            raise ValueError(f"resize 'fixed' needs input_size (height, width), got {input_size}")
        self.resize = resize
        self.input_size = (int(input_size[0]), int(input_size[1])) if input_size else None
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.size_divisor = max(int(size_divisor), 1)
        if rounding not in ("round", "floor"):
            raise ValueError(f"unknown rounding {rounding!r}; expected 'round' or 'floor'")
        self.rounding = rounding
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), False)

    def resized_sizes(self, sizes: Tensor) -> Tensor:
        """``(N, 2)`` float original ``(H, W)`` -> ``(N, 2)`` float resized ``(h, w)``
        (integers)."""
        if self.resize == "fixed":
            return sizes.new_tensor(self.input_size).expand_as(sizes).clone()
        if self.resize == "none":
            return sizes.clone()
        if self.rounding == "floor":
            new = []
            for hw in sizes.tolist():
                k = min(self.min_size / min(hw), self.max_size / max(hw))
                new.append([math.floor(v * k) for v in hw])
            return sizes.new_tensor(new).clamp(min=1)
        scale = torch.minimum(
            self.min_size / sizes.min(1).values, self.max_size / sizes.max(1).values
        )
        return (sizes * scale[:, None]).round().clamp(min=1)

    def batch_shape(self, sizes: Tensor) -> tuple[int, int]:
        """The padded ``(H, W)`` of a batch of images of original ``(N, 2)`` ``sizes``."""
        new = self.resized_sizes(sizes)
        d = self.size_divisor
        h, w = int(new[:, 0].max()), int(new[:, 1].max())
        return -(-h // d) * d, -(-w // d) * d

    def forward(self, images: Sequence[Tensor] | Tensor) -> ImageBatch:
        """Batch ``images`` (a ``(N, 3, H, W)`` tensor or ``(3, H_i, W_i)`` float tensors in
        ``[0, 1]``). The batch is float32 (or the images' wider float type): half-precision
        images are normalized in float32, and autocast casts for the network."""
        sizes = torch.tensor([img.shape[-2:] for img in images], dtype=torch.float32)
        new = self.resized_sizes(sizes)
        h_pad, w_pad = self.batch_shape(sizes)
        targets = [tuple(s) for s in new.long().tolist()]
        dtype = torch.promote_types(images[0].dtype, self.pixel_mean.dtype)
        if isinstance(images, Tensor) and images.dim() == 4 and set(targets) == {(h_pad, w_pad)}:
            # one tensor whose images all become the whole batch: resized as one, if at all
            same = tuple(images.shape[-2:]) == (h_pad, w_pad)
            batch = (images if same else _resize(images, (h_pad, w_pad))).to(dtype)
            batch = (batch - self.pixel_mean) / self.pixel_std
        else:
            batch = images[0].new_zeros(len(images), 3, h_pad, w_pad, dtype=dtype)
            for i, (img, (h, w)) in enumerate(zip(images, targets, strict=True)):
                if tuple(img.shape[-2:]) != (h, w):
                    img = _resize(img[None], (h, w))[0]
                batch[i, :, :h, :w] = (img - self.pixel_mean[0]) / self.pixel_std[0]
        scale_hw = new / sizes
        scales = torch.stack([scale_hw[:, 1], scale_hw[:, 0]] * 2, 1)
        device = batch.device
        return ImageBatch(batch, new.to(device), sizes.to(device), scales.to(device), images)


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)


def build_preprocessor(cfg: ModelConfig, resize: str, size_divisor: int = 1) -> Preprocessor:
    """The :class:`Preprocessor` of model config ``cfg`` (``pixel_mean``/``pixel_std``,
    ``input_size`` for ``fixed``, ``resize.min_size``/``max_size`` for ``shorter_side``; with
    ``none`` no input size: each image keeps its own)."""
    if resize == "fixed" and len(cfg.input_size) != 2:
        raise ConfigError(
            f"model.input_size must be [height, width] for {cfg.name} (it is {cfg.input_size})"
        )
    return Preprocessor(
        resize,
        cfg.pixel_mean,
        cfg.pixel_std,
        () if resize == "none" else cfg.input_size,
        cfg.resize.min_size,
        cfg.resize.max_size,
        size_divisor,
        cfg.resize.rounding,
    )
