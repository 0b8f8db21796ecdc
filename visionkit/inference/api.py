"""``visionkit.load``: a trained model from a run folder, a checkpoint, a bare state_dict or an
exported ONNX file, ready to ``predict``, ``evaluate`` and ``export``.

::

    import visionkit
    model = visionkit.load("runs/yolo_v1_shapes")
    results = model.predict("image.jpg")
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionkit.checkpoints.device import place_model, select_device
from visionkit.checkpoints.store import load_checkpoint, run_files
from visionkit.config import apply_overrides, load_config
from visionkit.config.diff import trained_config_changes
from visionkit.config.schema import Config, DatasetConfig
from visionkit.errors import ConfigError
from visionkit.inference.backend import PredictorBackend
from visionkit.inference.evaluation import evaluate_model, val_dataset
from visionkit.inference.onnx_backend import ONNX_ACCEPTS, OnnxPredictor
from visionkit.inference.options import check_batch_size, check_precision, check_score_thresh
from visionkit.inference.predictor import Predictor, load_predictor
from visionkit.inference.results import Result
from visionkit.inference.runner import below_threshold, predict_frames
from visionkit.inference.sources import Skipped, Source, resolve_sources
from visionkit.io.outputs import check_outputs

EVALUATE_TAKES = "evaluate takes data.* and eval.* settings; give model settings to visionkit.load"


class VisionModel:
    """A trained model ready to apply: what :func:`load` returns (calling it is ``predict``).

    Attributes:
        predictor: the :class:`~visionkit.inference.backend.PredictorBackend` that ``predict``
            and ``evaluate`` run: ``visionkit.inference.Predictor`` (a checkpoint, in PyTorch) or
            ``visionkit.inference.OnnxPredictor`` (an ONNX file, under onnxruntime).
        config: the resolved :class:`~visionkit.config.Config`: the one the checkpoint or
            ONNX file holds, with the data, evaluation and test-time settings ``load`` was
            given.
    """

    def __init__(
        self, predictor: PredictorBackend, config: Config | None, files: Sequence[Path] = ()
    ) -> None:
        self.predictor, self.config, self.files = predictor, config, list(files)

    @property
    def class_names(self) -> list[str]:
        """Label -> class name (segmentation models: ``background`` first)."""
        return self.predictor.class_names

    @property
    def cat_ids(self) -> list[int]:
        """Label -> the dataset's category id."""
        return self.predictor.cat_ids

    @property
    def task(self) -> str:
        """``"detection"``, ``"instance"`` (boxes and a mask per object) or ``"sem_seg"``."""
        return self.predictor.task

    @property
    def model(self) -> nn.Module | None:
        """The ``nn.Module`` of a checkpoint (in eval mode, on :attr:`device`); None for an ONNX
        file, whose model is its graph (``predictor.session`` runs it)."""
        return self.predictor.model

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self.predictor.device

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype ``predict`` runs under (``load``'s ``precision`` on
        :attr:`device`); None: float32 (always for an ONNX file)."""
        return getattr(self.predictor, "dtype", None)

    def __repr__(self) -> str:
        name = self.config.model.name if self.config is not None else type(self.model).__name__
        precision = f"{self.dtype} autocast" if self.dtype else "float32"
        return (
            f"VisionModel({name}, {self.task}, {len(self.class_names)} classes, {self.device}, "
            f"{precision})"
        )

    def to(self, device: str) -> VisionModel:
        """Move the model to ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``); returns self.
        ``load``'s ``precision`` is resolved again there (``auto``: bf16 where native)."""
        if self.model is None or self.config is None:
            raise ConfigError(
                "device= moves PyTorch models; an ONNX model runs where it was loaded"
            )
        dev = select_device(device)
        p = self.predictor
        model = place_model(p.model, dev, self.config.train.channels_last)
        self.predictor = Predictor(
            model, dev, p.task, p.class_names, p.cat_ids, p.score_thresh, p.precision
        )
        return self

    def predict(
        self,
        source: Any,
        *,
        score_thresh: float | None = None,
        batch_size: int = 8,
        device: str | None = None,
        stream: bool = False,
        bgr: bool = False,
    ) -> list[Result] | Iterator[Result]:
        """Predict every image and video frame of ``source``, ``batch_size`` at a time.

        Args:
            source: an image file, a folder (its images and videos), a glob, a ``.txt`` list of
                paths, a video file, a webcam index (``int``), a numpy array, a PIL image, a
                torch tensor, or a list mixing these. **Numpy arrays are RGB** ``(H, W, 3)``
                (``bgr=True`` for OpenCV's BGR order), ``(H, W, 4)`` RGBA (alpha dropped, as a
                PIL RGBA image's is) or ``(H, W)`` grey; tensors are ``(3, H, W)`` RGB,
                ``(4, H, W)`` RGBA (alpha dropped) or ``(H, W)``, or a batch ``(N, 3, H, W)``:
                one result per image, as ``list(tensor)`` gives; all uint8, or float in
                ``[0, 1]`` (rounded to 8 bits, as an image file holds them; other values are
                refused, not guessed). A PIL image of any mode is read as the same image saved
                to a file. An RGB array and the same image as a file give identical results.
            score_thresh: drop detections scoring below it, in [0, 1] (default: ``load``'s).
                When it leaves images without any detection though the model scored some
                below it, one warning per call says so, with the highest such score.
            batch_size: images per forward pass, 1 to ``MAX_BATCH`` (4096).
            device: move the model there first (it stays there).
            stream: return a generator that predicts one batch at a time as it is consumed
                (memory stays flat over a long video; a webcam, which never ends, needs it);
                else a list.
            bgr: numpy arrays hold BGR, not RGB.

        Returns:
            One :class:`~visionkit.inference.results.Result` per image or frame, in order (an
            instance segmentation model's with ``masks``: each frame's own, pasted as it is
            predicted and held only by its Result).
            Files that cannot be read are skipped with a one-line warning each
            (``skipped: <reason>``, as ``visionkit predict`` reports them).
        """
        check_batch_size(batch_size)
        if device is not None:
            self.to(device)
        sources = resolve_sources(source, bgr=bgr)
        predictor = self.predictor
        if score_thresh is not None:
            predictor = copy.copy(predictor)  # shares the model; this call's threshold only
            predictor.score_thresh = check_score_thresh(score_thresh)
        results = self._results(predictor, sources, batch_size)
        return results if stream else list(results)

    __call__ = predict

    def _results(
        self, predictor: PredictorBackend, sources: list[Source], batch_size: int
    ) -> Iterator[Result]:
        names, cat_ids = self.class_names, self.cat_ids
        below = below_threshold(predictor)
        frames = predict_frames(predictor, sources, batch_size, _warn_skipped, below)
        with contextlib.closing(frames):
            for frame, prediction in frames:
                yield Result.from_prediction(frame, prediction, names, cat_ids)
        hint = below.hint("score_thresh=") if below is not None else None
        if hint:  # once per call, when every image is done (a stream: when it ends)
            warnings.warn(hint, stacklevel=2)

    def evaluate(
        self,
        data: str | Path | Config | DatasetConfig | None = None,
        *,
        metric: str = "coco",
        overrides: list[str] | None = None,
        progress: bool = False,
        precision: str = "float32",
    ) -> dict[str, dict[str, float]]:
        """Evaluate on a dataset; returns the metrics dict ``visionkit eval --out`` writes (less
        its ``"units"`` entry).

        Args:
            data: None (the model's config's ``data.val``), a YAML config file or a ``Config``
                (its ``data`` and ``eval`` sections), or a ``DatasetConfig`` (``data.val``).
            metric: ``coco`` (COCOeval's 12 numbers and per-class AP), ``voc07``, ``voc`` or
                ``all``; segmentation models give mIoU, fwIoU, mACC, pACC and boundary IoU.
            overrides: dotted ``data.*`` and ``eval.*`` overrides of the config evaluated
                (``data.val.num_images=50``); a ``model.*`` one is a ConfigError (the model is
                built: give it to :func:`load`).
            progress: draw a progress bar.
            precision: the precision of the predictions scored: ``float32`` (default, whatever
                ``load``'s: the numbers training reports and ``visionkit eval`` gives),
                ``auto``, ``bf16`` or ``fp16`` (CUDA only), as ``load``'s ``precision``, to
                score what ``predict`` gives. An ONNX file's graph is float32: ``float32`` or
                ``auto`` only.

        An ONNX file is evaluated through onnxruntime (its graph's own score threshold, as the
        checkpoint's model), on the same data and with the same evaluator.

        Returns:
            ``{"bbox": {"AP": .., "AP50": .., ...}, "speed": {"ms_per_image": ..}}`` for
            detection with ``coco`` (``voc07``/``voc`` sections ``{"AP-<class>": .., "mAP": ..}``),
            ``{"sem_seg": {"mIoU": .., ...}, "speed": ..}`` for segmentation. Every AP, AR, IoU
            and accuracy is a percentage on COCO's 0-100 scale (``AP50`` 81.5 is 81.5 %, not
            0.815), ``speed``'s ``ms_per_image`` in milliseconds
            (:mod:`visionkit.evaluation.units`).
        """
        cfg = self.config
        if isinstance(data, DatasetConfig):
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val=data))
        elif data is not None:
            other = data if isinstance(data, Config) else load_config(data)
            cfg = dataclasses.replace(cfg, data=other.data, eval=other.eval)
        if overrides:
            cfg = apply_overrides(cfg, overrides, "config")
            trained_config_changes(self.config, cfg, "evaluate", (), EVALUATE_TAKES)
        predictor = _at_precision(self.predictor, check_precision(precision), "evaluate")
        dataset = val_dataset(cfg, progress)
        return evaluate_model(predictor, cfg, dataset, metric, progress).metrics

    def export(self, path: str | Path, **kwargs: Any) -> Any:
        """Export to ONNX (``visionkit.export.onnx.export_onnx``; ``kwargs`` are its options):
        normalization, decoding and NMS inside the graph, the class names and category ids in
        its metadata; ``visionkit.load(path)`` loads the file back."""
        if self.model is None or self.config is None:
            raise ConfigError("export takes a PyTorch model; this one is already an ONNX file")
        from visionkit.export.onnx import export_onnx

        # the output rule: never over the checkpoint (or run folder) this model was loaded from
        check_outputs({"the model's file": self.files}, files={"export": path})
        return export_onnx(
            self.model, self.config, str(path), self.class_names, self.cat_ids, **kwargs
        )


