"""The model contract in code: :class:`BaseModel`, the class of every entry of ``MODELS``.

Images enter a model as float RGB in ``[0, 1]`` (a ``(N, 3, H, W)`` tensor or a list of
``(3, H_i, W_i)`` tensors) and results leave it in each image's original pixels; in between its
``preprocess`` (:class:`~visionkit.models.preprocess.Preprocessor`) makes the normalized batch
that ``forward`` maps to raw tensors. Code outside ``models/`` needs no model's class: it calls
:meth:`BaseModel.export_module` (``export/graphs.py``), :meth:`BaseModel.regions_per_image`,
:meth:`BaseModel.summary_input` and :meth:`BaseModel.summary_paths` (``analysis/``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from visionkit.models.preprocess import Preprocessor

TASK_NAMES = ("detection", "sem_seg", "instance")
# the outputs of every detector's ONNX graph, of every segmenter's, and of an instance
# segmenter's (the detections and their (D, 1, M, M) mask probabilities) (export/graphs.py)
DETECTION_OUTPUTS = ("boxes", "scores", "labels", "batch_index")
SEGMENTATION_OUTPUTS = ("logits", "sem_seg")
INSTANCE_OUTPUTS = (*DETECTION_OUTPUTS, "masks")


class BaseModel(nn.Module, ABC):
    """What every visionkit model is and does.

    Attributes:
        task: ``"detection"`` (boxes, scored by COCO box AP), ``"sem_seg"`` (label maps,
            scored by IoU) or ``"instance"`` (boxes and their masks, COCO box and mask AP); it
            picks the data readers and the evaluator.
        preprocess: resizes, normalizes and pads images into the batch ``forward`` takes.
        predict_extras: the per-image inputs :meth:`predict` takes beside the images (e.g.
            ``proposals``); the evaluation loop passes the dataset's fields of these names.
        renamed_keys: state-dict key prefixes renamed since checkpoints were written, old ->
            new; :meth:`load_state_dict` and :func:`upgrade_state_dict` map old keys to them.
    """

    task: ClassVar[str]
    preprocess: Preprocessor
    predict_extras: tuple[str, ...] = ()
    renamed_keys: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        super().__init__()
        if self.renamed_keys:
            self.register_load_state_dict_pre_hook(_rename_keys_hook)

    @abstractmethod
    def forward(
        self, batch: Tensor, image_sizes: Tensor | None = None, rois: Tensor | None = None
    ) -> Tensor | dict[str, Tensor]:
        """The raw network on a normalized batch (one signature for every model).

        Args:
            batch: ``(N, 3, H, W)`` normalized images (the Preprocessor's ``tensor``).
            image_sizes: ``(N, 2)`` float ``(h, w)`` of each image inside the batch; None: the
                whole batch frame. Models that neither clip nor mask ignore it.
            rois: ``(R, 5)`` float ``(image index, x1, y1, x2, y2)`` in batch pixels, for models
                that classify regions; dense models ignore it.
        """

    @abstractmethod
    def loss(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict]) -> dict[str, Tensor]:
        """Training losses ``{loss_<part>_<term>: scalar}`` of images and their targets
        (original pixels)."""

    @abstractmethod
    def predict(self, images: Sequence[Tensor] | Tensor, **extras: Any) -> list[dict[str, Tensor]]:
        """Per image its results in its original pixels; ``extras``: :attr:`predict_extras`."""

    @abstractmethod
    def export_module(self) -> nn.Module:
        """The traceable module of the model's ONNX graph, normalization left out: it declares
        ``inputs`` (graph input names; the first, ``images``, reaches it as the normalized batch)
        and ``outputs`` (names of the tensors it returns). ``export/graphs.py`` puts the
        normalization in front of it."""

    def regions_per_image(self) -> int | None:
        """Regions per image that the per-region layers see at test time (a summary's default);
        None for a dense model, whose ``forward`` maps the batch to dense outputs."""
        return None

    def summary_input(self, image_size: Sequence[int], rois: int) -> tuple[int, ...]:
        """The shape :meth:`summary_paths` runs on for one ``(height, width)`` image: the
        ``(1, 3, H, W)`` batch ``preprocess`` makes of it (computed from its settings, so a
        model on any device, meta included, gives it)."""
        sizes = torch.tensor([[int(image_size[0]), int(image_size[1])]], dtype=torch.float32)
        h, w = self.preprocess.batch_shape(sizes)
        return (1, 3, h, w)

    def summary_paths(self, x: Tensor, rois: int) -> None:
        """Run the test-time network on ``x`` (meta zeros of :meth:`summary_input`'s shape) for
        a parameter and MAC count, without the parts that need data (proposal selection, NMS,
        decoding); per-region layers on ``rois`` regions. By default: ``forward``."""
        self(x)


class Detector(BaseModel):
    """A model that detects boxes: :meth:`detect` is its test-time path as tensor operations
    only, what :meth:`predict` runs between preprocessing and mapping back, and what the ONNX
    graph runs."""

    task: ClassVar[str] = "detection"

    @abstractmethod
    def detect(
        self, batch: Tensor, image_sizes: Tensor | None = None, rois: Tensor | None = None
    ) -> dict[str, Tensor]:
        """``forward`` and post-processing (decoding, score threshold, NMS) on a normalized
        batch; arguments as ``forward``'s.

        Returns:
            The flat detections of the batch: ``boxes`` ``(D, 4)`` float32 xyxy in input
            pixels, ``scores`` ``(D,)``, ``labels`` ``(D,)`` int64 in ``0..C-1`` and
            ``image_index`` ``(D,)`` int64.
        """


class DetectExport(nn.Module):
    """A detector's :meth:`Detector.detect` as an ONNX graph body: ``(batch[, image_sizes[,
    proposals]])`` -> :data:`DETECTION_OUTPUTS` (``image_sizes`` int64, ``proposals`` ``(R, 5)``
    rois in input pixels)."""

    outputs = DETECTION_OUTPUTS

    def __init__(self, model: Detector, inputs: Sequence[str]) -> None:
        super().__init__()
        self.model, self.inputs = model, tuple(inputs)

    def forward(
        self, batch: Tensor, image_sizes: Tensor | None = None, proposals: Tensor | None = None
    ) -> tuple[Tensor, ...]:
        sizes = None if image_sizes is None else image_sizes.float()
        return detection_outputs(self.model.detect(batch, sizes, proposals))


def detection_outputs(detections: dict[str, Tensor]) -> tuple[Tensor, ...]:
    """:meth:`Detector.detect`'s dict as the graph's :data:`DETECTION_OUTPUTS` tuple."""
    d = detections
    return d["boxes"], d["scores"], d["labels"], d["image_index"]


def frame_sizes(batch: Tensor, image_sizes: Tensor | None) -> Tensor:
    """``image_sizes``, or for None the whole ``(N, 3, H, W)`` batch frame as ``(N, 2)`` float
    ``(H, W)`` for every image."""
    if image_sizes is not None:
        return image_sizes
    n, _, h, w = batch.shape
    return batch.new_tensor([[h, w]], dtype=torch.float32).expand(n, 2)


def upgrade_state_dict(model: nn.Module, state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` (a state dict of ``model``'s class) with keys under a prefix the model has
    since renamed (:attr:`BaseModel.renamed_keys`) under their new names: checkpoints written
    before a rename load (``checkpoints/weights.py`` compares names through this)."""
    renamed = model.renamed_keys if isinstance(model, BaseModel) else {}
    return {_renamed(key, renamed): value for key, value in state.items()}


def _renamed(key: str, renamed: Mapping[str, str], prefix: str = "") -> str:
    for old, new in renamed.items():
        if key.startswith(prefix + old):
            return prefix + new + key.removeprefix(prefix + old)
    return key


def _rename_keys_hook(module: nn.Module, state_dict: dict, prefix: str, *_: Any) -> None:
    """``load_state_dict`` pre-hook: old keys of ``module`` (under ``prefix``) renamed in place."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        new = _renamed(key, module.renamed_keys, prefix)
        if new != key:
            state_dict[new] = state_dict.pop(key)
