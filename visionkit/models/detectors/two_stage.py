"""The two-stage detector: backbone (-> neck) -> proposer -> RoI heads.

One class serves Faster R-CNN, Fast R-CNN and SPPNet; they differ only in the *proposer* they are
built with (:class:`~visionkit.models.proposers.Proposer`) and in their RoI pooler:

- Faster R-CNN (``faster_rcnn.py``): a :class:`RegionProposalNetwork` on the feature levels
  proposes regions, trained jointly (approximate joint training: proposals are detached).
- Fast R-CNN and SPPNet (``fast_rcnn.py``, ``sppnet.py``): :class:`GivenProposals`: regions come
  with the images (targets' ``proposals`` in training, ``predict(..., proposals=)`` at test
  time) or from selective search on each image.

The RoI heads (:class:`RoIHeads`) pool each region from the first ``roi_levels`` feature levels
(RoI pooling, RoIAlign or SPPNet's pyramid), run the box head and score ``C + 1`` classes and
``4C`` deltas. Boxes cross the model's boundary in original pixels; inside they are in input
(batch) pixels (:class:`~visionkit.models.preprocess.ImageBatch`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visionkit.config.schema import ModelConfig
from visionkit.errors import ConfigError
from visionkit.models.backbones import build_backbone
from visionkit.models.backbones.base import Backbone
from visionkit.models.base import DetectExport, Detector, frame_sizes
from visionkit.models.heads.box_heads import Res5Head, TwoFCHead
from visionkit.models.heads.roi_heads import RoIHeads, fast_rcnn_matcher
from visionkit.models.matching import BalancedSampler
from visionkit.models.necks.fpn import FPN
from visionkit.models.poolers import RoIPooler, boxes_to_rois
from visionkit.models.postprocess import split_by_image
from visionkit.models.preprocess import Preprocessor, build_preprocessor
from visionkit.models.proposers import GivenProposals, Proposer
from visionkit.structures.box_coder import BoxCoder


class TwoStageDetector(Detector):
    """Backbone (-> neck) -> proposals (its proposer's) -> RoI head detections.

    Args:
        backbone: returns its ``out_features`` levels.
        proposer: where the regions come from (an RPN, or given proposals); its
            ``predict_extras`` are the detector's.
        roi_heads: the Fast R-CNN head on the first ``roi_levels`` feature levels.
        preprocess: resizes, normalizes and batches images.
        neck: an optional :class:`FPN` turning the backbone levels into a pyramid.
        roi_levels: how many feature levels (fine first) the RoI head pools from.
    """

    # checkpoints written before proposers/ name Faster R-CNN's proposer slot `rpn`
    renamed_keys = {"rpn.": "proposer."}

    def __init__(
        self,
        backbone: Backbone,
        proposer: Proposer,
        roi_heads: RoIHeads,
        preprocess: Preprocessor,
        *,
        neck: FPN | None = None,
        roi_levels: int = 1,
    ) -> None:
        super().__init__()
        self.backbone, self.neck = backbone, neck
        self.proposer, self.roi_heads = proposer, roi_heads
        self.preprocess, self.roi_levels = preprocess, roi_levels
        # what predict() takes beside the images (the evaluation loop passes targets' fields)
        self.predict_extras: tuple[str, ...] = proposer.predict_extras

    def features(self, batch: Tensor) -> list[Tensor]:
        """``(N, 3, H, W)`` normalized batch -> per level ``(N, C, H/s, W/s)``, fine to coarse."""
        out = self.backbone(batch)
        features = [out[name] for name in self.backbone.out_features]
        return self.neck(features) if self.neck is not None else features

    def forward(
        self, batch: Tensor, image_sizes: Tensor | None = None, rois: Tensor | None = None
    ) -> dict[str, Tensor]:
        """The raw network on a normalized batch (what :meth:`detect` and export run).

        Args:
            batch: ``(N, 3, H, W)`` normalized images (:class:`Preprocessor`'s ``tensor``).
            image_sizes: ``(N, 2)`` float ``(h, w)`` of each image inside the batch, to which
                the proposer clips its proposals; None: the whole batch frame.
            rois: ``(R, 5)`` ``(image index, x1, y1, x2, y2)`` in batch pixels; None: the
                proposer's test-time regions (:meth:`Proposer.rois`: the RPN's, sorted by
                objectness over the batch; given proposals must be passed: ValueError).

        Returns:
            ``rois`` ``(R, 5)``, ``class_logits`` ``(R, C + 1)`` (background last) and
            ``box_deltas`` ``(R, 4C)`` (the box coder's deltas of each RoI, per class).
        """
        features = self.features(batch)
        if rois is None:
            rois = self.proposer.rois(features, frame_sizes(batch, image_sizes))
        logits, deltas = self.roi_heads(features[: self.roi_levels], rois)
        return {"rois": rois, "class_logits": logits, "box_deltas": deltas}

    def loss(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict]) -> dict[str, Tensor]:
        """The training losses.

        Args:
            images: float RGB in [0, 1], a ``(N,3,H,W)`` tensor or a list of ``(3,H_i,W_i)``.
            targets: per image ``boxes`` ``(M,4)`` xyxy in that image's pixels (degenerate boxes
                are dropped), ``labels`` ``(M,)`` int64 in ``0..C-1``; with given proposals also
                ``proposals`` ``(K,4)`` float xyxy in that image's pixels, best first.

        Returns:
            ``loss_roi_cls``, ``loss_roi_box`` and the proposer's (an RPN's ``loss_rpn_cls``,
            ``loss_rpn_box``) (scalars).
        """
        batch = self.preprocess(images)
        features = self.features(batch.tensor)
        gt_boxes, gt_labels = batch.targets_to_input(
            [t["boxes"] for t in targets], [t["labels"] for t in targets]
        )
        proposals, losses = self.proposer.propose(batch, features, targets)
        roi_losses = self.roi_heads.loss(
            features[: self.roi_levels], proposals, gt_boxes, gt_labels
        )
        return losses | roi_losses

    @torch.no_grad()
    def predict(
        self, images: Sequence[Tensor] | Tensor, proposals: Sequence[Tensor] | None = None
    ) -> list[dict[str, Tensor]]:
        """Detect objects: :meth:`detect`'s operations on the proposer's regions.

        Args:
            images: as in :meth:`loss`.
            proposals: given-proposal detectors only (``predict_extras``): per image ``(K_i, 4)``
                xyxy in its original pixels, best first; None: selective search on each image.
                A detector whose proposer proposes its own regions refuses them (ValueError).

        Returns:
            Per image ``boxes`` ``(D,4)`` float32 xyxy in that image's original pixels,
            ``scores`` ``(D,)`` softmax probabilities and ``labels`` ``(D,)`` int64 in
            ``0..C-1``, sorted by score after per-class NMS.
        """
        batch = self.preprocess(images)
        features = self.features(batch.tensor)
        regions, _ = self.proposer.propose(batch, features, proposals=proposals)
        rois = boxes_to_rois(regions)
        logits, deltas = self.roi_heads(features[: self.roi_levels], rois)
        detections = self.roi_heads.detections(logits, deltas, rois, batch.image_sizes)
        return batch.postprocess(split_by_image(detections, len(batch)))

    def detect(
        self, batch: Tensor, image_sizes: Tensor | None = None, rois: Tensor | None = None
    ) -> dict[str, Tensor]:
        """:meth:`forward` and the RoI head's post-processing, tensor operations only (what the
        ONNX export runs).

        Args:
            batch, image_sizes, rois: as in :meth:`forward` (boxes are clipped to each image).

        Returns:
            The flat detections of the batch (:meth:`RoIHeads.detections`): ``boxes`` ``(D, 4)``
            float32 xyxy in input pixels, ``scores``, ``labels``, ``image_index``.
        """
        sizes = frame_sizes(batch, image_sizes)
        out = self(batch, sizes, rois)
        return self.roi_heads.detections(out["class_logits"], out["box_deltas"], out["rois"], sizes)

    def export_module(self) -> nn.Module:
        """:meth:`detect` on ``images``, ``image_sizes`` and the proposer's extras (given
        proposals: ``proposals`` ``(R, 5)`` rois)."""
        return DetectExport(self, ("images", "image_sizes", *self.proposer.predict_extras))

    def regions_per_image(self) -> int:
        """The proposer's test-time regions per image."""
        return self.proposer.regions_per_image()

    def summary_paths(self, x: Tensor, rois: int) -> None:
        """Backbone (and neck), the proposer's layers, and the RoI head's box head, classifier
        and box regressor on ``rois`` regions (the pooler is not run: no parameters, 0 MACs)."""
        features = self.features(x)
        self.proposer.summary_paths(features)
        heads, levels = self.roi_heads, features[: self.roi_levels]
        pooled = levels[0].new_zeros(rois, *heads.pooler.output_shape(levels[0].shape[1]))
        y = heads.box_head(pooled)
        heads.cls_score(y)
        heads.bbox_pred(y)


