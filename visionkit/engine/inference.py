"""Running a model over a data loader and feeding an evaluator."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from visionkit.evaluation.build import Evaluator


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    evaluator: Evaluator,
    device: torch.device,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Predict every image of ``loader`` in eval mode and return ``evaluator.evaluate()``.

    Targets carrying precomputed ``proposals`` (Fast R-CNN, SPPNet) pass them to ``predict``.
    """
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for images, targets in tqdm(loader, desc="eval", disable=not progress, leave=False):
            images = [img.to(device, non_blocking=True) for img in images]
            extra = {}
            if targets and "proposals" in targets[0]:
                extra["proposals"] = [t["proposals"].to(device) for t in targets]
            evaluator.process(targets, model.predict(images, **extra))
    model.train(was_training)
    return evaluator.evaluate()
