"""Mask R-CNN's mask branch (He et al., 2017): a small FCN on each RoI, beside the Fast R-CNN head.

:class:`MaskHead` is the paper's FPN head: RoIAlign ``14 x 14`` features, four ``3 x 3`` convs,
a ``2 x 2`` stride-2 transposed conv to ``28 x 28`` and a ``1 x 1`` conv to one mask logit map
per class. :class:`MaskRoIHeads` is the Fast R-CNN head (:class:`RoIHeads`) with that branch:
in training the positive sampled RoIs get a binary cross-entropy on their ground-truth class's
map only, against the instance's mask cropped to the RoI (:meth:`InstanceMasks.crop_and_resize`);
at test time each detection gets its own class's map, pooled from its final box.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou

from visionkit.models.heads.outputs import OutputConv2d
from visionkit.models.heads.roi_heads import RoIHeads
from visionkit.models.poolers import RoIPooler, boxes_to_rois
from visionkit.structures.masks import InstanceMasks


class MaskHead(nn.Module):
    """Pooled RoI features -> per-class mask logits (torchvision's ``MaskRCNNHeads`` and
    ``MaskRCNNPredictor``, initialized as they are: Kaiming normal, fan-out, zero biases).

    Args:
        in_channels: channels of the pooled features.
        num_classes: C, one mask per class (no background).
        conv_channels: width of the convs and of the transposed conv (paper: 256).
        num_convs: ``3 x 3`` convs (each + ReLU) before the upsampling (paper: 4).

    Shapes: ``(R, in_channels, k, k)`` -> ``(R, C, 2k, 2k)``.
    """

    def __init__(
        self, in_channels: int, num_classes: int, conv_channels: int = 256, num_convs: int = 4
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers += [nn.Conv2d(conv_channels if i else in_channels, conv_channels, 3, padding=1)]
            layers += [nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        width = conv_channels if num_convs else in_channels
        self.deconv = nn.ConvTranspose2d(width, conv_channels, 2, stride=2)
        self.predictor = OutputConv2d(conv_channels, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.predictor(F.relu(self.deconv(self.convs(x))))


class MaskRoIHeads(RoIHeads):
    """:class:`RoIHeads` plus the mask branch.

    Args:
        *args, **kwargs: :class:`RoIHeads`'s.
        mask_pooler: RoIAlign of the mask features (``k x k``, from the box head's levels).
        mask_head: the :class:`MaskHead`.
    """

    def __init__(self, *args, mask_pooler: RoIPooler, mask_head: MaskHead, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mask_pooler, self.mask_head = mask_pooler, mask_head
        # the positives of the last sample(): per image (P_i, 4) RoIs and their (P_i,) matched
        # ground truth; set by sample() inside loss(), read and cleared by loss()
        self._positives: list[tuple[Tensor, Tensor]] | None = None

    def mask_logits(self, features: Sequence[Tensor], rois: Tensor) -> Tensor:
        """``(R, 5)`` rois (``(image index, x1, y1, x2, y2)``, input pixels) -> ``(R, C, M, M)``
        logits."""
        return self.mask_head(self.mask_pooler(features, rois))

    @torch.no_grad()
    def sample(
        self, proposals: Sequence[Tensor], gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor]
    ) -> tuple[list[Tensor], Tensor, Tensor]:
        """:meth:`RoIHeads.sample`, keeping each image's positive RoIs (they come first) with
        the index of their ground truth (the matcher's, on the same IoUs) for the mask loss."""
        rois, classes, targets = super().sample(proposals, gt_boxes, gt_labels)
        self._positives = []
        per_image = classes.split([len(r) for r in rois])
        for r, cls, gt in zip(rois, per_image, gt_boxes, strict=True):
            pos = r[cls < self.num_classes]
            matches = self.matcher(box_iou(gt, pos))[0]
            self._positives.append((pos, matches))
        return rois, classes, targets

    def loss(
        self,
        features: Sequence[Tensor],
        proposals: Sequence[Tensor],
        gt_boxes: Sequence[Tensor],
        gt_labels: Sequence[Tensor],
        gt_masks: Sequence[InstanceMasks] | None = None,
        mask_scales: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """:meth:`RoIHeads.loss` plus ``loss_mask_bce``: the mean binary cross-entropy of the
        positive RoIs' ``M x M`` logits of their ground-truth class against the instance's mask
        cropped to the RoI (:meth:`InstanceMasks.crop_and_resize`); 0 without positives.

        Args:
            gt_masks: per image its :class:`InstanceMasks`, row ``j`` the mask of ground truth
                ``j`` of ``gt_boxes``; None: no mask loss (the box losses only).
            mask_scales: ``(N, 4)`` ``(sx, sy, sx, sy)``: a box in mask pixels times its
                image's row is in input pixels (:attr:`ImageBatch.scales`); None: the same
                pixels.
        """
        losses = super().loss(features, proposals, gt_boxes, gt_labels)
        positives, self._positives = self._positives, None
        if gt_masks is None or positives is None:
            return losses
        boxes = [p for p, _ in positives]
        logits = self.mask_logits(features, boxes_to_rois(boxes))
        size = logits.shape[-1]
        if not sum(len(b) for b in boxes):  # 0, with a gradient path through the head
            return losses | {"loss_mask_bce": logits.float().sum() * 0}
        targets, labels = [], []
        for i, ((pos, matches), masks, lab) in enumerate(
            zip(positives, gt_masks, gt_labels, strict=True)
        ):
            scale = 1.0 if mask_scales is None else mask_scales[i]
            targets.append(masks.crop_and_resize(pos / scale, size, matches).to(logits.device))
            labels.append(lab[matches])
        labels = torch.cat(labels)
        own = logits.float().gather(1, labels[:, None, None, None].expand(-1, 1, size, size))
        bce = F.binary_cross_entropy_with_logits(own[:, 0], torch.cat(targets))
        return losses | {"loss_mask_bce": bce}

    def mask_probs(self, features: Sequence[Tensor], detections: dict[str, Tensor]) -> Tensor:
        """``(D, 1, M, M)`` float32 sigmoid probabilities of each detection's own class,
        pooled from its box (:meth:`RoIHeads.detections`'s ``boxes``, ``labels`` and
        ``image_index``; tensor operations only, for the ONNX export too)."""
        boxes = detections["boxes"]
        rois = torch.cat([detections["image_index"][:, None].to(boxes.dtype), boxes], 1)
        logits = self.mask_logits(features, rois).float()
        size = logits.shape[-1]
        labels = detections["labels"][:, None, None, None].expand(-1, 1, size, size)
        return logits.gather(1, labels).sigmoid()