def two_stage_preprocessor(cfg: ModelConfig) -> Preprocessor:
    """``model.resize``: keep the aspect ratio (``shorter_side``: ``min_size``/``max_size``,
    padded to ``size_divisibility``) or stretch to ``model.input_size`` (``fixed``)."""
    if cfg.resize.mode == "shorter_side":
        return build_preprocessor(cfg, "shorter_side", cfg.resize.size_divisibility)
    return build_preprocessor(cfg, "fixed")


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


def build_roi_heads(
    cfg: ModelConfig, backbone: Backbone, channels: int, strides: Sequence[int]
) -> RoIHeads:
    """The Fast R-CNN head of ``cfg.roi_head`` pooling ``channels``-wide features of the given
    ``strides``. Removes the backbone's stages after its deepest returned level (a ``res5``
    box head takes the first of them)."""
    rh = cfg.roi_head
    pooler = RoIPooler(
        rh.pooler, rh.pool_size, strides, rh.sampling_ratio, rh.spp_levels,
        cfg.fpn.canonical_size, cfg.fpn.canonical_level, rh.aligned, cfg.fpn.level_eps,
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


def build_given_proposal_detector(cfg: ModelConfig) -> TwoStageDetector:
    """A :class:`TwoStageDetector` with :class:`GivenProposals` on one backbone level
    (``model.roi_head``, ``model.resize``, ``model.selective_search``): Fast R-CNN and SPPNet.
    ``roi_head.freeze_backbone`` freezes the whole backbone (its BatchNorms in eval mode)."""
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
    proposer = GivenProposals(ss.mode, ss.max_proposals)
    return TwoStageDetector(backbone, proposer, roi_heads, two_stage_preprocessor(cfg))
