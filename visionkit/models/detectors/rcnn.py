"""R-CNN (Girshick et al., 2014): a CNN run on every warped region proposal.

Each proposal (selective search) is dilated so that ``context_pad`` pixels of context surround it
in the warped frame, and warped (anisotropically) to ``warp_size x warp_size`` with RoIAlign on
the normalized image at its own size; pixels outside the image are the mean colour (0 after
normalization), as in the paper. The backbone's deepest level is average-pooled to ``pool_size x
pool_size`` ("pool5"), then fc6/fc7 (:class:`TwoFCHead`).

Fine-tuning (:meth:`RCNN.loss`): a ``C + 1``-way classifier on fc7 over mini-batches of
``fg_per_batch`` windows at IoU >= 0.5 with a box (its class) and ``bg_per_batch`` others
(background) drawn from all images of the batch (proposals plus the ground truth), and the
class-specific box regressor, a linear layer on pool5, trained jointly with smooth-L1 on the
sampled windows at IoU >= 0.6 (the paper fits it afterwards as ridge regression on pool5).

The SVM stage (``engine/rcnn_svm.py``, ``visionkit train-svms``) fits per-class linear SVMs
on fc7 and stores them in the ``svm_*`` buffers; :meth:`RCNN.predict` scores with them once they
are set (``svm_trained``) and with the softmax otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou, roi_align

from visionkit.config.schema import ModelConfig
from visionkit.errors import ConfigError
from visionkit.models.backbones import build_backbone
from visionkit.models.backbones.base import Backbone
from visionkit.models.base import DETECTION_OUTPUTS, Detector, detection_outputs, frame_sizes
from visionkit.models.heads.box_heads import TwoFCHead
from visionkit.models.heads.outputs import in_float32
from visionkit.models.heads.roi_heads import box_predictor
from visionkit.models.losses import box_regression_loss
from visionkit.models.matching import BalancedSampler
from visionkit.models.poolers import boxes_to_rois
from visionkit.models.postprocess import class_specific_detections, split_by_image
from visionkit.models.preprocess import Preprocessor, build_preprocessor
from visionkit.models.proposers import GivenProposals
from visionkit.structures.box_coder import BoxCoder


class RCNN(Detector):
    """Warped regions -> backbone -> pool5 -> fc6/fc7 -> softmax (or SVM) scores and boxes.

    Args:
        backbone: its deepest returned level is pooled. num_classes: C (no background).
        preprocess: normalizes images, each at its own size (``resize`` ``none``).
        proposer: the regions: given with the images, or selective search.
        warp_size, context_pad: the warped frame's side and the context around the box, in px.
        pool_size: pool5's side. fc_dim, dropout: fc6/fc7.
        sampler: the fine-tuning mini-batch over a whole batch (e.g. 128 at 25 % foreground).
        fg_iou_thresh, box_iou_thresh: IoU of fine-tuning positives and of regressed windows.
        box_coder: the regression deltas. smooth_l1_beta: the box loss's beta (0 = L1).
        score_thresh, svm_score_thresh: test-time thresholds on softmax / SVM scores.
        nms_thresh, max_detections: per-class NMS and the per-image cap at test time.
        chunk_size: warped regions per CNN forward at test time.
    """

    predict_extras: tuple[str, ...] = GivenProposals.predict_extras

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        preprocess: Preprocessor,
        proposer: GivenProposals,
        *,
        warp_size: int = 227,
        context_pad: int = 16,
        pool_size: int = 1,
        fc_dim: int = 4096,
        dropout: float = 0.5,
        sampler: BalancedSampler | None = None,
        fg_iou_thresh: float = 0.5,
        box_iou_thresh: float = 0.6,
        box_coder: BoxCoder | None = None,
        smooth_l1_beta: float = 1.0,
        score_thresh: float = 0.05,
        svm_score_thresh: float = -1.0,
        nms_thresh: float = 0.3,
        max_detections: int = 100,
        chunk_size: int = 256,
    ) -> None:
        super().__init__()
        if 2 * context_pad >= warp_size:
            raise ConfigError(f"model.rcnn.context_pad {context_pad} leaves no room in {warp_size}")
        self.backbone, self.num_classes = backbone, num_classes
        self.warp_size, self.context_pad, self.pool_size = warp_size, context_pad, pool_size
        self.preprocess = preprocess
        channels = backbone.levels[backbone.out_features[-1]][0]
        pool5_dim = channels * pool_size * pool_size
        self.head = TwoFCHead(pool5_dim, fc_dim, dropout)
        self.cls_score, self.bbox_pred = box_predictor(fc_dim, pool5_dim, num_classes)
        self.register_buffer("svm_weight", torch.zeros(num_classes, fc_dim))
        self.register_buffer("svm_bias", torch.zeros(num_classes))
        self.register_buffer("svm_trained", torch.tensor(False))
        self.sampler = sampler or BalancedSampler(128, 0.25)
        self.fg_iou_thresh, self.box_iou_thresh = fg_iou_thresh, box_iou_thresh
        self.box_coder, self.beta = box_coder or BoxCoder((10.0, 10.0, 5.0, 5.0)), smooth_l1_beta
        self.score_thresh, self.svm_score_thresh = score_thresh, svm_score_thresh
        self.nms_thresh, self.max_detections = nms_thresh, max_detections
        self.proposer = proposer
        self.chunk_size = chunk_size

    @property
    def has_svms(self) -> bool:
        """Whether :meth:`predict` scores with the SVMs (set by :meth:`set_svms`)."""
        return bool(self.svm_trained)

    def set_svms(self, weight: Tensor, bias: Tensor) -> None:
        """Install ``(C, fc_dim)`` SVM weights and ``(C,)`` biases (applied to fc7 features)."""
        self.svm_weight.copy_(weight)
        self.svm_bias.copy_(bias)
        self.svm_trained.fill_(True)

    def warp(self, batch: Tensor, image_index: Tensor, boxes: Tensor) -> Tensor:
        """Warp regions with context padding.

        Args:
            batch: ``(N, 3, H, W)`` normalized images.
            image_index: ``(K,)`` int64, each region's image in the batch.
            boxes: ``(K, 4)`` float xyxy in that image's pixels.

        Returns:
            ``(K, 3, warp_size, warp_size)`` float32: the box dilated by ``warp_size / (warp_size
            - 2 context_pad)`` about its centre, bilinearly resampled (2 x 2 samples per output
            pixel); outside the image 0 (the mean colour).
        """
        s, p = self.warp_size, self.context_pad
        boxes = boxes.float()
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        half = (boxes[:, 2:] - boxes[:, :2]) / 2 * (s / (s - 2 * p))
        rois = torch.cat([image_index[:, None].float(), centre - half, centre + half], 1)
        # float32: the warp samples pixels at sub-pixel box corners (roi_align needs one dtype)
        return roi_align(batch.float(), rois, (s, s), 1.0, 2, aligned=True)

    def embed(self, crops: Tensor) -> tuple[Tensor, Tensor]:
        """``(K, 3, S, S)`` warped regions -> ``(K, C_b * k * k)`` pool5 and ``(K, fc_dim)`` fc7."""
        level = self.backbone(crops)[self.backbone.out_features[-1]]
        pool5 = F.adaptive_avg_pool2d(level, self.pool_size).flatten(1)
        return pool5, self.head(pool5)

    def region_features(
        self, batch: Tensor, image_index: Tensor, boxes: Tensor
    ) -> tuple[Tensor, Tensor]:
        """:meth:`warp` + :meth:`embed` in chunks of ``chunk_size`` regions -> pool5, fc7."""
        outs = [
            self.embed(self.warp(batch, i, b))
            for i, b in zip(
                image_index.split(self.chunk_size), boxes.split(self.chunk_size), strict=True
            )
        ]
        if not outs:
            return self.embed(batch.new_zeros(0, 3, self.warp_size, self.warp_size))
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    def loss(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict]) -> dict[str, Tensor]:
        """Fine-tuning losses.

        Args:
            images: float RGB in [0, 1], a ``(N,3,H,W)`` tensor or a list of ``(3,H_i,W_i)``.
            targets: per image ``boxes`` ``(M,4)`` xyxy in that image's pixels (degenerate ones
                dropped), ``labels`` ``(M,)`` int64 in ``0..C-1``, ``proposals`` ``(K,4)`` xyxy.

        Returns:
            ``loss_rcnn_cls`` (cross-entropy) and ``loss_rcnn_box`` (smooth-L1 on the windows at
            IoU >= ``box_iou_thresh``, for their class), both divided by the windows sampled.
        """
        batch = self.preprocess(images)
        device = batch.tensor.device
        gt_boxes, gt_labels = batch.targets_to_input(
            [t["boxes"] for t in targets], [t["labels"] for t in targets]
        )
        proposals, _ = self.proposer.propose(batch, (), targets)
        windows, index, best_iou, classes, matched = [], [], [], [], []
        for i, (gt, lab, props) in enumerate(zip(gt_boxes, gt_labels, proposals, strict=True)):
            cand = torch.cat([props, gt])
            if len(gt):
                iou, match = box_iou(gt, cand).max(0)
                label, target = lab[match], gt[match]
            else:
                iou, label, target = cand.new_zeros(len(cand)), lab.new_zeros(len(cand)), cand
            windows.append(cand)
            index.append(torch.full((len(cand),), i, dtype=torch.int64, device=device))
            best_iou.append(iou)
            classes.append(torch.where(iou >= self.fg_iou_thresh, label, self.num_classes))
            matched.append(target)
        iou, cls = torch.cat(best_iou), torch.cat(classes)
        pos, neg = self.sampler((cls < self.num_classes).to(torch.int8))
        idx = torch.cat([pos, neg])
        boxes = torch.cat(windows)[idx]
        pool5, fc7 = self.embed(self.warp(batch.tensor, torch.cat(index)[idx], boxes))
        cls, num = cls[idx], max(idx.numel(), 1)
        # the losses in float32 under autocast, as the RoI heads'
        cls_loss = F.cross_entropy(self.cls_score(fc7).float(), cls, reduction="sum") / num
        reg = torch.nonzero(iou[idx] >= self.box_iou_thresh).squeeze(1)
        deltas = self.bbox_pred(pool5).float().view(-1, self.num_classes, 4)[reg, cls[reg]]
        target = self.box_coder.encode(boxes[reg], torch.cat(matched)[idx][reg])
        box = box_regression_loss(deltas, target, self.beta)
        return {"loss_rcnn_cls": cls_loss, "loss_rcnn_box": box / num}

    def forward(
        self, batch: Tensor, image_sizes: Tensor | None = None, rois: Tensor | None = None
    ) -> dict[str, Tensor]:
        """The raw network on regions of a normalized batch, warped and embedded in chunks of
        ``chunk_size`` regions.

        Args:
            batch: ``(N, 3, H, W)`` normalized images (:class:`Preprocessor`'s ``tensor``).
            image_sizes: not used (regions are warped from the whole batch, 0 outside images).
            rois: ``(R, 5)`` ``(image index, x1, y1, x2, y2)`` in batch pixels; required
                (ValueError without: R-CNN classifies regions it is given).

        Returns:
            ``rois`` ``(R, 5)``; ``class_logits`` ``(R, C + 1)`` (background last);
            ``box_deltas`` ``(R, 4C)`` (deltas of each region, per class); ``svm_scores``
            ``(R, C)``: the SVMs' margins on fc7 (meaningful once :attr:`has_svms`).
        """
        if rois is None:
            raise ValueError("R-CNN classifies given regions: pass rois (R, 5)")
        return self.outputs(rois, *self.region_features(batch, rois[:, 0].long(), rois[:, 1:]))

    def outputs(self, rois: Tensor, pool5: Tensor, fc7: Tensor) -> dict[str, Tensor]:
        """:meth:`forward`'s outputs from the regions' pool5 and fc7 features."""
        return {
            "rois": rois,
            "class_logits": self.cls_score(fc7),
            "box_deltas": self.bbox_pred(pool5),
            # float32 under autocast too: once trained, the SVMs' scores are the detections'
            "svm_scores": in_float32(lambda f: f.float() @ self.svm_weight.T + self.svm_bias, fc7),
        }

    @torch.no_grad()
    def predict(
        self, images: Sequence[Tensor] | Tensor, proposals: Sequence[Tensor] | None = None
    ) -> list[dict[str, Tensor]]:
        """Score each image's regions (the whole batch's, warped and embedded in chunks of
        ``chunk_size``) and keep the best.

        Args:
            images: float RGB in [0, 1], a ``(N,3,H,W)`` tensor or a list of ``(3,H_i,W_i)``.
            proposals: per image ``(K_i, 4)`` xyxy in its pixels, best first; None: selective
                search on each image.

        Returns:
            Per image ``boxes`` ``(D,4)`` float32 xyxy in that image's pixels, ``scores``
            ``(D,)`` (SVM margins once the SVMs are set, else softmax probabilities) and
            ``labels`` ``(D,)`` int64 in ``0..C-1``, sorted by score after per-class NMS.
        """
        batch = self.preprocess(images)
        regions, _ = self.proposer.propose(batch, (), proposals=proposals)
        detections = self.detect(batch.tensor, batch.image_sizes, boxes_to_rois(regions))
        return batch.postprocess(split_by_image(detections, len(batch)))

    def detect(
        self, batch: Tensor, image_sizes: Tensor | None = None, rois: Tensor | None = None
    ) -> dict[str, Tensor]:
        """:meth:`forward` and the post-processing (:meth:`_detections`); arguments as
        :meth:`forward`'s, ``image_sizes`` to clip boxes to (None: the batch frame)."""
        sizes = frame_sizes(batch, image_sizes)
        return self._detections(self(batch, sizes, rois), sizes)

    def _detections(self, out: dict[str, Tensor], image_sizes: Tensor) -> dict[str, Tensor]:
        """The flat detections of a batch (:func:`class_specific_detections`) from
        :meth:`forward`'s outputs: scored by the SVMs once they are set, else by the softmax;
        ``image_sizes`` ``(N, 2)`` ``(h, w)`` to clip to."""
        if self.has_svms:
            scores, thresh = out["svm_scores"], self.svm_score_thresh
        else:
            probs = out["class_logits"].float().softmax(-1)
            scores, thresh = probs[:, : self.num_classes], self.score_thresh
        return class_specific_detections(
            scores,
            out["box_deltas"],
            out["rois"],
            self.box_coder,
            image_sizes,
            thresh,
            self.nms_thresh,
            self.max_detections,
        )

    def export_module(self) -> nn.Module:
        """:class:`RcnnExport`: every region warped and embedded in one pass."""
        return RcnnExport(self)

    def regions_per_image(self) -> int:
        """The proposals used per image at test time."""
        return self.proposer.regions_per_image()

    def summary_input(self, image_size: Sequence[int], rois: int) -> tuple[int, ...]:
        """``(rois, 3, warp_size, warp_size)``: the warped regions (whatever the image size)."""
        return (rois, 3, self.warp_size, self.warp_size)

    def summary_paths(self, x: Tensor, rois: int) -> None:
        """The backbone, pool5, fc6/fc7, classifier and box regressor on the warped regions
        ``x`` (the warping itself is not run)."""
        pool5, fc7 = self.embed(x)
        self.cls_score(fc7)
        self.bbox_pred(pool5)


