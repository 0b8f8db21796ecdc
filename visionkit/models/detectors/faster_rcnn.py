"""Faster R-CNN (Ren et al., 2015): a backbone, a Region Proposal Network and a Fast R-CNN head.

Without a neck one feature level feeds both stages: VGG-16 ``conv5`` (stride 16) with RoI pooling
and two FC layers (the paper), or ResNet ``res4`` with the ``res5`` stage as the per-RoI box head
(C4, the ResNet paper). With an FPN neck (Lin et al., 2017) the RPN runs on every pyramid level
(P2-P6) with one anchor size per level and each RoI is pooled from one of P2-P5 by its size.
Training is approximate joint training: the RoI head treats proposals as fixed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visionkit.config.schema import ModelConfig
from visionkit.errors import ConfigError
from visionkit.models.anchors import AnchorGenerator
from visionkit.models.backbones import build_backbone
from visionkit.models.backbones.base import Backbone
from visionkit.models.heads.box_heads import Res5Head, TwoFCHead
from visionkit.models.heads.roi_heads import RoIHeads, fast_rcnn_matcher
from visionkit.models.heads.rpn import RegionProposalNetwork, RPNHead
from visionkit.models.matching import BalancedSampler, Matcher
from visionkit.models.necks.fpn import FPN
from visionkit.models.poolers import RoIPooler
from visionkit.models.preprocess import FixedSizePreprocessor
from visionkit.models.preprocess_keep_ratio import ShorterSidePreprocessor
from visionkit.structures.box_coder import BoxCoder
from visionkit.structures.boxes import clip_boxes, valid_boxes_mask


class FasterRCNN(nn.Module):
    """Backbone (-> neck) -> RPN proposals -> RoI head detections.

    Args:
        backbone: returns its ``out_features`` levels.
        rpn: proposals (and their losses) from every feature level.
        roi_heads: the Fast R-CNN head on the first ``roi_levels`` feature levels.
        preprocess: resizes, normalizes and batches images; gives the box scale factors.
        neck: an optional :class:`FPN` turning the backbone levels into a pyramid.
        roi_levels: how many feature levels (fine first) the RoI head pools from.
    """

    def __init__(
        self,
        backbone: Backbone,
        rpn: RegionProposalNetwork,
        roi_heads: RoIHeads,
        preprocess: FixedSizePreprocessor | ShorterSidePreprocessor,
        neck: FPN | None = None,
        roi_levels: int = 1,
    ) -> None:
        super().__init__()
        self.backbone, self.neck, self.rpn, self.roi_heads = backbone, neck, rpn, roi_heads
        self.preprocess = preprocess
        self.roi_levels = roi_levels

    def _features(
        self, images: Sequence[Tensor] | Tensor
    ) -> tuple[list[Tensor], Tensor, Tensor, Tensor]:
        """Returns per level ``(N, C, H/s, W/s)`` features (fine to coarse), ``(N, 2)`` original
        sizes, ``(N, 4)`` scale factors (original -> input pixels) and ``(N, 2)`` sizes ``(h, w)``
        of the images inside the batch."""
        batch, sizes = self.preprocess(images)
        scales = self.preprocess.scale_factors(sizes)
        image_sizes = (sizes * scales[:, [1, 0]]).round()
        out = self.backbone(batch)
        features = [out[name] for name in self.backbone.out_features]
        if self.neck is not None:
            features = self.neck(features)
        return features, sizes, scales, image_sizes

    def loss(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict]) -> dict[str, Tensor]:
        """The four losses of approximate joint training.

        Args:
            images: float RGB in [0, 1], a ``(N,3,H,W)`` tensor or a list of ``(3,H_i,W_i)``.
            targets: per image ``boxes`` ``(M,4)`` xyxy in that image's pixels (degenerate boxes
                are dropped), ``labels`` ``(M,)`` int64 in ``0..C-1``.

        Returns:
            ``loss_rpn_cls``, ``loss_rpn_box``, ``loss_roi_cls``, ``loss_roi_box`` (scalars).
        """
        features, _, scales, image_sizes = self._features(images)
        gt_boxes, gt_labels = scale_targets(targets, scales)
        proposals, losses = self.rpn(features, image_sizes, gt_boxes)
        roi_features = features[: self.roi_levels]
        return losses | self.roi_heads.loss(roi_features, proposals, gt_boxes, gt_labels)

    @torch.no_grad()
    def predict(self, images: Sequence[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        """Detect objects.

        Returns per image ``boxes`` ``(K,4)`` float32 xyxy in that image's original pixels,
        ``scores`` ``(K,)`` softmax probabilities and ``labels`` ``(K,)`` int64 in ``0..C-1``,
        sorted by score after per-class NMS.
        """
        features, sizes, scales, image_sizes = self._features(images)
        proposals, _ = self.rpn(features, image_sizes)
        results = self.roi_heads.predict(features[: self.roi_levels], proposals, image_sizes)
        for r, scale, size in zip(results, scales, sizes, strict=True):
            r["boxes"] = clip_boxes(r["boxes"] / scale, (float(size[0]), float(size[1])))
        return results


def scale_targets(targets: Sequence[dict], scales: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Ground truth in input pixels: per image ``(M_i, 4)`` xyxy boxes times its ``(4,)`` row of
    ``scales`` (original -> input pixels) and ``(M_i,)`` labels; degenerate boxes dropped."""
    gt_boxes, gt_labels = [], []
    for t, scale in zip(targets, scales, strict=True):
        boxes = t["boxes"].to(scale.device, torch.float32).reshape(-1, 4) * scale
        keep = valid_boxes_mask(boxes)
        gt_boxes.append(boxes[keep])
        gt_labels.append(t["labels"].to(scale.device).reshape(-1)[keep])
    return gt_boxes, gt_labels


