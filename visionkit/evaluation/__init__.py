"""Evaluators: COCO box AP through pycocotools; semantic segmentation IoU."""

from visionkit.evaluation.build import Evaluator, build_evaluator
from visionkit.evaluation.coco_eval import CocoEvaluator, coco_box_metrics, to_coco_results
from visionkit.evaluation.sem_seg import SemSegEvaluator, confusion_matrix, segmentation_metrics

__all__ = [
    "CocoEvaluator",
    "Evaluator",
    "SemSegEvaluator",
    "build_evaluator",
    "coco_box_metrics",
    "confusion_matrix",
    "segmentation_metrics",
    "to_coco_results",
]
