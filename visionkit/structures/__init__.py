"""Box formats and conversions: the single converter used at every edge of the toolkit."""

from visionkit.structures.boxes import (
    BOX_FORMATS,
    aligned_box_iou,
    clip_boxes,
    clip_to_sizes,
    convert_boxes,
    valid_boxes_mask,
)

__all__ = [
    "BOX_FORMATS",
    "aligned_box_iou",
    "clip_boxes",
    "clip_to_sizes",
    "convert_boxes",
    "valid_boxes_mask",
]
