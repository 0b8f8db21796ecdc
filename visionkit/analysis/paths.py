"""What a summary runs of a model: the test-time network, without the parts that need data
(proposal selection, NMS, decoding), on meta-device inputs.

Each of visionkit's models says it (:class:`~visionkit.models.base.BaseModel`'s
``regions_per_image``, ``summary_input`` and ``summary_paths``):

- YOLOv1 and FCN: ``model(batch)``, their whole network.
- Faster R-CNN: backbone (and FPN), the RPN head on every level, and the RoI head's box head,
  classifier and box regressor on ``rois`` regions (the RoI pooler is not run: it has no
  parameters and counts 0 MACs, like every pooling).
- Fast R-CNN / SPPNet: backbone, and the RoI head on ``rois`` regions as above.
- R-CNN: the backbone, pool5, fc6/fc7, classifier and box regressor on a batch of ``rois``
  warped regions (the warping is not run).
- Any other module (a backbone, a classifier): ``model(batch)``.

The batch is what the model's own preprocessing makes of one ``(height, width)`` image (resized,
padded to its size divisor); modules without a visionkit preprocessor get the image as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from visionkit.config.schema import ModelConfig
from visionkit.models.base import BaseModel


def default_image_size(cfg: ModelConfig) -> tuple[int, int]:
    """``model.input_size``, or for ``[]`` (images at their own size) a square image of
    ``model.resize.min_size`` pixels."""
    if cfg.input_size:
        return int(cfg.input_size[0]), int(cfg.input_size[1])
    return cfg.resize.min_size, cfg.resize.min_size


def default_rois(model: nn.Module) -> int | None:
    """Regions per image at test time: Faster R-CNN's RPN proposals after NMS, Fast R-CNN's,
    SPPNet's and R-CNN's proposals per image (``max_proposals``, 0 = all: 2000); None for
    models without per-region layers."""
    return model.regions_per_image() if isinstance(model, BaseModel) else None


def network_input(model: nn.Module, image_size: Sequence[int], rois: int) -> tuple[int, ...]:
    """The ``(1, 3, H, W)`` batch the model's ``preprocess`` makes of one ``(height, width)``
    image (computed from its settings, so models on any device, meta included, work); R-CNN's
    ``(rois, 3, warp_size, warp_size)`` warped regions; ``(1, 3, height, width)`` for modules
    that are no visionkit model."""
    if isinstance(model, BaseModel):
        return model.summary_input(image_size, rois)
    return (1, 3, int(image_size[0]), int(image_size[1]))


def run_for_summary(model: nn.Module, input_shape: Sequence[int], rois: int) -> None:
    """Run ``model`` (a meta-device copy) on zeros of ``input_shape`` as the module doc says."""
    x = torch.zeros(tuple(input_shape), device="meta")
    if isinstance(model, BaseModel):
        model.summary_paths(x, rois)
    else:
        model(x)
