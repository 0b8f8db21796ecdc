"""The evaluator of a model's task."""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor
from torch.utils.data import Dataset

from visionkit.evaluation.coco_eval import CocoEvaluator
from visionkit.evaluation.sem_seg import SemSegEvaluator


class Evaluator(Protocol):
    def process(self, targets: list[dict[str, Any]], predictions: list[dict[str, Tensor]]) -> None:
        """Add one batch of targets and the model's predictions for them."""

    def evaluate(self) -> dict[str, dict[str, float]]:
        """``{task: {metric: value}}``, numbers in percent."""


def build_evaluator(task: str, dataset: Dataset) -> CocoEvaluator | SemSegEvaluator:
    """``"sem_seg"``: a confusion matrix over ``dataset.class_names``; ``"detection"``: COCO box
    AP against ``dataset.coco`` with its ``cat_ids``."""
    if task == "sem_seg":
        return SemSegEvaluator(dataset.class_names)
    return CocoEvaluator(dataset.coco, dataset.cat_ids)
