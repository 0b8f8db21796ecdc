"""Detection post-processing shared by every detector: score threshold, per-class NMS, top-k."""

from __future__ import annotations

from torch import Tensor
from torchvision.ops import batched_nms

from visionkit.structures.box_coder import BoxCoder
from visionkit.structures.boxes import MIN_BOX_SIZE, clip_boxes


def select_detections(
    boxes: Tensor,
    scores: Tensor,
    score_thresh: float,
    nms_thresh: float,
    max_detections: int,
    image_size: tuple[float, float] | None = None,
    min_size: float | None = None,
) -> dict[str, Tensor]:
    """The detections of one image.

    Args:
        boxes: float xyxy in input pixels, ``(K, 4)`` shared by every class (YOLO's cells) or
            ``(K, C, 4)`` one per class (class-specific regression).
        scores: ``(K, C)`` float per box and class.
        score_thresh: pairs scoring at most this are dropped.
        nms_thresh: IoU of the per-class NMS (``torchvision.ops.batched_nms``).
        max_detections: the highest-scoring detections kept after NMS.
        image_size: ``(h, w)``: boxes are clipped to it first.
        min_size: pairs whose box is not wider and taller than this are dropped (None: none).

    Returns:
        ``boxes`` ``(D, 4)`` float xyxy, ``scores`` ``(D,)``, ``labels`` ``(D,)`` int64 in
        ``0..C-1``, sorted by score.
    """
    if image_size is not None:
        boxes = clip_boxes(boxes, image_size)
    keep = scores > score_thresh
    if min_size is not None:
        wh = boxes[..., 2:] - boxes[..., :2]
        big = (wh > min_size).all(-1)
        keep &= big if boxes.dim() == 3 else big[:, None]
    k, c = keep.nonzero(as_tuple=True)
    b = boxes[k, c] if boxes.dim() == 3 else boxes[k]
    s = scores[k, c]
    top = batched_nms(b, s, c, nms_thresh)[:max_detections]
    return {"boxes": b[top], "scores": s[top], "labels": c[top]}


def class_specific_detections(
    scores: Tensor,
    deltas: Tensor,
    regions: Tensor,
    box_coder: BoxCoder,
    image_size: tuple[float, float],
    score_thresh: float,
    nms_thresh: float,
    max_detections: int,
) -> dict[str, Tensor]:
    """The detections of one image from per-region class scores and class-specific regression
    (the Fast R-CNN head, R-CNN).

    Args:
        scores: ``(K, C)`` float (softmax probabilities without the background, or SVM margins).
        deltas: ``(K, 4C)`` the box coder's deltas of each region, per class.
        regions: ``(K, 4)`` float xyxy in input pixels. image_size: ``(h, w)`` to clip to.

    Returns:
        :func:`select_detections` of the decoded, clipped boxes, degenerate ones dropped.
    """
    boxes = box_coder.decode(deltas.float(), regions.float())
    boxes = boxes.view(len(regions), scores.shape[1], 4)  # (K, C, 4), K = 0 included
    return select_detections(
        boxes, scores, score_thresh, nms_thresh, max_detections, image_size, MIN_BOX_SIZE
    )
