"""What each model's ONNX graph computes: the model's own graph body
(:meth:`~visionkit.models.base.BaseModel.export_module`) behind the normalization, traced by the
exporter (``visionkit/export/onnx.py``).

Every graph takes ``images`` ``(B, 3, H, W)``, already resized and padded by the caller as the
model's :class:`~visionkit.models.preprocess.Preprocessor` would (``runtime.py`` uses that
Preprocessor), as float RGB in ``[0, 1]`` or uint8 RGB in ``0..255`` (chosen at export: the graph
casts and divides by 255), and normalizes them itself. Models whose batches are padded also take
``image_sizes`` ``(B, 2)`` int64 ``(h, w)`` of each image inside the batch: pixels outside it are
set to the mean colour (0 after normalization, as the Preprocessor pads) and boxes are clipped to
it. Given-proposal detectors (Fast R-CNN, SPPNet, R-CNN) take ``proposals`` ``(R, 5)`` float32
``(batch index, x1, y1, x2, y2)`` in input pixels.

Detectors give flat outputs over the batch, so that the batch is dynamic and an image without a
detection simply has no rows: ``boxes`` ``(D, 4)`` float32 xyxy in input pixels, ``scores``
``(D,)`` float32, ``labels`` ``(D,)`` int64 in ``0..C-1`` and ``batch_index`` ``(D,)`` int64,
sorted by score over the batch (decoding, score threshold, per-class NMS and per-image top-k
inside the graph: the models' own ``detect``). Mask R-CNN adds ``masks`` ``(D, 1, M, M)``
float32, each detection's mask probabilities for its own class over its box (M = 28), pasted
into the image after the graph (``visionkit.inference.onnx_backend``, with the model's own
``paste_masks``). FCN gives ``logits`` ``(B, C, H, W)`` float32 and
``sem_seg`` ``(B, H, W)`` int64, their arg-max, in input pixels. Each model's body names its
inputs and outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visionkit.errors import ConfigError
from visionkit.models.base import BaseModel

INPUT_DTYPES = ("float32", "uint8")


class Normalize(nn.Module):
    """``images`` (float ``[0, 1]`` or uint8) -> the model's normalized float32 batch; with
    ``image_sizes`` ``(B, 2)`` ``(h, w)``, 0 outside each image (the Preprocessor's padding)."""

    def __init__(self, pixel_mean: Tensor, pixel_std: Tensor, uint8: bool) -> None:
        super().__init__()
        self.register_buffer("mean", pixel_mean.detach().float().reshape(1, 3, 1, 1).clone())
        self.register_buffer("std", pixel_std.detach().float().reshape(1, 3, 1, 1).clone())
        self.uint8 = uint8

    def forward(self, images: Tensor, image_sizes: Tensor | None = None) -> Tensor:
        x = images.float()
        if self.uint8:
            x = x / 255
        x = (x - self.mean) / self.std
        if image_sizes is None:
            return x
        h = torch.arange(x.shape[2], device=x.device)[None, :, None]
        w = torch.arange(x.shape[3], device=x.device)[None, None, :]
        inside = (h < image_sizes[:, :1, None]) & (w < image_sizes[:, 1:, None])  # (B, H, W)
        return x * inside[:, None].to(x.dtype)


class ModelGraph(nn.Module):
    """``images`` (and the body's other inputs, ``image_sizes`` first where the batch is padded)
    -> :class:`Normalize` -> the model's graph body; ``inputs`` and ``outputs`` are the body's."""

    def __init__(self, body: nn.Module, normalize: Normalize) -> None:
        super().__init__()
        self.model, self.normalize = body, normalize
        self.inputs, self.outputs = tuple(body.inputs), tuple(body.outputs)
        self.padded = "image_sizes" in self.inputs

    def forward(self, images: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
        batch = self.normalize(images, others[0] if self.padded else None)
        return self.model(batch, *others)


def export_graph(model: nn.Module, input_dtype: str) -> nn.Module:
    """The traced module of ``model`` (a :class:`~visionkit.models.base.BaseModel`) taking
    ``input_dtype`` images (``float32`` in ``[0, 1]`` or ``uint8``)."""
    if input_dtype not in INPUT_DTYPES:
        raise ConfigError(f"input dtype {input_dtype!r}; choose one of {', '.join(INPUT_DTYPES)}")
    if not isinstance(model, BaseModel):
        raise ConfigError(f"no ONNX graph for {type(model).__name__} (not a visionkit model)")
    p = model.preprocess
    normalize = Normalize(p.pixel_mean, p.pixel_std, input_dtype == "uint8")
    return ModelGraph(model.export_module(), normalize)
