"""The evaluation loop: a model's predictions over a data loader, fed to an evaluator (the
trainer's validation, ``VisionModel.evaluate`` and ``visionkit eval`` alike)."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from visionkit.evaluation.build import Evaluator


def evaluate(
    model: nn.Module | Any,
    loader: DataLoader,
    evaluator: Evaluator,
    device: torch.device,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Predict every image of ``loader`` in eval mode and return ``evaluator.evaluate()`` plus
    ``{"speed": {"ms_per_image": t}}``: the wall time of ``model.predict`` (batched as the loader
    batches, loading and scoring excluded) per image, in milliseconds.

    The inputs the model declares in ``predict_extras`` besides the images (Fast R-CNN's and
    SPPNet's precomputed ``proposals``) are taken from the targets that carry them. ``model``
    may also be anything with that ``predict`` and ``predict_extras``: a predictor backend
    (``visionkit.inference.backend.PredictorBackend``, eager or onnxruntime) predicts as its
    model does, with no score threshold beyond the model's own.
    """
    module = model if isinstance(model, nn.Module) else None
    was_training = module is not None and module.training
    if module is not None:
        module.eval()
    seconds, count = 0.0, 0
    with torch.inference_mode():
        for images, targets in tqdm(loader, desc="eval", disable=not progress, leave=False):
            images = [img.to(device, non_blocking=True) for img in images]
            extra = {
                k: [t[k].to(device) for t in targets]
                for k in getattr(model, "predict_extras", ())
                if targets and k in targets[0]
            }
            _synchronize(device)
            start = time.perf_counter()
            predictions = model.predict(images, **extra)
            _synchronize(device)
            seconds += time.perf_counter() - start
            count += len(images)
            evaluator.process(targets, predictions)
    if module is not None:
        module.train(was_training)
    return evaluator.evaluate() | {"speed": {"ms_per_image": 1000 * seconds / max(count, 1)}}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