def _check_onnx_precision(precision: str, where: str) -> None:
    """An ONNX file runs the float32 graph it was exported as: ``precision`` (a checked name)
    ``auto`` or ``float32``, else a ConfigError naming ``where``."""
    if precision not in ("auto", "float32"):
        raise ConfigError(
            f"{where}: precision {precision}: an ONNX file runs the float32 graph it was exported "
            "as (precision auto or float32)"
        )


def _at_precision(predictor: PredictorBackend, precision: str, where: str) -> PredictorBackend:
    """``predictor`` at ``precision`` (a checked name): the same model (an ONNX file's:
    :func:`_check_onnx_precision`)."""
    if isinstance(predictor, Predictor):
        return (
            predictor if predictor.precision == precision else predictor.with_precision(precision)
        )
    _check_onnx_precision(precision, where)
    return predictor


def _warn_skipped(record: Skipped) -> None:
    warnings.warn(f"skipped: {record.reason}", stacklevel=2)


def _onnx_providers(device: str | None) -> list[str] | None:
    """onnxruntime execution providers for a device name (None: the runtime's default)."""
    if device is None or device == "auto":
        return None
    if device.startswith("cuda"):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _warn_config(line: str) -> None:
    warnings.warn(f"config: {line}", stacklevel=3)


def _given_config(config: str | Path | Config | None, overrides: list[str]) -> Config | None:
    """``config=`` (a YAML file or a Config) with the overrides applied; None if not given."""
    if isinstance(config, Config):
        return apply_overrides(config, overrides, "config") if overrides else config
    return load_config(config, overrides) if config is not None else None


