"""Detectors: each assembled from a backbone and heads by one ``build_*`` function."""

from visionkit.models.detectors.yolo_v1 import YOLOv1, build_yolo_v1

__all__ = ["YOLOv1", "build_yolo_v1"]
