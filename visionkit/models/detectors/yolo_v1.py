"""YOLOv1 (Redmon et al., 2016): one network, an S x S grid, B boxes and C classes per cell.

Output layout per cell: ``[x, y, sqrt(w), sqrt(h), conf] * B + [p_1 .. p_C]`` where ``x, y`` are
the box centre's offset inside the cell and ``w, h`` are relative to the image. The paper's last
layer is linear; here the box terms and confidence pass through a sigmoid and the class scores
through a softmax, which bounds them to their ranges and keeps sum-squared error stable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visionkit.config.schema import ModelConfig
from visionkit.models.backbones import build_backbone
from visionkit.models.backbones.base import Backbone
from visionkit.models.base import DetectExport, Detector
from visionkit.models.heads.yolo_head import YoloHead
from visionkit.models.postprocess import select_detections, split_by_image
from visionkit.models.preprocess import Preprocessor, build_preprocessor
from visionkit.structures.boxes import aligned_box_iou, clip_boxes


class YOLOv1(Detector):
    """Backbone + :class:`YoloHead`, with the paper's loss and decoding.

    Args:
        backbone: returns its deepest level first in ``out_features[-1]``.
        head: maps that level to ``(N, S, S, B*5 + C)``.
        preprocess: stretches images to the input size and normalizes them.
        num_classes: C. grid_size: S. boxes_per_cell: B.
        lambda_coord, lambda_noobj: the loss weights (paper: 5 and 0.5).
        score_thresh, nms_thresh, max_detections: post-processing at test time.
    """

    def __init__(
        self,
        backbone: Backbone,
        head: YoloHead,
        preprocess: Preprocessor,
        num_classes: int,
        grid_size: int = 7,
        boxes_per_cell: int = 2,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.5,
        max_detections: int = 100,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.preprocess = preprocess
        self.num_classes = num_classes
        self.S, self.B = grid_size, boxes_per_cell
        self.lambda_coord, self.lambda_noobj = lambda_coord, lambda_noobj
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.max_detections = max_detections
        self.feature = backbone.out_features[-1]

    def forward(
        self, batch: Tensor, image_sizes: Tensor | None = None, rois: Tensor | None = None
    ) -> Tensor:
        """``(N, 3, h, w)`` normalized batch at the input size -> ``(N, S, S, B*5 + C)`` raw
        outputs. ``image_sizes`` and ``rois`` are not used (every image fills the batch)."""
        return self.head(self.backbone(batch)[self.feature])

    def _split(self, raw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Raw outputs -> box terms ``(N,S,S,B,4)``, confidences ``(N,S,S,B)``, class probs."""
        n = raw.shape[0]
        box = raw[..., : self.B * 5].reshape(n, self.S, self.S, self.B, 5).sigmoid()
        # float32 under autocast: the sum-squared loss and the decoded boxes need the mantissa
        cls = raw[..., self.B * 5 :].float().softmax(-1)
        return box[..., :4].float(), box[..., 4].float(), cls

    def _decode_boxes(self, terms: Tensor) -> Tensor:
        """``(N,S,S,B,4)`` [x, y, sqrt w, sqrt h] -> xyxy in input pixels."""
        h, w = self.preprocess.input_size
        idx = torch.arange(self.S, device=terms.device, dtype=terms.dtype)
        cx = (terms[..., 0] + idx.view(1, 1, -1, 1)) / self.S * w
        cy = (terms[..., 1] + idx.view(1, -1, 1, 1)) / self.S * h
        bw, bh = terms[..., 2].square() * w, terms[..., 3].square() * h
        return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)

    def build_targets(
        self, targets: Sequence[dict[str, Tensor]], scales: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Assign each object to the cell holding its centre.

        Returns ``obj_mask (N,S,S)`` bool, ``box_t (N,S,S,4)`` [x, y, sqrt w, sqrt h] targets,
        ``gt_xyxy (N,S,S,4)`` in input pixels, ``cls_t (N,S,S,C)`` one-hot. When two objects
        share a cell, the larger one is kept (the paper predicts one class per cell).
        """
        n, s, device = len(targets), self.S, scales.device
        h, w = self.preprocess.input_size
        counts = [len(t["boxes"]) for t in targets]
        obj = torch.zeros(n, s, s, dtype=torch.bool, device=device)
        box_t = torch.zeros(n, s, s, 4, device=device)
        gt = torch.zeros(n, s, s, 4, device=device)
        cls_t = torch.zeros(n, s, s, self.num_classes, device=device)
        if sum(counts) == 0:
            return obj, box_t, gt, cls_t
        img = torch.repeat_interleave(
            torch.arange(n, device=device), torch.tensor(counts, device=device)
        )
        boxes = torch.cat([t["boxes"].to(device) for t in targets]) * scales[img]
        labels = torch.cat([t["labels"].to(device) for t in targets])
        wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
        order = torch.argsort(wh.prod(1))  # small first: with equal cells, the last (largest) wins
        boxes, labels, wh, img = boxes[order], labels[order], wh[order], img[order]
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        grid = centre / centre.new_tensor([w, h]) * s
        cell = grid.floor().long().clamp(0, s - 1)
        gi, gj = cell[:, 0], cell[:, 1]
        rel = (wh / wh.new_tensor([w, h])).clamp(0, 1).sqrt()
        obj[img, gj, gi] = True
        box_t[img, gj, gi] = torch.cat([grid - cell, rel], 1)
        gt[img, gj, gi] = boxes
        one_hot = torch.nn.functional.one_hot(labels, self.num_classes).float()
        cls_t[img, gj, gi] = one_hot
        return obj, box_t, gt, cls_t

    def loss(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict]) -> dict[str, Tensor]:
        """The paper's sum-squared error, summed over cells and averaged over images.

        Args:
            images: float RGB in [0, 1], a ``(N,3,H,W)`` tensor or a list of ``(3,H_i,W_i)``.
            targets: per image ``boxes`` ``(M,4)`` xyxy in that image's pixels, ``labels`` ``(M,)``.

        Returns:
            ``loss_yolo_box`` (lambda_coord-weighted x, y, sqrt w, sqrt h), ``loss_yolo_obj``,
            ``loss_yolo_noobj`` (lambda_noobj-weighted) and ``loss_yolo_cls``.
        """
        batch = self.preprocess(images)
        terms, conf, cls = self._split(self(batch.tensor))
        obj, box_t, gt, cls_t = self.build_targets(targets, batch.scales)
        with torch.no_grad():
            iou = aligned_box_iou(self._decode_boxes(terms), gt.unsqueeze(3))
            best = iou.argmax(-1, keepdim=True)
            resp = (
                torch.zeros_like(conf, dtype=torch.bool).scatter_(-1, best, True) & obj[..., None]
            )
        n = len(batch)
        coord = ((terms - box_t.unsqueeze(3)).square().sum(-1) * resp).sum()
        obj_loss = ((conf - iou).square() * resp).sum()
        noobj = (conf.square() * ~resp).sum()
        cls_loss = ((cls - cls_t).square().sum(-1) * obj).sum()
        return {
            "loss_yolo_box": self.lambda_coord * coord / n,
            "loss_yolo_obj": obj_loss / n,
            "loss_yolo_noobj": self.lambda_noobj * noobj / n,
            "loss_yolo_cls": cls_loss / n,
        }

    def detect(
        self, batch: Tensor, image_sizes: Tensor | None = None, rois: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Decoding, score threshold and per-class NMS on a normalized ``(N, 3, h, w)`` batch
        (tensor operations only: what the ONNX export runs too); ``image_sizes`` and ``rois``
        are not used.

        Returns the flat detections of the batch (:func:`select_detections`): ``boxes``
        ``(D, 4)`` float32 xyxy in input pixels, ``scores`` ``(D,)`` (class-specific confidence
        Pr(class|object) * conf), ``labels`` and ``image_index`` ``(D,)`` int64.
        """
        terms, conf, cls = self._split(self(batch))
        n, c, cells = batch.shape[0], self.num_classes, self.S * self.S * self.B
        boxes = clip_boxes(self._decode_boxes(terms), self.preprocess.input_size).reshape(-1, 4)
        scores = (conf.unsqueeze(-1) * cls.unsqueeze(3)).reshape(-1, c)  # (N * S*S*B, C)
        image_index = torch.arange(n, device=batch.device)[:, None].expand(n, cells).reshape(-1)
        return select_detections(
            boxes, scores, image_index, n, self.score_thresh, self.nms_thresh, self.max_detections
        )

    @torch.no_grad()
    def predict(self, images: Sequence[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        """Detect objects.

        Returns per image ``boxes`` ``(K,4)`` float32 xyxy in that image's original pixels,
        ``scores`` ``(K,)`` (class-specific confidence Pr(class|object) * conf) and ``labels``
        ``(K,)`` int64 in ``0..C-1``, sorted by score, after per-class NMS.
        """
        batch = self.preprocess(images)
        return batch.postprocess(split_by_image(self.detect(batch.tensor), len(batch)))

    def export_module(self) -> nn.Module:
        """:meth:`detect` on ``images`` at the fixed input size (no padding: no sizes)."""
        return DetectExport(self, ("images",))


def build_yolo_v1(cfg: ModelConfig) -> YOLOv1:
    """Turn a model config into a :class:`YOLOv1` assembled from its backbone and head."""
    preprocess = build_preprocessor(cfg, "fixed")
    backbone = build_backbone(cfg.backbone)
    backbone.drop_unused_stages()
    feat = backbone.out_features[-1]
    y = cfg.yolo
    input_size = preprocess.input_size
    head = YoloHead(
        in_channels=backbone.out_channels[feat],
        in_stride=backbone.out_strides[feat],
        grid_size=y.grid_size,
        boxes_per_cell=y.boxes_per_cell,
        num_classes=cfg.num_classes,
        input_size=input_size,
        kind=y.head,
        extra_convs=y.extra_convs,
        channels=y.head_channels,
        hidden_dim=y.hidden_dim,
        dropout=y.dropout,
    )
    return YOLOv1(
        backbone,
        head,
        preprocess,
        num_classes=cfg.num_classes,
        grid_size=y.grid_size,
        boxes_per_cell=y.boxes_per_cell,
        lambda_coord=y.lambda_coord,
        lambda_noobj=y.lambda_noobj,
        score_thresh=y.score_thresh,
        nms_thresh=y.nms_thresh,
        max_detections=y.max_detections,
    )
