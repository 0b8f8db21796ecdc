"""A checkpoint's model ready to apply: built from its config, weights loaded, in eval mode, on
its device, predicting batches (the PyTorch backend of ``backend.PredictorBackend``)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from visionkit.checkpoints.device import native_bfloat16, place_model, select_device
from visionkit.checkpoints.store import load_checkpoint
from visionkit.checkpoints.weights import checkpoint_classes, load_model_weights
from visionkit.config.diff import TEST_TIME_HINT, trained_config_changes
from visionkit.config.schema import Config, ProposalConfig
from visionkit.data import build_dataset
from visionkit.errors import CheckpointError, ConfigError
from visionkit.inference.backend import PredictorBackend
from visionkit.inference.options import check_precision
from visionkit.models import build_model
from visionkit.utils.validators import is_id


def class_metadata(ckpt: dict[str, Any], cfg: Config, task: str) -> tuple[list[str], list[int]]:
    """``(class_names, cat_ids)``: label -> name and label -> the dataset's category id.

    From the checkpoint when the trainer stored them there, else from the config's ``data.val``
    dataset (read without its proposals; the shapes dataset is generated if needed).
    """
    where = "the checkpoint"
    if "class_names" in ckpt and "cat_ids" in ckpt:
        names, cat_ids = ckpt["class_names"], ckpt["cat_ids"]
        if not (
            isinstance(names, list | tuple)
            and all(isinstance(n, str) for n in names)
            and isinstance(cat_ids, list | tuple)
            and all(is_id(c) for c in cat_ids)
            and len(cat_ids) == len(names)
        ):
            raise CheckpointError(
                "the checkpoint's class_names and cat_ids must be lists of as many names and "
                "integer ids"
            )
        # no duplicate-name check here: torchvision's COCO weights name their unused label
        # slots "N/A" (datasets are held to unique names where they are read)
        names, cat_ids = list(names), list(cat_ids)
    else:
        where = "data.val"
        val = dataclasses.replace(cfg.data.val, proposals=ProposalConfig())
        dataset = build_dataset(val, cfg.data.augment, None, train=False, task=task)
        names, cat_ids = list(dataset.class_names), [int(c) for c in dataset.cat_ids]
    if len(names) != cfg.model.num_classes:
        raise CheckpointError(
            f"model.num_classes is {cfg.model.num_classes} but {where} names "
            f"{len(names)} classes ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
        )
    return names, cat_ids


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of inference at ``precision`` on ``device``; None: float32.

    ``auto`` is bfloat16 where ``device`` computes it natively
    (:func:`~visionkit.checkpoints.device.native_bfloat16`: a GPU of compute capability 8.0 or
    newer, a CPU with AVX512-BF16 or AMX), else float32.

    Raises:
        ConfigError: ``fp16`` off CUDA (CPUs have no fast float16 arithmetic).
    """
    if precision == "auto":
        return torch.bfloat16 if native_bfloat16(device)[0] else None
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"precision fp16 (--half) runs on CUDA only; the device is {device} "
            "(use bf16 or float32)"
        )
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


class Predictor(PredictorBackend):
    """A checkpoint's model in PyTorch: ``model.predict`` under ``torch.inference_mode``
    (:class:`~visionkit.inference.backend.PredictorBackend`).

    Args:
        model: a visionkit model (``predict(images)``), already on ``device``; put in eval mode.
        device: where images go.
        task: ``"detection"``, ``"instance"`` or ``"sem_seg"`` (the model's ``task``).
        class_names, cat_ids: label -> name / the dataset's category id.
        score_thresh: detections scoring below it are dropped (after the model's own threshold).
        precision: ``float32`` (this class's default: exact numbers), ``bf16`` (bfloat16
            autocast), ``fp16`` (float16 autocast, CUDA only) or ``auto`` (``bf16`` where
            ``device`` computes bfloat16 natively, else ``float32``: :func:`resolve_precision`).
            The predictions are float32 whatever it is.

    Attributes:
        dtype: the autocast dtype ``precision`` resolved to on ``device``; None: float32.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        task: str,
        class_names: Sequence[str],
        cat_ids: Sequence[int],
        score_thresh: float = 0.3,
        precision: str = "float32",
    ) -> None:
        self.precision = check_precision(precision)
        self.dtype = resolve_precision(self.precision, device)
        self.model, self.device, self.task = model.eval(), device, task
        self.class_names, self.cat_ids = list(class_names), list(cat_ids)
        self.score_thresh = score_thresh

    def with_precision(self, precision: str) -> Predictor:
        """This predictor (the same model) at another ``precision``."""
        return Predictor(
            self.model, self.device, self.task, self.class_names, self.cat_ids,
            self.score_thresh, precision,
        )  # fmt: skip

    @property
    def predict_extras(self) -> tuple[str, ...]:
        """The model's ``predict_extras``."""
        return tuple(self.model.predict_extras)

    def predict(self, images: Sequence[Tensor], **extras: Any) -> list[dict[str, Tensor]]:
        """``model.predict(images, **extras)`` in inference mode, under autocast to
        :attr:`dtype` when it is set; see :meth:`PredictorBackend.predict`."""
        autocast = (
            torch.autocast(self.device.type, self.dtype) if self.dtype else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            return self.model.predict(images, **extras)


def load_predictor(
    cfg: Config,
    weights: str,
    score_thresh: float = 0.3,
    precision: str = "float32",
    ckpt: dict[str, Any] | None = None,
    report: Callable[[str], None] | None = None,
) -> Predictor:
    """Build ``cfg.model``, load ``weights`` (a checkpoint of the trainer or a bare state_dict;
    ``ckpt``: its contents when already read with ``load_checkpoint``) and place it on
    ``cfg.train.device`` (``auto``: CUDA when present).

    A checkpoint that holds its config (the trainer's) is the truth about the model: a ``cfg``
    whose ``model.*`` differs from it (beyond the test-time keys of
    ``visionkit.config.diff.TEST_TIME_MODEL_KEYS``) is a one-line ConfigError naming each key;
    every allowed difference (test-time ``model.*``, ``data.*``, ``eval.*``) is one line passed
    to ``report``. A bare state_dict holds none: ``cfg`` is then the truth. ``precision``: see
    :class:`Predictor`.
    """
    ckpt = load_checkpoint(weights) if ckpt is None else ckpt
    stored = ckpt.get("config")
    changes = []
    if isinstance(stored, dict):
        hint = TEST_TIME_HINT
        if checkpoint_classes(ckpt) not in (None, cfg.model.num_classes):
            hint += f"; to fine-tune it on other classes, train with --init-from {weights}"
        changes = trained_config_changes(stored, cfg, weights, hint=hint)
    if report is not None:
        for line in changes:
            report(line)
    device = select_device(cfg.train.device)
    model = build_model(cfg.model)
    task = model.task
    load_model_weights(model, ckpt, cfg.model.name, weights, cfg.model.num_classes)
    names, cat_ids = class_metadata(ckpt, cfg, task)
    model = place_model(model, device, cfg.train.channels_last)
    return Predictor(model, device, task, names, cat_ids, score_thresh, precision)
