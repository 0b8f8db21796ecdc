"""Evaluators: COCO box and mask AP through COCOeval (faster-coco-eval or pycocotools); Pascal VOC
AP; semantic segmentation IoU; and the loop that feeds them a model's predictions (``loop.py``)."""

from visionkit.evaluation.build import DETECTION_METRICS, Evaluator, Evaluators, build_evaluator
from visionkit.evaluation.coco_backends import COCO_BACKENDS, DEFAULT_COCO_BACKEND
from visionkit.evaluation.coco_eval import (
    CocoEvaluator,
    coco_box_metrics,
    coco_mask_metrics,
    coco_metrics,
    from_coco_results,
    to_coco_results,
)
from visionkit.evaluation.sem_seg import (
    SemSegEvaluator,
    boundary_band,
    confusion_matrix,
    segmentation_metrics,
)
from visionkit.evaluation.voc_eval import (
    VocEvaluator,
    precision_recall,
    voc_ap,
    voc_ground_truth,
    voc_metrics,
)

__all__ = [
    "COCO_BACKENDS",
    "DEFAULT_COCO_BACKEND",
    "DETECTION_METRICS",
    "CocoEvaluator",
    "Evaluator",
    "Evaluators",
    "SemSegEvaluator",
    "VocEvaluator",
    "boundary_band",
    "build_evaluator",
    "coco_box_metrics",
    "coco_mask_metrics",
    "coco_metrics",
    "confusion_matrix",
    "from_coco_results",
    "precision_recall",
    "segmentation_metrics",
    "to_coco_results",
    "voc_ap",
    "voc_ground_truth",
    "voc_metrics",
]
