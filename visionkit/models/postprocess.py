"""Detection post-processing shared by every detector and by the ONNX export graphs: score
threshold, per-class NMS, per-image top-k.

Everything works on the *flat* candidates of a whole batch (each with its ``image_index``), with
tensor operations only: no Python loop over images and no branch on a data-dependent size, so
that a traced graph (``visionkit/export``) serves any batch size and gives empty outputs for an
image without detections. :func:`split_by_image` turns the flat detections into the per-image
dicts of ``predict``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import batched_nms, nms

from visionkit.models.cpu_parallel import grouped_nms_cpu
from visionkit.structures.box_coder import BoxCoder
from visionkit.structures.boxes import MIN_BOX_SIZE, clip_to_sizes


def grouped_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_thresh: float) -> Tensor:
    """NMS within each group.

    Eagerly ``torchvision.ops.batched_nms`` (on the CPU above 1,000 boxes a loop over groups:
    the coordinate trick's large offsets cost float32 precision in the IoUs, and torchvision's
    detectors, which visionkit reproduces, take the loop; visionkit runs the loop's groups on
    the CPU's threads, :func:`~visionkit.models.cpu_parallel.grouped_nms_cpu`). Traced for ONNX, the coordinate trick
    (one NMS, no loop): the offset between groups comes from the largest coordinate; a zero is
    appended so that it is defined (and the graph runs) when there are no boxes.

    Args:
        boxes: ``(K, 4)`` float xyxy, non-negative. scores: ``(K,)``.
        groups: ``(K,)`` int64: boxes of different groups never suppress each other.

    Returns:
        ``(D,)`` int64 indices of the kept boxes, by decreasing score.
    """
    if not torch.jit.is_tracing():
        if boxes.device.type == "cpu" and boxes.numel() > 4000:  # the loop, on the CPU's threads
            return grouped_nms_cpu(boxes, scores, groups, iou_thresh)
        return batched_nms(boxes, scores, groups, iou_thresh)
    top = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max() + 1
    return nms(boxes + (groups.to(boxes.dtype) * top)[:, None], scores, iou_thresh)


def grouped_nms_top_k(
    boxes: Tensor,
    scores: Tensor,
    groups: Tensor,
    iou_thresh: float,
    k: int,
    stable_ties: bool = False,
) -> Tensor:
    """``grouped_nms(boxes, scores, groups, iou_thresh)[:k]``, computed on the best-scoring
    boxes first where that gives the same answer.

    torchvision's NMS kernel visits boxes by decreasing score, equal scores in input order, and
    decides a box from the boxes visited before it only; so NMS on the boxes scoring above some
    value (kept in their order) keeps exactly the full run's kept boxes among them, and when it
    keeps at least ``k`` they are the full run's first ``k`` as a set. Their order is the full
    run's when the kept scores are distinct; equal scores are ordered by torchvision's final,
    unstable sort over all kept boxes, which only the full run reproduces: with ties among them
    the full run answers, unless ``stable_ties`` (equal scores keep their input order, a
    defined answer for bfloat16 scores, tied by the thousand). The subset starts at the ``2k``
    best and grows to what the kept share so far asks for; near the whole input the full run
    answers. NMS costs about the square of its boxes, so the RPN's proposals (top-k of a few
    thousand) cost a fraction. Only the CPU's per-group loop is taken this way (above 1,000
    boxes, eager); other inputs run :func:`grouped_nms` whole, as do non-finite scores.

    Args:
        boxes: ``(K, 4)`` float xyxy. scores: ``(K,)``. groups: ``(K,)`` int64. k: kept boxes.
        stable_ties: order equal scores by input order (else as torchvision's batched_nms).

    Returns:
        ``(D,)`` int64 indices, ``D <= k``, by decreasing score.
    """
    n = scores.shape[0]
    whole = torch.jit.is_tracing() or boxes.device.type != "cpu" or boxes.numel() <= 4000
    if whole or not bool(scores.isfinite().all()):  # NaN sorts first in a full run's NMS
        return grouped_nms(boxes, scores, groups, iou_thresh)[:k]
    m = 2 * k
    while m < 0.7 * n:  # beyond, the full run costs about as much as the subset
        outside = scores.topk(m + 1).values[m]  # the best score left out
        subset = (scores > outside).nonzero().squeeze(1)  # in the boxes' order
        kept = grouped_nms_cpu(boxes[subset], scores[subset], groups[subset], iou_thresh, True)
        if len(kept) >= k:
            top = scores[subset[kept[:k]]]
            if stable_ties or bool((top[1:] < top[:-1]).all()):
                return subset[kept[:k]]
            break  # ties among the k best: their order is the full run's sort's
        m = math.ceil(m * k / max(len(kept), 1) * 1.25)  # the kept share so far, and a margin
    if stable_ties:
        return grouped_nms_cpu(boxes, scores, groups, iou_thresh, stable=True)[:k]
    return grouped_nms(boxes, scores, groups, iou_thresh)[:k]


def top_per_image(image_index: Tensor, num_images: int | Tensor, k: int) -> Tensor:
    """``(K,)`` bool: the first ``k`` entries of each image, for candidates ``image_index``
    ``(K,)`` int64 already sorted best first (a one-hot cumulative sum gives each its rank)."""
    one_hot = (image_index[:, None] == torch.arange(num_images, device=image_index.device)).long()
    rank = (one_hot.cumsum(0) * one_hot).sum(1)  # 1 for an image's first entry
    return rank <= k


def select_detections(
    boxes: Tensor,
    scores: Tensor,
    image_index: Tensor,
    num_images: int | Tensor,
    score_thresh: float,
    nms_thresh: float,
    max_detections: int,
    min_size: float | None = None,
) -> dict[str, Tensor]:
    """The detections of a batch, flat.

    Args:
        boxes: float xyxy in input pixels, already clipped: ``(K, 4)`` shared by every class
            (YOLO's cells) or ``(K, C, 4)`` one per class (class-specific regression).
        scores: ``(K, C)`` float per box and class.
        image_index: ``(K,)`` int64, each candidate's image in ``0..num_images-1``.
        score_thresh: pairs scoring at most this are dropped.
        nms_thresh: IoU of the NMS within each image and class.
        max_detections: the highest-scoring detections kept per image after NMS.
        min_size: pairs whose box is not wider and taller than this are dropped (None: none).

    Returns:
        ``boxes`` ``(D, 4)`` float xyxy, ``scores`` ``(D,)``, ``labels`` ``(D,)`` int64 in
        ``0..C-1`` and ``image_index`` ``(D,)`` int64, sorted by score over the whole batch.
    """
    num_classes = scores.shape[1]
    keep = scores > score_thresh
    if min_size is not None:
        big = ((boxes[..., 2:] - boxes[..., :2]) > min_size).all(-1)
        keep = keep & (big if boxes.dim() == 3 else big[:, None])
    flat = keep.reshape(-1).nonzero().squeeze(1)
    k, c = flat // num_classes, flat % num_classes
    b = boxes.reshape(-1, 4)[flat] if boxes.dim() == 3 else boxes[k]
    s, img = scores.reshape(-1)[flat], image_index[k]
    top = grouped_nms(b, s, img * num_classes + c, nms_thresh)
    top = top[top_per_image(img[top], num_images, max_detections)]
    return {"boxes": b[top], "scores": s[top], "labels": c[top], "image_index": img[top]}


def class_specific_detections(
    scores: Tensor,
    deltas: Tensor,
    rois: Tensor,
    box_coder: BoxCoder,
    image_sizes: Tensor,
    score_thresh: float,
    nms_thresh: float,
    max_detections: int,
) -> dict[str, Tensor]:
    """The detections of a batch from per-region class scores and class-specific regression
    (the Fast R-CNN head, R-CNN).

    Args:
        scores: ``(R, C)`` float (softmax probabilities without the background, or SVM margins).
        deltas: ``(R, 4C)`` the box coder's deltas of each region, per class.
        rois: ``(R, 5)`` float ``(image index, x1, y1, x2, y2)`` in input pixels.
        image_sizes: ``(N, 2)`` float ``(h, w)`` of each image in the batch, to clip to.

    Returns:
        :func:`select_detections` of the decoded boxes, clipped to their image, degenerate ones
        dropped.
    """
    image_index = rois[:, 0].long()
    # float32: exp() of the size deltas and pixel coordinates beyond bfloat16's precision
    boxes = box_coder.decode_boxes(deltas.float(), rois[:, 1:].float())  # (R, C, 4)
    boxes = clip_to_sizes(boxes, image_sizes[image_index])  # each region's own image
    return select_detections(
        boxes,
        scores,
        image_index,
        image_sizes.shape[0],
        score_thresh,
        nms_thresh,
        max_detections,
        MIN_BOX_SIZE,
    )


def split_by_image(detections: dict[str, Tensor], num_images: int) -> list[dict[str, Tensor]]:
    """Flat detections (with ``image_index``) -> per image ``boxes``, ``scores``, ``labels``,
    in their order (by score)."""
    index = detections["image_index"]
    fields = [k for k in detections if k != "image_index"]
    return [{k: detections[k][index == i] for k in fields} for i in range(num_images)]
