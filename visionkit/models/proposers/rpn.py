"""The Region Proposal Network (Ren et al., 2015): Faster R-CNN's proposer, learned with it.

Around its :class:`~visionkit.models.heads.rpn.RPNHead` (the paper's 3x3 conv + ReLU with sibling
1x1 convs: A objectness logits and 4A deltas per position, shared across levels),
:class:`RegionProposalNetwork` owns the anchors, the training targets and losses, and turns the
outputs into proposals: top-N by objectness per image and level before NMS, clipped to the
image, small boxes removed, NMS, top-N after NMS.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from visionkit.models.anchors import AnchorGenerator
from visionkit.models.cpu_parallel import parallel_map
from visionkit.models.heads.rpn import RPNHead
from visionkit.models.losses import box_regression_loss
from visionkit.models.matching import BACKGROUND, FOREGROUND, IGNORE, BalancedSampler, Matcher
from visionkit.models.postprocess import grouped_nms, grouped_nms_top_k, top_per_image
from visionkit.models.preprocess import ImageBatch
from visionkit.models.proposers.base import Proposer
from visionkit.structures.box_coder import BoxCoder
from visionkit.structures.boxes import clip_to_sizes


def _at_most(k: int, x: Tensor, dim: int) -> int:
    """``min(k, x.shape[dim])``; while tracing for ONNX a tensor, so that the graph takes the
    minimum of the size it is run on (feature maps of a dynamic input size)."""
    if torch.jit.is_tracing():
        size = torch._shape_as_tensor(x)[dim].unsqueeze(0)
        return torch.cat([size.new_tensor([k]), size]).min()  # type: ignore[return-value]
    return min(k, x.shape[dim])


def _flatten(logits: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
    """``(N, A, H, W)``, ``(N, 4A, H, W)`` -> ``(N, H*W*A)``, ``(N, H*W*A, 4)`` (anchor order)."""
    n, a, h, w = logits.shape
    flat_deltas = deltas.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4)
    return logits.permute(0, 2, 3, 1).reshape(n, -1), flat_deltas


class RegionProposalNetwork(Proposer):
    """Anchors, targets, losses and proposals around an :class:`RPNHead`.

    Args:
        head: the conv head. anchor_generator: anchors of every level.
        matcher: labels anchors (paper: >= 0.7 or best for a box -> 1, < 0.3 -> 0, else -1).
        sampler: anchors per image for the loss (paper: 256 at up to 1:1).
        box_coder: deltas of anchors (weights 1, 1, 1, 1).
        pre_nms_top_n, post_nms_top_n: ``(train, test)`` pairs; pre: per image and level.
        nms_thresh: IoU of proposal NMS (0.7). min_size: px; smaller proposals are removed.
        sigmoid_scores: NMS ranks by ``sigmoid(logit)`` (torchvision) instead of the logit.
        ignore_cross_boundary: training labels anchors crossing the image border -1.
        smooth_l1_beta: the box loss's beta (0 = L1). box_loss_weight: lambda.
    """

    def __init__(
        self,
        head: RPNHead,
        anchor_generator: AnchorGenerator,
        matcher: Matcher,
        sampler: BalancedSampler,
        box_coder: BoxCoder,
        pre_nms_top_n: tuple[int, int] = (12000, 6000),
        post_nms_top_n: tuple[int, int] = (2000, 300),
        nms_thresh: float = 0.7,
        min_size: float = 0.0,
        ignore_cross_boundary: bool = True,
        smooth_l1_beta: float = 1 / 9,
        box_loss_weight: float = 1.0,
        sigmoid_scores: bool = False,
    ) -> None:
        super().__init__()
        self.head, self.anchor_generator = head, anchor_generator
        self.matcher, self.sampler, self.box_coder = matcher, sampler, box_coder
        self.pre_nms_top_n, self.post_nms_top_n = pre_nms_top_n, post_nms_top_n
        self.nms_thresh, self.min_size = nms_thresh, min_size
        self.ignore_cross_boundary = ignore_cross_boundary
        self.beta, self.box_loss_weight = smooth_l1_beta, box_loss_weight
        self.sigmoid_scores = sigmoid_scores

    def _outputs(
        self, features: Sequence[Tensor]
    ) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor]]:
        """Per level the head's flattened ``(N, L_l)`` logits and ``(N, L_l, 4)`` deltas, and
        the ``(L_l, 4)`` anchors."""
        logits, deltas = self.head(features)
        flat = [_flatten(lg, d) for lg, d in zip(logits, deltas, strict=True)]
        return flat, self.anchor_generator(features)

    def forward(
        self,
        features: Sequence[Tensor],
        image_sizes: Tensor,
        gt_boxes: Sequence[Tensor] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Proposals, and the losses when ``gt_boxes`` are given (training).

        Args:
            features: per level ``(N, C, H_l, W_l)``.
            image_sizes: ``(N, 2)`` float ``(h, w)`` of each image inside the (padded) batch.
            gt_boxes: per image ``(M_i, 4)`` float xyxy in input pixels, or None at test time.

        Returns:
            Per image ``(K_i, 4)`` float xyxy proposals in input pixels (detached), sorted by
            objectness; and ``{loss_rpn_cls, loss_rpn_box}`` (empty without ``gt_boxes``).
        """
        flat, anchors = self._outputs(features)
        train = gt_boxes is not None
        detached = [(lg.detach(), d.detach()) for lg, d in flat]
        rois = self.select(*zip(*detached, strict=True), anchors, image_sizes, train)
        proposals = [rois[rois[:, 0] == i, 1:] for i in range(len(image_sizes))]
        if not train:
            return proposals, {}
        obj = torch.cat([f[0] for f in flat], 1)
        dts = torch.cat([f[1] for f in flat], 1)
        return proposals, self.loss(obj, dts, torch.cat(anchors), image_sizes, gt_boxes)

    def propose(
        self,
        batch: ImageBatch,
        features: Sequence[Tensor],
        targets: Sequence[dict] | None = None,
        proposals: Sequence[Tensor] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """:class:`Proposer.propose`: :meth:`forward` on ``features``, with the targets' boxes
        in input pixels in training. Given ``proposals`` are refused (ValueError)."""
        if proposals is not None:
            raise ValueError("this detector proposes its own regions: predict takes no proposals")
        gt_boxes = None
        if targets is not None:
            gt_boxes, _ = batch.targets_to_input(
                [t["boxes"] for t in targets], [t["labels"] for t in targets]
            )
        return self(features, batch.image_sizes, gt_boxes)

    @torch.no_grad()
    def rois(self, features: Sequence[Tensor], image_sizes: Tensor) -> Tensor:
        """Test-time proposals of a batch as ``(R, 5)`` rois ``(image index, x1, y1, x2, y2)``
        in input pixels (:meth:`select`); tensor operations only, for the ONNX export too."""
        flat, anchors = self._outputs(features)
        return self.select(*zip(*flat, strict=True), anchors, image_sizes, False)

    def regions_per_image(self) -> int:
        """The test-time proposals kept per image after NMS."""
        return int(self.post_nms_top_n[1])

    def summary_paths(self, features: Sequence[Tensor]) -> None:
        """The head on every level (anchors, decoding and NMS need data: not run)."""
        self.head(features)

    @torch.no_grad()
    def select(
        self,
        logits: Sequence[Tensor],
        deltas: Sequence[Tensor],
        anchors: Sequence[Tensor],
        image_sizes: Tensor,
        train: bool,
    ) -> Tensor:
        """Per level ``(N, L_l)`` logits, ``(N, L_l, 4)`` deltas, ``(L_l, 4)`` anchors -> the
        batch's proposals: ``(R, 5)`` float ``(image index, x1, y1, x2, y2)`` in input pixels,
        sorted by objectness (top-N per image and level, decoded, clipped to each image, small
        ones removed, NMS per image and level, top-N per image). Eagerly image after image, each
        image's rois sorted by objectness as torchvision orders them (seeded RoI sampling
        depends on the order; equal scores from reduced-precision logits, which a model cast
        to bfloat16 as a whole gives by the thousand, keep their anchor order:
        :func:`grouped_nms_top_k`; under autocast the head's logits are float32); traced for ONNX,
        one NMS over the batch, sorted by objectness over the batch."""
        pre_n, post_n = self.pre_nms_top_n[not train], self.post_nms_top_n[not train]
        # scores from bfloat16/float16 logits (a model cast as a whole; autocast keeps the
        # head's output layers in float32) tie by the thousand: torchvision's order of ties (an
        # unstable sort's) is no part of their math, so ties keep the anchor order there
        reduced = logits[0].dtype != torch.float32
        n = image_sizes.shape[0]
        all_boxes, all_scores, all_levels = [], [], []
        for level, (lg, dt, anc) in enumerate(zip(logits, deltas, anchors, strict=True)):
            # float32: bfloat16's 8-bit mantissa ties most objectness scores and box offsets
            scores, idx = lg.float().topk(_at_most(pre_n, lg, 1), dim=1)
            sel = dt.float().gather(1, idx[..., None].expand(-1, -1, 4))
            boxes = self.box_coder.decode(sel.reshape(-1, 4), anc[idx.reshape(-1)])
            all_boxes.append(boxes.view(n, -1, 4))
            all_scores.append(scores)
            all_levels.append(torch.full_like(idx, level))
        boxes = clip_to_sizes(torch.cat(all_boxes, 1), image_sizes).reshape(-1, 4)
        scores, levels = torch.cat(all_scores, 1), torch.cat(all_levels, 1)
        if self.sigmoid_scores:
            scores = scores.sigmoid()
        image = torch.arange(n, device=boxes.device)[:, None].expand_as(levels).reshape(-1)
        keep = ((boxes[:, 2:] - boxes[:, :2]) > self.min_size).all(-1).nonzero().squeeze(1)
        b, s, img, lv = boxes[keep], scores.reshape(-1)[keep], image[keep], levels.reshape(-1)[keep]
        if not torch.jit.is_tracing():  # image by image, as torchvision: the same order on ties
            # (the images on the CPU's threads: torchvision's NMS kernel runs on one)
            return torch.cat(parallel_map(
                lambda i: self._image_rois(
                    b[img == i], s[img == i], lv[img == i], i, post_n, reduced
                ),
                range(n),
                b.device,
            ))  # fmt: skip
        top = grouped_nms(b, s, img * len(anchors) + lv, self.nms_thresh)
        top = top[top_per_image(img[top], n, post_n)]
        return torch.cat([img[top, None].to(b.dtype), b[top]], 1)

    def _image_rois(
        self, boxes: Tensor, scores: Tensor, levels: Tensor, i: int, k: int, stable_ties: bool
    ) -> Tensor:
        """One image's ``(K, 5)`` rois: NMS per level, the ``k`` best by score (equal scores in
        anchor order with ``stable_ties``, else in torchvision's order)."""
        top = grouped_nms_top_k(boxes, scores, levels, self.nms_thresh, k, stable_ties)
        return torch.cat([boxes.new_full((len(top), 1), i), boxes[top]], 1)

    def label_anchors(
        self, anchors: Tensor, image_sizes: Tensor, gt_boxes: Sequence[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Sampled training labels.

        Args:
            anchors: ``(L, 4)`` xyxy anchors of all levels. image_sizes: ``(N, 2)`` ``(h, w)``.
            gt_boxes: per image ``(M_i, 4)`` xyxy in input pixels.

        Returns:
            ``labels`` ``(N, L)`` int64: 1 sampled positive, 0 sampled negative, -1 not sampled
            (ignored, cross-boundary or left out by the sampler); ``matched`` ``(N, L, 4)`` the
            ground-truth box of each anchor (meaningful where labels == 1).
        """
        labels = torch.full(
            (len(gt_boxes), anchors.shape[0]), IGNORE, dtype=torch.int64, device=anchors.device
        )
        matched = torch.zeros(len(gt_boxes), *anchors.shape, device=anchors.device)
        h, w = image_sizes[:, :1], image_sizes[:, 1:]
        outside = (anchors[:, :2] < 0).any(1) | (anchors[:, 2] > w) | (anchors[:, 3] > h)  # (N, L)
        for i, gt in enumerate(gt_boxes):
            iou = box_iou(gt, anchors)
            if self.ignore_cross_boundary:
                iou[:, outside[i]] = -1.0  # never the best anchor of a box
            matches, match_labels = self.matcher(iou)
            if self.ignore_cross_boundary:
                match_labels[outside[i]] = IGNORE
            pos, neg = self.sampler(match_labels)
            labels[i, pos], labels[i, neg] = FOREGROUND, BACKGROUND
            if gt.numel():
                matched[i] = gt[matches]
        return labels, matched

    def loss(
        self,
        logits: Tensor,
        deltas: Tensor,
        anchors: Tensor,
        image_sizes: Tensor,
        gt_boxes: Sequence[Tensor],
    ) -> dict[str, Tensor]:
        """Binary cross-entropy on the sampled anchors and smooth-L1 on the positive ones, both
        divided by the number of sampled anchors in the batch (as torchvision; the paper's
        ``lambda / N_reg`` normalization is about the same with lambda = 10).

        Args:
            logits: ``(N, L)``, deltas: ``(N, L, 4)``, anchors: ``(L, 4)``, all levels.
        """
        labels, matched = self.label_anchors(anchors, image_sizes, gt_boxes)
        sampled = labels >= 0
        pos = labels == FOREGROUND
        num = sampled.sum().clamp(min=1)
        cls = F.binary_cross_entropy_with_logits(
            logits[sampled].float(), labels[sampled].float(), reduction="sum"
        )
        target = self.box_coder.encode(anchors.expand_as(matched)[pos], matched[pos])
        box = box_regression_loss(deltas[pos], target, self.beta)
        return {"loss_rpn_cls": cls / num, "loss_rpn_box": self.box_loss_weight * box / num}