class RcnnExport(nn.Module):
    """R-CNN's ONNX graph body: ``(batch, image_sizes, proposals)`` -> detections. Every region
    is warped and embedded in one pass (the eager model's ``chunk_size`` loop would be unrolled
    for the traced proposal count), so memory grows with the proposals: ``R x 3 x warp_size^2``
    floats and the backbone's activations on them."""

    inputs = ("images", "image_sizes", "proposals")
    outputs = DETECTION_OUTPUTS

    def __init__(self, model: RCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Tensor, image_sizes: Tensor, proposals: Tensor) -> tuple[Tensor, ...]:
        m = self.model
        crops = m.warp(batch, proposals[:, 0].long(), proposals[:, 1:])
        out = m.outputs(proposals, *m.embed(crops))
        return detection_outputs(m._detections(out, image_sizes.float()))


def build_rcnn(cfg: ModelConfig) -> RCNN:
    """Turn a model config into an :class:`RCNN` (``model.rcnn``; post-processing, box coder
    weights and smooth-L1 beta from ``model.roi_head``; ``model.selective_search`` for images
    ``predict`` gets without proposals)."""
    r, rh = cfg.rcnn, cfg.roi_head
    if cfg.fpn.enabled:
        raise ConfigError("rcnn runs its CNN on warped regions: set model.fpn.enabled false")
    if r.fg_per_batch < 0 or r.bg_per_batch < 0 or r.fg_per_batch + r.bg_per_batch == 0:
        raise ConfigError("model.rcnn.fg_per_batch + bg_per_batch must be positive")
    backbone = build_backbone(cfg.backbone)
    backbone.drop_unused_stages()
    total = r.fg_per_batch + r.bg_per_batch
    ss = cfg.selective_search
    return RCNN(
        backbone,
        cfg.num_classes,
        build_preprocessor(cfg, "none"),
        GivenProposals(ss.mode, ss.max_proposals),
        warp_size=r.warp_size,
        context_pad=r.context_pad,
        pool_size=r.pool_size,
        fc_dim=r.fc_dim,
        dropout=r.dropout,
        sampler=BalancedSampler(total, r.fg_per_batch / total),
        fg_iou_thresh=r.fg_iou_thresh,
        box_iou_thresh=r.box_iou_thresh,
        box_coder=BoxCoder(rh.box_coder_weights),
        smooth_l1_beta=rh.smooth_l1_beta,
        score_thresh=rh.score_thresh,
        svm_score_thresh=r.svm.score_thresh,
        nms_thresh=rh.nms_thresh,
        max_detections=rh.max_detections,
        chunk_size=max(r.chunk_size, 1),
    )