def _resolve_config(
    config: str | Path | Config | None,
    overrides: list[str],
    run_yaml: Path | None,
    ckpt: dict[str, Any],
    weights: Path,
) -> Config:
    """The config to build: ``config`` if given (checked against the checkpoint's by
    ``load_predictor``), else the one the checkpoint holds, else (a bare state_dict) the run
    folder's ``config.yaml``; the overrides applied."""
    given = _given_config(config, overrides)
    if given is not None:
        return given
    stored = ckpt.get("config")
    if isinstance(stored, dict):
        return apply_overrides(stored, overrides, str(weights))
    if run_yaml is not None:
        return load_config(run_yaml, overrides)
    raise ConfigError(
        f"{weights} holds no config (a bare state_dict): give the YAML config it was trained "
        "with (config= / --config)"
    )


def _load_onnx(
    path: Path,
    config: str | Path | Config | None,
    overrides: list[str],
    score_thresh: float,
    device: str | None,
    report: Callable[[str], None],
) -> VisionModel:
    """An exported file under onnxruntime: its model is fixed in its graph, so ``config`` and
    ``overrides`` may change only what it can honour (``ONNX_ACCEPTS``)."""
    predictor = OnnxPredictor(str(path), score_thresh, _onnx_providers(device))
    stored = predictor.config
    cfg = _given_config(config, overrides) or apply_overrides(stored, overrides, str(path))
    for line in trained_config_changes(stored, cfg, str(path), (), ONNX_ACCEPTS):
        report(line)
    # a train.device given (config=, an override) runs it there
    wanted = _onnx_providers(cfg.train.device) if cfg.train.device != stored.train.device else None
    if wanted and wanted[0] not in predictor.session.get_providers():
        predictor = OnnxPredictor(str(path), score_thresh, wanted)
    return VisionModel(predictor, cfg, [path])


