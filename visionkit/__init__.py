"""visionkit: object detection and semantic segmentation on shared CNN backbones."""

__version__ = "0.1.0"
