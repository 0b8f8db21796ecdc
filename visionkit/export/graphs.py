"""What each model's ONNX graph computes: modules around a visionkit model that the exporter
traces (``visionkit/export/onnx.py``).

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
inside the graph: the models' own ``detect``). FCN gives ``logits`` ``(B, C, H, W)`` float32 and
``sem_seg`` ``(B, H, W)`` int64, their arg-max, in input pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visionkit.errors import ConfigError
from visionkit.models.detectors.rcnn import RCNN
from visionkit.models.detectors.two_stage import TwoStageDetector
from visionkit.models.detectors.yolo_v1 import YOLOv1
from visionkit.models.segmentors.fcn import FCN

DETECTION_OUTPUTS = ("boxes", "scores", "labels", "batch_index")
SEGMENTATION_OUTPUTS = ("logits", "sem_seg")
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


def _detections(d: dict[str, Tensor]) -> tuple[Tensor, ...]:
    return d["boxes"], d["scores"], d["labels"], d["image_index"]


class YoloGraph(nn.Module):
    """YOLOv1: ``images`` at the model's fixed input size -> detections."""

    inputs = ("images",)
    outputs = DETECTION_OUTPUTS

    def __init__(self, model: YOLOv1, normalize: Normalize) -> None:
        super().__init__()
        self.model, self.normalize = model, normalize

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return _detections(self.model.detect(self.normalize(images)))


class TwoStageGraph(nn.Module):
    """Faster R-CNN (``images``, ``image_sizes``), Fast R-CNN and SPPNet (also ``proposals``)
    -> detections."""

    outputs = DETECTION_OUTPUTS

    def __init__(self, model: TwoStageDetector, normalize: Normalize) -> None:
        super().__init__()
        self.model, self.normalize = model, normalize
        given = model.rpn is None
        self.inputs = ("images", "image_sizes", "proposals") if given else ("images", "image_sizes")

    def forward(
        self, images: Tensor, image_sizes: Tensor, proposals: Tensor | None = None
    ) -> tuple[Tensor, ...]:
        batch = self.normalize(images, image_sizes)
        return _detections(self.model.detect(batch, image_sizes.float(), proposals))


class RcnnGraph(nn.Module):
    """R-CNN (``images``, ``image_sizes``, ``proposals``) -> detections. Every region is warped
    and embedded in one pass (the eager model's ``chunk_size`` loop would be unrolled for the
    traced proposal count), so memory grows with the proposals: ``R x 3 x warp_size^2`` floats
    and the backbone's activations on them."""

    inputs = ("images", "image_sizes", "proposals")
    outputs = DETECTION_OUTPUTS

    def __init__(self, model: RCNN, normalize: Normalize) -> None:
        super().__init__()
        self.model, self.normalize = model, normalize

    def forward(self, images: Tensor, image_sizes: Tensor, proposals: Tensor) -> tuple[Tensor, ...]:
        m = self.model
        batch = self.normalize(images, image_sizes)
        crops = m.warp(batch, proposals[:, 0].long(), proposals[:, 1:])
        out = m.outputs(proposals, *m.embed(crops))
        return _detections(m.detections(out, image_sizes.float()))


class FcnGraph(nn.Module):
    """FCN: ``images``, ``image_sizes`` -> ``logits`` and the ``sem_seg`` label map."""

    inputs = ("images", "image_sizes")
    outputs = SEGMENTATION_OUTPUTS

    def __init__(self, model: FCN, normalize: Normalize) -> None:
        super().__init__()
        self.model, self.normalize = model, normalize

    def forward(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(self.normalize(images, image_sizes)).float()
        return logits, logits.argmax(1)


def export_graph(model: nn.Module, input_dtype: str) -> nn.Module:
    """The traced module of ``model`` (a YOLOv1, two-stage detector, R-CNN or FCN) taking
    ``input_dtype`` images (``float32`` in ``[0, 1]`` or ``uint8``)."""
    if input_dtype not in INPUT_DTYPES:
        raise ConfigError(f"input dtype {input_dtype!r}; choose one of {', '.join(INPUT_DTYPES)}")
    p = model.preprocess
    normalize = Normalize(p.pixel_mean, p.pixel_std, input_dtype == "uint8")
    graphs = ((YOLOv1, YoloGraph), (TwoStageDetector, TwoStageGraph), (RCNN, RcnnGraph))
    for kind, graph in (*graphs, (FCN, FcnGraph)):
        if isinstance(model, kind):
            return graph(model, normalize)
    raise ConfigError(f"no ONNX graph for {type(model).__name__} (not a visionkit model)")