def _box_head(cfg: ModelConfig, backbone: Backbone, pooler: RoIPooler, channels: int) -> nn.Module:
    """The configured box head on pooled ``channels``-wide features. The backbone never runs its
    stages after its deepest returned level: ``res5`` moves the first of them into the head; all
    of them leave the backbone."""
    feature = backbone.out_features[-1]
    names = list(backbone.levels)
    later = names[names.index(feature) + 1 :]
    rh = cfg.roi_head
    if rh.box_head == "res5" and (rh.pooler == "spp" or cfg.fpn.enabled):
        raise ConfigError("model.roi_head.box_head 'res5' takes one level and a k x k pooler")
    if rh.box_head == "res5" and not later:
        raise ConfigError(
            f"model.roi_head.box_head 'res5' needs a backbone stage after '{feature}'; "
            f"set model.backbone.out_features to an earlier level of {', '.join(names)}"
        )
    if rh.box_head == "res5":
        res5_channels = backbone.levels[later[0]][0]
        return Res5Head(backbone.drop_unused_stages()[later[0]], res5_channels)
    backbone.drop_unused_stages()
    return TwoFCHead(math.prod(pooler.output_shape(channels)), rh.fc_dim, rh.dropout)


def build_preprocessor(cfg: ModelConfig) -> FixedSizePreprocessor | ShorterSidePreprocessor:
    """``cfg.resize``'s preprocessor: keep the aspect ratio (``shorter_side``) or stretch to
    ``cfg.input_size`` (``fixed``)."""
    z = cfg.resize
    if z.mode == "shorter_side":
        return ShorterSidePreprocessor(
            z.min_size, z.max_size, cfg.pixel_mean, cfg.pixel_std, z.size_divisibility
        )
    if len(cfg.input_size) != 2:
        raise ConfigError("model.resize.mode 'fixed' needs model.input_size [height, width]")
    return FixedSizePreprocessor(cfg.input_size, cfg.pixel_mean, cfg.pixel_std)


def build_faster_rcnn(cfg: ModelConfig) -> FasterRCNN:
    """Turn a model config into a :class:`FasterRCNN`: one backbone level, or an FPN on several."""
    backbone = build_backbone(cfg.backbone)
    levels = [backbone.levels[name] for name in backbone.out_features]
    neck = None
    if cfg.fpn.enabled:
        f = cfg.fpn
        neck = FPN([c for c, _ in levels], [s for _, s in levels], f.out_channels, f.extra_pool)
        channels, strides = f.out_channels, neck.strides
        roi_levels = len(levels)
    elif len(levels) == 1:
        channels, strides, roi_levels = levels[0][0], [levels[0][1]], 1
    else:
        raise ConfigError(
            "faster_rcnn without model.fpn takes one backbone level: give "
            "model.backbone.out_features one level"
        )
    if len(cfg.anchors.sizes) != len(strides):
        raise ConfigError(
            f"model.anchors.sizes has {len(cfg.anchors.sizes)} lists for {len(strides)} feature "
            "levels (one feature level without model.fpn)"
        )
    anchors = AnchorGenerator(cfg.anchors.sizes, cfg.anchors.aspect_ratios, strides)
    if len(set(anchors.num_anchors)) != 1:
        raise ConfigError("model.anchors.sizes needs as many sizes on every level")
    r = cfg.rpn
    rpn = RegionProposalNetwork(
        RPNHead(channels, r.conv_channels, anchors.num_anchors[0]),
        anchors,
        Matcher([r.neg_iou_thresh, r.pos_iou_thresh], [0, -1, 1], r.allow_low_quality_matches),
        BalancedSampler(r.batch_size_per_image, r.positive_fraction),
        BoxCoder((1.0, 1.0, 1.0, 1.0)),
        pre_nms_top_n=(r.pre_nms_top_n_train, r.pre_nms_top_n_test),
        post_nms_top_n=(r.post_nms_top_n_train, r.post_nms_top_n_test),
        nms_thresh=r.nms_thresh,
        min_size=r.min_size,
        ignore_cross_boundary=r.ignore_cross_boundary,
        smooth_l1_beta=r.smooth_l1_beta,
        box_loss_weight=r.box_loss_weight,
    )
    roi_heads = build_roi_heads(cfg, backbone, channels, strides[:roi_levels])
    return FasterRCNN(backbone, rpn, roi_heads, build_preprocessor(cfg), neck, roi_levels)


def build_roi_heads(
    cfg: ModelConfig, backbone: Backbone, channels: int, strides: Sequence[int]
) -> RoIHeads:
    """The Fast R-CNN head of ``cfg.roi_head`` pooling ``channels``-wide features of the given
    ``strides`` (shared by Faster R-CNN, Fast R-CNN and SPPNet). Removes the backbone's stages
    after its deepest returned level (a ``res5`` box head takes the first of them)."""
    rh = cfg.roi_head
    pooler = RoIPooler(
        rh.pooler, rh.pool_size, strides, rh.sampling_ratio, rh.spp_levels,
        cfg.fpn.canonical_size, cfg.fpn.canonical_level,
    )  # fmt: skip
    return RoIHeads(
        pooler,
        _box_head(cfg, backbone, pooler, channels),
        cfg.num_classes,
        fast_rcnn_matcher(rh.fg_iou_thresh, rh.bg_iou_thresh_lo),
        BalancedSampler(rh.batch_size_per_image, rh.positive_fraction),
        BoxCoder(rh.box_coder_weights),
        smooth_l1_beta=rh.smooth_l1_beta,
        score_thresh=rh.score_thresh,
        nms_thresh=rh.nms_thresh,
        max_detections=rh.max_detections,
    )
