"""Fast R-CNN (Girshick, 2015): the Fast R-CNN head over precomputed region proposals.

One backbone level (VGG-16 ``conv5``: stride 16) is computed once per image; each proposal is
pooled from it (RoI max pooling 7 x 7, or SPPNet's pyramid: ``sppnet.py``), passed through the box
head and classified (``C + 1``) and regressed (``4C``) by :class:`RoIHeads`. Training is
image-centric: each mini-batch holds few images (paper: 2) with many RoIs each (64, 25 %
foreground at IoU >= 0.5, background in ``[0.1, 0.5)``), sampled from the proposals plus the
ground truth.

Proposals come with the targets (``target["proposals"]``, ``(K, 4)`` xyxy in the image tensor's
pixels: ``data.*.proposals``, ``visionkit/proposals/``) or, at test time, as ``predict``'s
``proposals`` argument; without them ``predict`` runs visionkit's selective search on each image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visionkit.config.schema import ModelConfig
from visionkit.errors import ConfigError, DataError
from visionkit.models.backbones import build_backbone
from visionkit.models.backbones.base import Backbone
from visionkit.models.detectors.faster_rcnn import (
    build_preprocessor,
    build_roi_heads,
    scale_targets,
)
from visionkit.models.heads.roi_heads import RoIHeads
from visionkit.models.preprocess import FixedSizePreprocessor
from visionkit.models.preprocess_keep_ratio import ShorterSidePreprocessor
from visionkit.proposals.selective_search import selective_search
from visionkit.structures.boxes import clip_boxes, valid_boxes_mask


class FastRCNN(nn.Module):
    """Backbone (one level) -> RoI head over given proposals.

    Args:
        backbone: returns one level. roi_heads: the Fast R-CNN head on it.
        preprocess: resizes, normalizes and batches images; gives the box scale factors.
        search_mode: selective search's mode for images ``predict`` gets without proposals.
        max_proposals: proposals used per image, best first (0 = all).
    """

    def __init__(
        self,
        backbone: Backbone,
        roi_heads: RoIHeads,
        preprocess: FixedSizePreprocessor | ShorterSidePreprocessor,
        search_mode: str = "fast",
        max_proposals: int = 2000,
    ) -> None:
        super().__init__()
        self.backbone, self.roi_heads, self.preprocess = backbone, roi_heads, preprocess
        self.search_mode, self.max_proposals = search_mode, max_proposals

    def _features(self, images: Sequence[Tensor] | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns the ``(N, C, H/s, W/s)`` level, ``(N, 4)`` scale factors (original -> input
        pixels) and ``(N, 2)`` sizes ``(h, w)`` of the images inside the batch."""
        batch, sizes = self.preprocess(images)
        scales = self.preprocess.scale_factors(sizes)
        image_sizes = (sizes * scales[:, [1, 0]]).round()
        return self.backbone(batch)[self.backbone.out_features[0]], scales, image_sizes

    def _to_input(self, proposals: Tensor, scale: Tensor, size: Tensor) -> Tensor:
        """``(K, 4)`` xyxy in an image's pixels -> the first ``max_proposals`` non-degenerate ones
        in input pixels, clipped to the image inside the batch."""
        boxes = proposals.to(scale.device, torch.float32).reshape(-1, 4)
        if self.max_proposals > 0:
            boxes = boxes[: self.max_proposals]
        boxes = clip_boxes(boxes * scale, (float(size[0]), float(size[1])))
        return boxes[valid_boxes_mask(boxes, 1e-2)]

    def propose(self, image: Tensor) -> Tensor:
        """Selective search on one ``(3, H, W)`` float RGB image in [0, 1] -> ``(K, 4)`` float32
        xyxy in its pixels, best first, at most ``max_proposals``."""
        pixels = image.detach().float().mul(255).round().clamp(0, 255).byte()
        boxes = selective_search(pixels.permute(1, 2, 0).cpu().numpy(), self.search_mode)
        if self.max_proposals > 0:
            boxes = boxes[: self.max_proposals]
        return torch.from_numpy(boxes).to(image.device)

    def loss(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict]) -> dict[str, Tensor]:
        """The Fast R-CNN losses.

        Args:
            images: float RGB in [0, 1], a ``(N,3,H,W)`` tensor or a list of ``(3,H_i,W_i)``.
            targets: per image ``boxes`` ``(M,4)`` xyxy in that image's pixels (degenerate boxes
                are dropped), ``labels`` ``(M,)`` int64 in ``0..C-1`` and ``proposals``
                ``(K,4)`` float xyxy in that image's pixels.

        Returns:
            ``loss_roi_cls``, ``loss_roi_box`` (scalars).
        """
        if any("proposals" not in t for t in targets):
            raise DataError(
                "fast_rcnn/sppnet train on precomputed proposals: set data.train.proposals.method "
                "to selective_search or file"
            )
        features, scales, image_sizes = self._features(images)
        gt_boxes, gt_labels = scale_targets(targets, scales)
        proposals = [
            self._to_input(t["proposals"], scale, size)
            for t, scale, size in zip(targets, scales, image_sizes, strict=True)
        ]
        return self.roi_heads.loss([features], proposals, gt_boxes, gt_labels)

    @torch.no_grad()
    def predict(
        self, images: Sequence[Tensor] | Tensor, proposals: Sequence[Tensor] | None = None
    ) -> list[dict[str, Tensor]]:
        """Detect objects.

        Args:
            images: as in :meth:`loss`.
            proposals: per image ``(K_i, 4)`` xyxy in its original pixels, best first; None:
                selective search on each image (:meth:`propose`).

        Returns:
            Per image ``boxes`` ``(D,4)`` float32 xyxy in that image's original pixels,
            ``scores`` ``(D,)`` softmax probabilities and ``labels`` ``(D,)`` int64 in
            ``0..C-1``, sorted by score after per-class NMS.
        """
        images = list(images)
        if proposals is None:
            proposals = [self.propose(img) for img in images]
        features, scales, image_sizes = self._features(images)
        rois = [
            self._to_input(p, scale, size)
            for p, scale, size in zip(proposals, scales, image_sizes, strict=True)
        ]
        results = self.roi_heads.predict([features], rois, image_sizes)
        for r, scale, img in zip(results, scales, images, strict=True):
            r["boxes"] = clip_boxes(r["boxes"] / scale, (img.shape[-2], img.shape[-1]))
        return results


def build_fast_rcnn(cfg: ModelConfig) -> FastRCNN:
    """Turn a model config into a :class:`FastRCNN` on one backbone level (``model.roi_head``,
    ``model.resize``, ``model.selective_search``); ``roi_head.freeze_backbone`` freezes the
    whole backbone (its BatchNorms in eval mode)."""
    if cfg.fpn.enabled:
        raise ConfigError(f"{cfg.name} pools from one feature level: set model.fpn.enabled false")
    backbone = build_backbone(cfg.backbone)
    if len(backbone.out_features) != 1:
        raise ConfigError(
            f"{cfg.name} takes one backbone level: give model.backbone.out_features one level"
        )
    channels, stride = backbone.levels[backbone.out_features[0]]
    roi_heads = build_roi_heads(cfg, backbone, channels, [stride])
    if cfg.roi_head.freeze_backbone:
        backbone.freeze(len(backbone.stages))
    ss = cfg.selective_search
    return FastRCNN(backbone, roi_heads, build_preprocessor(cfg), ss.mode, ss.max_proposals)
