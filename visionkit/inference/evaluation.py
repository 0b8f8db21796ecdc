"""Scoring a model, or a saved COCO results file, on a config's validation data
(``VisionModel.evaluate`` and ``visionkit eval``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from visionkit.config.schema import Config
from visionkit.data import build_dataloader, build_dataset
from visionkit.evaluation import build_evaluator
from visionkit.evaluation.coco_backends import DEFAULT_COCO_BACKEND
from visionkit.evaluation.coco_eval import check_coco_results
from visionkit.evaluation.loop import evaluate
from visionkit.inference.backend import PredictorBackend
from visionkit.io.structured import read_json
from visionkit.models import model_task


@dataclass
class Evaluation:
    """What an evaluation gives.

    Attributes:
        metrics: ``{"bbox": {"AP": ..}, "voc07": {"mAP": ..}, "speed": {..}}`` (detection) or
            ``{"sem_seg": {"mIoU": ..}, ...}``, in percent (COCO's 0-100 scale; ``speed`` in
            ms), as ``visionkit eval --out`` writes them (beside its ``"units"`` entry).
        results: the model's COCO box results (detection models; ``[]`` otherwise).
        images: images evaluated.
        skipped: unreadable images left out (``data.on_bad_image: skip``).
        evaluator: the evaluator after scoring (its state draws the plots:
            :func:`visionkit.evaluation.plots.write_evaluation_plots`).
    """

    metrics: dict[str, dict[str, float]]
    results: list[dict[str, Any]]
    images: int
    skipped: int
    evaluator: Any = None


def val_dataset(cfg: Config, progress: bool = True) -> Dataset:
    """``cfg.data.val`` as the evaluation reads it (no augmentation; label maps for a
    segmentation model; the shapes dataset generated if needed, with a progress bar on a
    terminal when ``progress``, else a few plain lines)."""
    return build_dataset(
        cfg.data.val, cfg.data.augment, tuple(cfg.model.input_size), train=False,
        task=model_task(cfg.model.name), on_bad_image=cfg.data.on_bad_image, progress=progress,
    )  # fmt: skip


def evaluate_model(
    predictor: PredictorBackend,
    cfg: Config,
    dataset: Dataset,
    metric: str = "coco",
    progress: bool = False,
) -> Evaluation:
    """``predictor`` (eager or onnxruntime; its ``predict``: no score threshold beyond the
    model's own) over ``dataset`` (:func:`val_dataset`), batched by ``cfg.eval.batch_size`` with
    ``cfg.data.num_workers`` loader workers; ``metric``: ``coco``, ``voc07``, ``voc`` or ``all``
    (box metrics; segmentation models take ``coco``); the predictor's ``cat_ids`` map its labels
    to the dataset's categories (``build_evaluator``); COCOeval by ``cfg.eval.coco_backend``."""
    task = predictor.task
    evaluator = build_evaluator(task, dataset, metric, predictor.cat_ids, cfg.eval.coco_backend)
    loader = build_dataloader(dataset, cfg.eval.batch_size, cfg.data.num_workers, shuffle=False)
    metrics = evaluate(predictor, loader, evaluator, predictor.device, progress=progress)
    skipped = len(loader.skipped)
    results = evaluator.results if task == "detection" else []
    return Evaluation(metrics, results, len(dataset) - skipped, skipped, evaluator)


def evaluate_predictions(
    path: Path, dataset: Dataset, metric: str = "coco", coco_backend: str = DEFAULT_COCO_BACKEND
) -> Evaluation:
    """A COCO box results JSON (``[{"image_id", "category_id", "bbox": xywh, "score"}]``, the
    dataset's ids) scored on ``dataset`` (COCOeval by ``coco_backend``); a malformed file or
    record (:func:`~visionkit.evaluation.coco_eval.check_coco_results`: boxes within their
    image, scores in [0, 1]) is a one-line ``DataError``."""
    results = read_json(path)
    images = dataset.coco.imgs
    sizes = {i: (images[i]["height"], images[i]["width"]) for i in dataset.ids}
    check_coco_results(results, sizes, dataset.cat_ids, str(path))
    evaluator = build_evaluator("detection", dataset, metric, coco_backend=coco_backend)
    evaluator.add_results(results, dataset.ids)
    return Evaluation(evaluator.evaluate(), results, len(dataset), 0, evaluator)
