"""What a summary runs for each of visionkit's models: the test-time network, without the parts
that need data (proposal selection, NMS, decoding), on meta-device inputs.

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
from torch import Tensor, nn

from visionkit.config.schema import ModelConfig
from visionkit.models.detectors.rcnn import RCNN
from visionkit.models.detectors.two_stage import TwoStageDetector
from visionkit.models.heads.roi_heads import RoIHeads
from visionkit.models.preprocess import Preprocessor

# proposals per image when a model keeps all of them (selective_search.max_proposals: 0)
ALL_PROPOSALS = 2000


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
    if isinstance(model, TwoStageDetector) and model.rpn is not None:
        return int(model.rpn.post_nms_top_n[1])
    if isinstance(model, (TwoStageDetector, RCNN)):
        return int(model.proposals.max_proposals) or ALL_PROPOSALS
    return None


def network_input(model: nn.Module, image_size: Sequence[int], rois: int) -> tuple[int, ...]:
    """The ``(1, 3, H, W)`` batch the model's ``preprocess`` makes of one ``(height, width)``
    image (computed from its settings, so models on any device, meta included, work); R-CNN's
    ``(rois, 3, warp_size, warp_size)`` warped regions; ``(1, 3, height, width)`` for modules
    without a visionkit preprocessor."""
    h, w = int(image_size[0]), int(image_size[1])
    pre = getattr(model, "preprocess", None)
    if isinstance(model, RCNN):
        return (rois, 3, model.warp_size, model.warp_size)
    if isinstance(pre, Preprocessor):
        h, w = pre.batch_shape(torch.tensor([[h, w]], dtype=torch.float32, device="cpu"))
    return (1, 3, h, w)


def _roi_head(heads: RoIHeads, features: Sequence[Tensor], rois: int) -> None:
    pooled = features[0].new_zeros(rois, *heads.pooler.output_shape(features[0].shape[1]))
    x = heads.box_head(pooled)
    heads.cls_score(x)
    heads.bbox_pred(x)


def run_for_summary(model: nn.Module, input_shape: Sequence[int], rois: int) -> None:
    """Run ``model`` (a meta-device copy) on zeros of ``input_shape`` as the module doc says."""
    x = torch.zeros(tuple(input_shape), device="meta")
    if isinstance(model, TwoStageDetector):
        features = model.features(x)
        if model.rpn is not None:
            model.rpn.head(features)
        _roi_head(model.roi_heads, features[: model.roi_levels], rois)
    elif isinstance(model, RCNN):
        pool5, fc7 = model.embed(x)
        model.cls_score(fc7)
        model.bbox_pred(pool5)
    else:
        model(x)
