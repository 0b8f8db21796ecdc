"""The Fast R-CNN head (Girshick, 2015): per-RoI classification and class-specific regression.

Each RoI is pooled from the feature map, passed through a box head (two FC layers or a ResNet
stage) and two sibling layers: ``C + 1`` class logits and ``4C`` box deltas. The background is
this head's private last index ``C``; labels in and out are ``0..C-1``.

Training samples RoIs from the proposals plus the ground-truth boxes (foreground at IoU >= 0.5,
background in ``[0.1, 0.5)``, 25 % foreground) and returns cross-entropy and smooth-L1 losses.
Inference scores every class, decodes its box, clips, thresholds and runs per-class NMS.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou

from visionkit.models.heads.outputs import OutputLinear
from visionkit.models.losses import box_regression_loss
from visionkit.models.matching import FOREGROUND, BalancedSampler, Matcher
from visionkit.models.poolers import RoIPooler, boxes_to_rois
from visionkit.models.postprocess import class_specific_detections
from visionkit.structures.box_coder import BoxCoder


def box_predictor(
    cls_dim: int, box_dim: int, num_classes: int
) -> tuple[OutputLinear, OutputLinear]:
    """The two sibling layers of the Fast R-CNN head and of R-CNN: ``cls_score`` (``cls_dim``
    features -> ``C + 1`` logits, the background last) and ``bbox_pred`` (``box_dim`` features ->
    ``4C`` class-specific deltas), initialized as in the paper (std 0.01 and 0.001, zero
    biases)."""
    cls_score = OutputLinear(cls_dim, num_classes + 1)
    bbox_pred = OutputLinear(box_dim, 4 * num_classes)
    nn.init.normal_(cls_score.weight, std=0.01)
    nn.init.normal_(bbox_pred.weight, std=0.001)
    nn.init.zeros_(cls_score.bias)
    nn.init.zeros_(bbox_pred.bias)
    return cls_score, bbox_pred


class RoIHeads(nn.Module):
    """Pooler + box head + classifier/regressor, with sampling, losses and post-processing.

    Args:
        pooler: RoI features from the feature level(s). box_head: maps them to ``(K, box_head.out_dim)``.
        num_classes: C (no background).
        matcher: labels proposals (paper: >= 0.5 -> 1, [0.1, 0.5) -> 0, < 0.1 -> -1).
        sampler: RoIs per image for the loss (e.g. 128 at 25 % foreground).
        box_coder: deltas of proposals (weights 10, 10, 5, 5).
        smooth_l1_beta: the box loss's beta (Fast R-CNN: 1; 0 = L1).
        score_thresh, nms_thresh, max_detections: post-processing at test time.
    """

    def __init__(
        self,
        pooler: RoIPooler,
        box_head: nn.Module,
        num_classes: int,
        matcher: Matcher,
        sampler: BalancedSampler,
        box_coder: BoxCoder,
        smooth_l1_beta: float = 1.0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.3,
        max_detections: int = 100,
    ) -> None:
        super().__init__()
        self.pooler, self.box_head, self.num_classes = pooler, box_head, num_classes
        self.cls_score, self.bbox_pred = box_predictor(
            box_head.out_dim, box_head.out_dim, num_classes
        )
        self.matcher, self.sampler, self.box_coder = matcher, sampler, box_coder
        self.beta = smooth_l1_beta
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.max_detections = max_detections

    def forward(self, features: Sequence[Tensor], rois: Tensor) -> tuple[Tensor, Tensor]:
        """Per level ``(N, C_f, H_l, W_l)`` features and ``(R, 5)`` RoIs ``(image index, x1, y1,
        x2, y2)`` in input pixels -> ``(R, C + 1)`` class logits and ``(R, 4C)`` deltas."""
        x = self.box_head(self.pooler(features, rois))
        return self.cls_score(x), self.bbox_pred(x)

    @torch.no_grad()
    def sample(
        self, proposals: Sequence[Tensor], gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor]
    ) -> tuple[list[Tensor], Tensor, Tensor]:
        """Sample training RoIs from the proposals and the ground truth.

        Args:
            proposals: per image ``(K_i, 4)`` xyxy in input pixels.
            gt_boxes, gt_labels: per image ``(M_i, 4)`` xyxy in input pixels, ``(M_i,)`` int64.

        Returns:
            Per image the sampled ``(R_i, 4)`` RoIs; ``(sum R_i,)`` int64 class targets (``C``
            = background); ``(sum R_i, 4)`` regression targets (zero for background).
        """
        rois, classes, targets = [], [], []
        for props, gt, lab in zip(proposals, gt_boxes, gt_labels, strict=True):
            props = torch.cat([props, gt.to(props.dtype)])
            matches, match_labels = self.matcher(box_iou(gt, props))
            pos, neg = self.sampler(match_labels)
            idx = torch.cat([pos, neg])
            cls = torch.full((idx.numel(),), self.num_classes, dtype=torch.int64, device=gt.device)
            reg = torch.zeros(idx.numel(), 4, device=gt.device)
            if pos.numel():
                cls[: pos.numel()] = lab[matches[pos]]
                reg[: pos.numel()] = self.box_coder.encode(props[pos], gt[matches[pos]])
            rois.append(props[idx])
            classes.append(cls)
            targets.append(reg)
        return rois, torch.cat(classes), torch.cat(targets)

    def loss(
        self,
        features: Sequence[Tensor],
        proposals: Sequence[Tensor],
        gt_boxes: Sequence[Tensor],
        gt_labels: Sequence[Tensor],
    ) -> dict[str, Tensor]:
        """Cross-entropy over the sampled RoIs and smooth-L1 on the foreground ones' deltas for
        their own class, both divided by the number of sampled RoIs.

        Returns ``{loss_roi_cls, loss_roi_box}``; ``features`` as in :meth:`forward`, the rest
        as in :meth:`sample`.
        """
        rois, classes, targets = self.sample(proposals, gt_boxes, gt_labels)
        logits, deltas = self(features, boxes_to_rois(rois))
        num = max(classes.numel(), 1)
        # losses and box decoding in float32 under autocast (sums, exp of the size deltas)
        cls_loss = F.cross_entropy(logits.float(), classes, reduction="sum") / num
        fg = torch.nonzero(classes < self.num_classes).squeeze(1)
        pred = deltas.float().view(-1, self.num_classes, 4)[fg, classes[fg]]
        box = box_regression_loss(pred, targets[fg], self.beta)
        return {"loss_roi_cls": cls_loss, "loss_roi_box": box / num}

    def detections(
        self, logits: Tensor, deltas: Tensor, rois: Tensor, image_sizes: Tensor
    ) -> dict[str, Tensor]:
        """The detections of a batch from the head's outputs.

        Args:
            logits, deltas: ``(R, C + 1)`` and ``(R, 4C)`` of :meth:`forward`.
            rois: its ``(R, 5)`` regions ``(image index, x1, y1, x2, y2)``, any order.
            image_sizes: ``(N, 2)`` ``(h, w)`` of each image in the batch (boxes are clipped).

        Returns:
            Flat over the batch (:func:`class_specific_detections`): ``boxes`` ``(D, 4)``
            float32 xyxy in input pixels, ``scores`` ``(D,)`` softmax probabilities, ``labels``
            ``(D,)`` int64 in ``0..C-1``, ``image_index`` ``(D,)`` int64; sorted by score, after
            the score threshold and per-class NMS, at most ``max_detections`` per image.
        """
        probs = logits.float().softmax(-1)[:, : self.num_classes]  # float32 scores out
        return class_specific_detections(
            probs,
            deltas,
            rois,
            self.box_coder,
            image_sizes,
            self.score_thresh,
            self.nms_thresh,
            self.max_detections,
        )


def fast_rcnn_matcher(fg_iou_thresh: float, bg_iou_thresh_lo: float) -> Matcher:
    """Foreground at IoU >= ``fg_iou_thresh``, background in ``[bg_iou_thresh_lo, fg)``, the
    rest ignored (no low-quality matches: the ground truth itself is among the RoIs)."""
    return Matcher([bg_iou_thresh_lo, fg_iou_thresh], [-1, 0, FOREGROUND])
