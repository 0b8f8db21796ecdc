"""The one interface of a trained model ready to apply, whatever runs it: a checkpoint's model in
PyTorch (``predictor.Predictor``) or an exported file under onnxruntime
(``onnx_backend.OnnxPredictor``). The inference runner, the evaluation loop and ``VisionModel``
call only what :class:`PredictorBackend` declares."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from visionkit.io.image import image_to_float


@dataclass
class BelowThreshold:
    """The images a score threshold left without any detection though the model scored some
    below it: what the empty-result hint says once per ``predict`` call or ``visionkit predict``
    run (:meth:`PredictorBackend.__call__` fills it).

    Attributes:
        thresh: the score threshold applied.
        images: images predicted so far.
        emptied: those of them left without a detection by the threshold alone.
        best: the highest score the threshold dropped on those images (0 when none).
    """

    thresh: float
    images: int = 0
    emptied: int = 0
    best: float = 0.0

    def add(self, scores: Tensor, kept: int) -> None:
        """One image: ``scores`` ``(N,)`` all its detections' scores (any device), ``kept`` how
        many passed the threshold. One ``max`` per emptied image; nothing per box."""
        self.images += 1
        if kept == 0 and scores.numel():
            self.emptied += 1
            self.best = max(self.best, float(scores.max()))

    def hint(self, option: str) -> str | None:
        """One line saying how many images came out empty, the highest score dropped there and
        how to see it: ``option`` is how the threshold is given (``"score_thresh="`` in
        Python, ``"--score-thresh "`` on the command line); None when no image was emptied."""
        if not self.emptied:
            return None
        lower = math.floor(self.best * 100) / 100  # two decimals, not above the best score
        which = "the image" if self.images == 1 else f"{self.emptied} of {self.images} images"
        return (
            f"no detection scored >= {self.thresh:g} on {which}; the highest score below it was "
            f"{self.best:.3f} (lower the threshold to see it: {option}{lower:g})"
        )


class PredictorBackend(ABC):
    """A trained model that predicts batches of images.

    Attributes:
        task: ``"detection"``, ``"instance"`` (detection with a mask per object) or
            ``"sem_seg"``.
        class_names, cat_ids: label -> name / the dataset's category id (``len(class_names)``
            classes).
        score_thresh: :meth:`__call__` drops detections scoring below it (after the model's own
            threshold); :meth:`predict` keeps them.
        device: where :meth:`predict` takes its images and gives its results.
        model: the ``nn.Module`` of a checkpoint; None for an ONNX file (its model is the graph).
    """

    task: str
    class_names: list[str]
    cat_ids: list[int]
    score_thresh: float
    device: torch.device
    model: nn.Module | None

    @property
    @abstractmethod
    def predict_extras(self) -> tuple[str, ...]:
        """What :meth:`predict` takes besides the images (``("proposals",)`` for Fast R-CNN,
        SPPNet and R-CNN), as a model declares it: the evaluation loop passes the dataset's."""

    @abstractmethod
    def predict(self, images: Sequence[Tensor], **extras: Any) -> list[dict[str, Tensor]]:
        """Predict a batch as the model's ``predict`` does (no score threshold beyond its own).

        Args:
            images: ``(3, H_i, W_i)`` float RGB in ``[0, 1]`` on :attr:`device`, any sizes.
            extras: the inputs of :attr:`predict_extras`: ``proposals``, per image ``(K_i, 4)``
                float xyxy in its pixels (absent: selective search on each image).

        Returns:
            Per image, on :attr:`device`: detection models ``boxes`` ``(N, 4)`` xyxy in the
            image's pixels, ``scores`` ``(N,)``, ``labels`` ``(N,)`` int64 in ``0..C-1``
            (instance segmentation models also ``masks`` ``(N, H_i, W_i)`` bool, each pasted
            into the image with its box and thresholded at 0.5); segmentation models
            ``sem_seg`` ``(H_i, W_i)`` int64.
        """

    def __call__(
        self, images: Sequence[np.ndarray], below: BelowThreshold | None = None
    ) -> list[dict[str, Tensor]]:
        """Predict a batch of RGB arrays (:func:`visionkit.io.image.image_to_float` makes them
        :meth:`predict`'s images).

        Args:
            images: ``(H_i, W_i, 3)`` uint8 RGB arrays, any sizes (the model resizes).
            below: detection models: each image's scores and the count kept are added to it
                (the empty-result hint).

        Returns:
            Per image, on the CPU: detection models ``boxes`` ``(N, 4)`` float32 xyxy in the
            image's pixels, ``scores`` ``(N,)`` float32 (``>= score_thresh``), ``labels``
            ``(N,)`` int64 in ``0..C-1``, and instance segmentation models' ``masks`` ``(N,
            H_i, W_i)`` bool of the same detections; segmentation models ``sem_seg`` ``(H_i,
            W_i)`` int64.
            Fast R-CNN, SPPNet and R-CNN compute selective search proposals for each image
            (``model.selective_search.mode``, default ``fast``).
        """
        tensors = [
            image_to_float(
                torch.from_numpy(np.ascontiguousarray(img))
                .to(self.device, non_blocking=True)
                .permute(2, 0, 1)
            )
            for img in images
        ]
        outputs = self.predict(tensors)
        if self.task == "sem_seg":
            return [{"sem_seg": o["sem_seg"].cpu()} for o in outputs]
        results = []
        for o in outputs:
            keep = o["scores"] >= self.score_thresh
            scores = o["scores"][keep].float().cpu()
            if below is not None:
                below.add(o["scores"], len(scores))
            kept = {"boxes": o["boxes"][keep].float().cpu(), "scores": scores}
            kept["labels"] = o["labels"][keep].cpu()
            if "masks" in o:  # the largest output: dropped from the batch's as it is taken
                masks = o.pop("masks")
                kept["masks"] = (masks if bool(keep.all()) else masks[keep]).cpu()
            results.append(kept)
        return results
