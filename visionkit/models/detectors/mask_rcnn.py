"""Mask R-CNN (He, Gkioxari, Dollar & Girshick, 2017): Faster R-CNN plus an FCN on each RoI.

Faster R-CNN (``faster_rcnn.py``) finds and classifies boxes; a third branch in the RoI heads
predicts each object's mask (``heads/mask_head.py``). It is an FCN applied per RoI: RoIAlign
cuts a ``(R, 256, 14, 14)`` feature of every RoI from its pyramid level (bilinear, no
quantization, so the mask stays pixel-aligned with the box), four ``3 x 3`` convs keep it
``14 x 14``, a ``2 x 2`` stride-2 transposed conv gives ``28 x 28`` and a ``1 x 1`` conv one
logit map per class: ``(R, C, 28, 28)``. Being convolutional to the end, the head keeps the
RoI's spatial layout instead of flattening it into FC vectors.

Masks are per class, with a sigmoid each: the classifier alone decides the class, and the mask
branch is trained only on the ground-truth class's map of each positive RoI (binary
cross-entropy against the instance's mask cropped to the RoI at ``28 x 28``), so the classes do
not compete for pixels as a per-pixel softmax would make them (the paper's decoupling: +5.5 mask
AP over a softmax). At test time the mask branch runs on the final detections (``(D, 1, 28,
28)``, the detected class's map), and :func:`~visionkit.structures.masks.paste_masks` resizes
each into its box in the original image and thresholds it at 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from visionkit.config.schema import ModelConfig
from visionkit.models.base import INSTANCE_OUTPUTS, DetectExport, detection_outputs, frame_sizes
from visionkit.models.detectors.faster_rcnn import build_faster_rcnn
from visionkit.models.detectors.two_stage import TwoStageDetector
from visionkit.models.heads.mask_head import MaskHead, MaskRoIHeads
from visionkit.models.heads.roi_heads import RoIHeads
from visionkit.models.poolers import RoIPooler
from visionkit.models.postprocess import split_by_image
from visionkit.structures.masks import paste_masks


class MaskRCNN(TwoStageDetector):
    """A :class:`TwoStageDetector` with an RPN whose RoI heads are :class:`MaskRoIHeads`.

    Targets carry ``masks``: an :class:`~visionkit.structures.masks.InstanceMasks` with one mask
    per box, in the image's pixels.
    """

    task: ClassVar[str] = "instance"
    roi_heads: MaskRoIHeads

    def _heads(
        self, batch: Tensor, image_sizes: Tensor, rois: Tensor | None
    ) -> tuple[list[Tensor], Tensor, Tensor, Tensor]:
        """The RoI heads' levels, the rois (the proposer's when None), class logits, deltas."""
        features = self.features(batch)
        if rois is None:
            rois = self.proposer.rois(features, image_sizes)
        levels = features[: self.roi_levels]
        logits, deltas = self.roi_heads(levels, rois)
        return levels, rois, logits, deltas

    def forward(
        self, batch: Tensor, image_sizes: Tensor | None = None, rois: Tensor | None = None
    ) -> dict[str, Tensor]:
        """:meth:`TwoStageDetector.forward`: ``rois``, ``class_logits``, ``box_deltas`` (the
        masks need the detections: :meth:`detect`)."""
        _, rois, logits, deltas = self._heads(batch, frame_sizes(batch, image_sizes), rois)
        return {"rois": rois, "class_logits": logits, "box_deltas": deltas}

    def loss(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict]) -> dict[str, Tensor]:
        """The Faster R-CNN losses (:meth:`TwoStageDetector.loss`) and ``loss_mask_bce``.

        Args:
            images: as in :meth:`TwoStageDetector.loss`.
            targets: per image ``boxes``, ``labels`` and ``masks`` (an ``InstanceMasks`` with
                one mask per box, in that image's pixels).
        """
        batch = self.preprocess(images)
        features = self.features(batch.tensor)
        boxes = [t["boxes"].reshape(-1, 4) for t in targets]
        for t, b in zip(targets, boxes, strict=True):
            if len(t["masks"]) != len(b):
                raise ValueError(f"{len(t['masks'])} instance masks for {len(b)} boxes")
        # the kept (non-degenerate) ground truth's rows, through the boxes' own filter
        gt_boxes, kept = batch.targets_to_input(boxes, [torch.arange(len(b)) for b in boxes])
        gt_labels, gt_masks = [], []
        for t, k in zip(targets, kept, strict=True):
            gt_labels.append(t["labels"].reshape(-1).to(k.device)[k])
            gt_masks.append(t["masks"] if len(k) == len(t["masks"]) else t["masks"][k.cpu()])
        proposals, losses = self.proposer.propose(batch, features, targets)
        levels = features[: self.roi_levels]
        roi_losses = self.roi_heads.loss(
            levels, proposals, gt_boxes, gt_labels, gt_masks, batch.scales
        )
        return losses | roi_losses

    def detect(
        self, batch: Tensor, image_sizes: Tensor | None = None, rois: Tensor | None = None
    ) -> dict[str, Tensor]:
        """:meth:`TwoStageDetector.detect` plus ``masks`` ``(D, 1, M, M)`` float32: each
        detection's probabilities of its own class (``M = 2 x model.mask_head.pool_size``),
        over its box; tensor operations only (the ONNX export)."""
        sizes = frame_sizes(batch, image_sizes)
        levels, rois, logits, deltas = self._heads(batch, sizes, rois)
        detections = self.roi_heads.detections(logits, deltas, rois, sizes)
        detections["masks"] = self.roi_heads.mask_probs(levels, detections)
        return detections

    @torch.no_grad()
    def predict(self, images: Sequence[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        """Detect objects and their masks.

        Returns:
            Per image :meth:`TwoStageDetector.predict`'s ``boxes``, ``scores``, ``labels`` and
            ``masks`` ``(D, H, W)`` bool in that image's original pixels (pasted into the
            boxes and thresholded at 0.5: :func:`~visionkit.structures.masks.paste_masks`).
        """
        batch = self.preprocess(images)
        detections = self.detect(batch.tensor, batch.image_sizes)
        results = batch.postprocess(split_by_image(detections, len(batch)))
        for r, (h, w) in zip(results, batch.original_sizes.long().tolist(), strict=True):
            r["masks"] = paste_masks(r["masks"], r["boxes"], h, w)
        return results

    def export_module(self) -> nn.Module:
        """:meth:`detect` on ``images`` and ``image_sizes`` -> :data:`INSTANCE_OUTPUTS`."""
        return InstanceExport(self, ("images", "image_sizes"))

    def summary_paths(self, x: Tensor, rois: int) -> None:
        """:meth:`TwoStageDetector.summary_paths` and the mask head on as many regions, at
        most the test-time detections per image (where it runs)."""
        super().summary_paths(x, rois)
        head, k = self.roi_heads.mask_head, self.roi_heads.mask_pooler.output_size
        head(x.new_zeros(min(rois, self.roi_heads.max_detections), head.in_channels, k, k))


class InstanceExport(DetectExport):
    """:meth:`MaskRCNN.detect` as an ONNX graph body: ``(batch, image_sizes)`` ->
    :data:`INSTANCE_OUTPUTS` (the detections' and ``masks`` ``(D, 1, M, M)``)."""

    outputs = INSTANCE_OUTPUTS

    def forward(
        self, batch: Tensor, image_sizes: Tensor | None = None, proposals: Tensor | None = None
    ) -> tuple[Tensor, ...]:
        sizes = None if image_sizes is None else image_sizes.float()
        detections = self.model.detect(batch, sizes, proposals)
        return (*detection_outputs(detections), detections["masks"])


def build_mask_rcnn(cfg: ModelConfig) -> MaskRCNN:
    """Turn a model config into Mask R-CNN: Faster R-CNN (:func:`build_faster_rcnn`: backbone,
    FPN, RPN, Fast R-CNN head) whose RoI heads get the mask branch of ``model.mask_head``
    (RoIAlign ``pool_size`` from the box head's levels, by the same level rule)."""
    base = build_faster_rcnn(cfg)
    heads, mh = base.roi_heads, cfg.mask_head
    strides = heads.pooler.strides
    if cfg.fpn.enabled:
        channels = cfg.fpn.out_channels
    else:
        channels = base.backbone.levels[base.backbone.out_features[0]][0]
    mask_pooler = RoIPooler(
        "roi_align", mh.pool_size, strides, mh.sampling_ratio, (),
        cfg.fpn.canonical_size, cfg.fpn.canonical_level, cfg.roi_head.aligned, cfg.fpn.level_eps,
    )  # fmt: skip
    mask_head = MaskHead(channels, cfg.num_classes, mh.conv_channels, mh.num_convs)
    roi_heads = _with_mask_branch(heads, mask_pooler, mask_head)
    return MaskRCNN(
        base.backbone, base.proposer, roi_heads, base.preprocess,
        neck=base.neck, roi_levels=base.roi_levels,
    )  # fmt: skip


def _with_mask_branch(heads: RoIHeads, pooler: RoIPooler, mask_head: MaskHead) -> MaskRoIHeads:
    """The Fast R-CNN head ``heads`` as built (its modules and settings) with the mask branch."""
    out = MaskRoIHeads(
        heads.pooler, heads.box_head, heads.num_classes, heads.matcher, heads.sampler,
        heads.box_coder, smooth_l1_beta=heads.beta, score_thresh=heads.score_thresh,
        nms_thresh=heads.nms_thresh, max_detections=heads.max_detections,
        mask_pooler=pooler, mask_head=mask_head,
    )  # fmt: skip
    out.cls_score, out.bbox_pred = heads.cls_score, heads.bbox_pred  # its initialization
    return out
