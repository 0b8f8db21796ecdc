"""Faster R-CNN (Ren et al., 2015): a backbone, a Region Proposal Network and a Fast R-CNN head.

Without a neck one feature level feeds both stages: VGG-16 ``conv5`` (stride 16) with RoI pooling
and two FC layers (the paper), or ResNet ``res4`` with the ``res5`` stage as the per-RoI box head
(C4, the ResNet paper). With an FPN neck (Lin et al., 2017) the RPN runs on every pyramid level
(P2-P6) with one anchor size per level and each RoI is pooled from one of P2-P5 by its size.
Training is approximate joint training: the RoI head treats proposals as fixed.
"""

from __future__ import annotations

from visionkit.config.schema import ModelConfig
from visionkit.errors import ConfigError
from visionkit.models.anchors import AnchorGenerator
from visionkit.models.backbones import build_backbone
from visionkit.models.detectors.two_stage import (
    TwoStageDetector,
    build_roi_heads,
    two_stage_preprocessor,
)
from visionkit.models.heads.rpn import RPNHead
from visionkit.models.matching import BalancedSampler, Matcher
from visionkit.models.necks.fpn import FPN
from visionkit.models.proposers import RegionProposalNetwork
from visionkit.structures.box_coder import BoxCoder


def build_faster_rcnn(cfg: ModelConfig) -> TwoStageDetector:
    """Turn a model config into Faster R-CNN: a :class:`TwoStageDetector` whose proposer is a
    :class:`RegionProposalNetwork` on one backbone level, or on an FPN over several."""
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
    a = cfg.anchors
    anchors = AnchorGenerator(a.sizes, a.aspect_ratios, strides, a.layout)
    if len(set(anchors.num_anchors)) != 1:
        raise ConfigError("model.anchors.sizes needs as many sizes on every level")
    r = cfg.rpn
    proposer = RegionProposalNetwork(
        RPNHead(channels, r.conv_channels, anchors.num_anchors[0]),
        anchors,
        Matcher([r.neg_iou_thresh, r.pos_iou_thresh], [0, -1, 1], r.allow_low_quality_matches),
        BalancedSampler(r.batch_size_per_image, r.positive_fraction),
        BoxCoder((1.0, 1.0, 1.0, 1.0)),
        pre_nms_top_n=(r.pre_nms_top_n_train, r.pre_nms_top_n_test),
        post_nms_top_n=(r.post_nms_top_n_train, r.post_nms_top_n_test),
        nms_thresh=r.nms_thresh,
        min_size=r.min_size,
        sigmoid_scores=r.sigmoid_scores,
        ignore_cross_boundary=r.ignore_cross_boundary,
        smooth_l1_beta=r.smooth_l1_beta,
        box_loss_weight=r.box_loss_weight,
    )
    roi_heads = build_roi_heads(cfg, backbone, channels, strides[:roi_levels])
    return TwoStageDetector(
        backbone, proposer, roi_heads, two_stage_preprocessor(cfg), neck=neck, roi_levels=roi_levels
    )
