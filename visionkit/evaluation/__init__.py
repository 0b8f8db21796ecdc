"""Evaluators: COCO box AP through pycocotools."""

from visionkit.evaluation.coco_eval import CocoEvaluator, coco_box_metrics, to_coco_results

__all__ = ["CocoEvaluator", "coco_box_metrics", "to_coco_results"]
