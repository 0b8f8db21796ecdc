"""Datasets (COCO, Pascal VOC, YOLO, the embedded shapes; boxes or label maps), transforms,
loaders."""

from visionkit.data.build import build_dataloader, build_dataset, collate_fn
from visionkit.data.coco import CocoDetection
from visionkit.data.segmentation import CocoSegmentation, SegmentationDataset, voc_segmentation
from visionkit.data.shapes import CLASSES as SHAPES_CLASSES
from visionkit.data.shapes import ensure_shapes
from visionkit.data.transforms import build_transforms
from visionkit.data.voc import VOCDetection
from visionkit.data.yolo import YoloDetection

__all__ = [
    "SHAPES_CLASSES",
    "CocoDetection",
    "CocoSegmentation",
    "SegmentationDataset",
    "VOCDetection",
    "YoloDetection",
    "build_dataloader",
    "build_dataset",
    "build_transforms",
    "collate_fn",
    "ensure_shapes",
    "voc_segmentation",
]
