"""The evaluator of a model's task (and, for detection, of a metric)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from torch import Tensor
from torch.utils.data import Dataset

from visionkit.errors import ConfigError
from visionkit.evaluation.coco_backends import DEFAULT_COCO_BACKEND
from visionkit.evaluation.coco_eval import IOU_TYPES, STAT_NAMES, CocoEvaluator
from visionkit.evaluation.sem_seg import SemSegEvaluator
from visionkit.evaluation.voc_eval import VOC_METRICS, VocEvaluator

DETECTION_METRICS = ("coco", "segm", "voc07", "voc", "all")  # segm: instance models only


class Evaluator(Protocol):
    def process(self, targets: list[dict[str, Any]], predictions: list[dict[str, Tensor]]) -> None:
        """Add one batch of targets and the model's predictions for them."""

    def synchronize(self) -> None:
        """Distributed: combine every rank's state on rank 0 (after which rank 0's ``evaluate``
        scores the whole dataset as one process would); nothing in one process."""

    def evaluate(self) -> dict[str, dict[str, float]]:
        """``{task: {metric: value}}``, numbers in percent."""


class Evaluators:
    """Several box evaluators fed the same batches; ``evaluate`` merges their sections."""

    def __init__(self, evaluators: Sequence[CocoEvaluator | VocEvaluator]) -> None:
        self.evaluators = list(evaluators)

    def process(self, targets: list[dict[str, Any]], predictions: list[dict[str, Tensor]]) -> None:
        for e in self.evaluators:
            e.process(targets, predictions)

    def add_results(self, results: list[dict[str, Any]], image_ids: Sequence[int]) -> None:
        """Add COCO results (``bbox`` xywh, the dataset's category ids) for ``image_ids``."""
        for e in self.evaluators:
            e.add_results(results, image_ids)

    def synchronize(self) -> None:
        """Each evaluator's :meth:`synchronize`."""
        for e in self.evaluators:
            e.synchronize()

    @property
    def results(self) -> list[dict[str, Any]]:
        """The predictions so far as COCO results (from the first evaluator)."""
        return self.evaluators[0].results

    def evaluate(self) -> dict[str, dict[str, float]]:
        return {k: v for e in self.evaluators for k, v in e.evaluate().items()}


def build_evaluator(
    task: str,
    dataset: Dataset,
    metric: str = "coco",
    model_cat_ids: Sequence[int] | None = None,
    coco_backend: str = DEFAULT_COCO_BACKEND,
) -> CocoEvaluator | VocEvaluator | Evaluators | SemSegEvaluator:
    """``"sem_seg"``: a confusion matrix over ``dataset.class_names``. ``"detection"``, against
    ``dataset.coco`` with its ``cat_ids``, by ``metric``: ``"coco"`` COCO box AP (section
    ``bbox``), ``"voc07"`` / ``"voc"`` Pascal VOC AP at IoU 0.5 (11-point / area, sections of the
    same names), ``"all"`` the three. ``"instance"`` (instance segmentation): ``"coco"`` and
    ``"all"`` COCO box and mask AP (sections ``bbox`` and ``segm``, as detectron2 scores Mask
    R-CNN), ``"segm"`` mask AP alone, ``"voc07"`` / ``"voc"`` box AP as for detection; ``"segm"``
    for any other task is a ConfigError. Every box evaluator also holds its predictions as COCO
    ``results`` (with each mask's RLE ``segmentation`` for instance models) and takes saved ones
    through ``add_results``. ``model_cat_ids`` (label -> the category id a checkpoint stored,
    e.g. torchvision's 90 COCO slots) replace the dataset's when they hold every one of the
    dataset's ids: the model's labels keep their own ids. ``coco_backend``: COCOeval's
    implementation for the ``bbox`` and ``segm`` sections (``eval.coco_backend``:
    :data:`~visionkit.evaluation.coco_backends.COCO_BACKENDS`)."""
    if task == "sem_seg":
        return SemSegEvaluator(dataset.class_names)
    if metric not in DETECTION_METRICS:
        raise ConfigError(f"unknown metric {metric!r}; expected one of {DETECTION_METRICS}")
    if metric == "segm" and task != "instance":
        raise ConfigError(
            f"metric 'segm' scores instance masks; a {task} model predicts none (mask_rcnn does)"
        )
    cat_ids = list(dataset.cat_ids)
    if model_cat_ids is not None and set(cat_ids) <= {int(c) for c in model_cat_ids}:
        cat_ids = [int(c) for c in model_cat_ids]
    if task == "instance" and metric in ("coco", "segm", "all"):
        iou_types = ("segm",) if metric == "segm" else IOU_TYPES
        return CocoEvaluator(dataset.coco, cat_ids, coco_backend, iou_types)
    if metric == "coco":
        return CocoEvaluator(dataset.coco, cat_ids, coco_backend)
    if metric == "all":
        coco = CocoEvaluator(dataset.coco, cat_ids, coco_backend)
        return Evaluators([coco, VocEvaluator(dataset.coco, cat_ids, VOC_METRICS)])
    return VocEvaluator(dataset.coco, cat_ids, (metric,))


def check_best_metric(best_metric: str, task: str) -> None:
    """``train.best_metric`` names a number the task's evaluator gives (``bbox/AP50``,
    ``segm/AP`` for instance models, ``sem_seg/mIoU``, a per-class ``bbox/AP-<name>``...), else
    a ConfigError: a name no evaluation produces would never write ``best.pth``."""
    section, _, name = best_metric.partition("/")
    if task == "sem_seg":
        ok = section == "sem_seg" and (
            name in ("mIoU", "fwIoU", "mACC", "pACC")
            or name.startswith(("IoU-", "ACC-", "bIoU@", "bACC@"))
        )
        example = "sem_seg/mIoU"
    else:
        sections = IOU_TYPES if task == "instance" else ("bbox",)
        ok = section in sections and (name in STAT_NAMES or name.startswith("AP-"))
        example = "segm/AP50" if task == "instance" else "bbox/AP50"
    if not ok:
        raise ConfigError(
            f"train.best_metric {best_metric!r} is not a number the {task} evaluation gives "
            f"(e.g. {example})"
        )