def load(
    path: str | Path,
    config: str | Path | Config | None = None,
    device: str | None = None,
    score_thresh: float = 0.3,
    *,
    precision: str = "auto",
    half: bool = False,
    overrides: list[str] | None = None,
    report: Callable[[str], None] | None = None,
) -> VisionModel:
    """A trained model, ready to ``predict``, ``evaluate`` and ``export``.

    The checkpoint is the truth about the model: it is built from the config the checkpoint
    holds. ``config=`` and ``overrides`` may change its data and evaluation settings and the
    model's test-time ones (``visionkit.config.diff.TEST_TIME_MODEL_KEYS``: score and NMS
    thresholds, detection caps, test-time proposal counts); any other ``model.*`` key that
    differs from the stored one is a ConfigError naming it. Each difference is reported.

    Args:
        path: a training run's folder (its ``best.pth``, else ``last.pth``; the checkpoint's
            config, else its ``config.yaml``); a checkpoint (its stored config, class names and
            category ids: nothing else needed); a bare state_dict (``config=`` required, and it
            is then the truth; class names from the config's ``data.val``); or an exported
            ``.onnx`` file (onnxruntime; its model is fixed in the graph: ``config=`` and
            ``overrides`` may change only ``data.*``, ``eval.*`` and ``train.device``).
        config: a YAML file or a ``Config``: the data and evaluation settings, and the model
            settings of a bare state_dict.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; default: the
            config's ``train.device``.
        score_thresh: detections scoring below it are dropped (``predict`` may change it).
        precision: the precision ``predict`` runs in: ``auto`` (default: bfloat16 autocast
            where the device computes it natively, a GPU of compute capability 8.0 or newer or
            a CPU with AVX512-BF16 or AMX, else float32), ``float32``, ``bf16`` or ``fp16``
            (float16 autocast, CUDA only). Boxes and scores come back float32 whatever it is.
            ``evaluate`` scores float32 predictions unless told otherwise. An ONNX file runs
            the float32 graph it was exported as: ``auto`` or ``float32``.
        half: ``precision="fp16"`` (the older name).
        overrides: dotted config overrides (``model.yolo.nms_thresh=0.4``).
        report: called with one line per setting that differs from the stored config
            (``"data.val.num_images: 50 (best.pth's config: 8)"``); default: a warning each.

    Raises:
        CheckpointError, ConfigError: one line: a missing or foreign file, a bare state_dict
            without ``config=``, a ``model.*`` setting that differs from the checkpoint's.
    """
    score_thresh = check_score_thresh(score_thresh)
    precision = check_precision(precision)
    if half and precision not in ("auto", "fp16"):
        raise ConfigError(f"half=True is precision='fp16', but precision={precision!r}: give one")
    precision = "fp16" if half else precision
    path, report = Path(path), report or _warn_config
    overrides = [*(overrides or []), *([f"train.device={device}"] if device is not None else [])]
    if path.suffix.lower() == ".onnx":
        _check_onnx_precision(precision, str(path))
        return _load_onnx(path, config, overrides, score_thresh, device, report)
    weights, run_yaml = run_files(path)
    ckpt = load_checkpoint(weights)
    cfg = _resolve_config(config, overrides, run_yaml, ckpt, weights)
    predictor = load_predictor(cfg, str(weights), score_thresh, precision, ckpt, report)
    return VisionModel(predictor, cfg, [weights, *([run_yaml] if run_yaml else [])])
