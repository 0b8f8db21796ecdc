"""Task heads that sit on backbone features."""

from visionkit.models.heads.yolo_head import YoloHead

__all__ = ["YoloHead"]
