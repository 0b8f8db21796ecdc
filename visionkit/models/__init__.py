"""Models: backbones, heads and detectors, and the registry that builds them from configs."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from visionkit.config.schema import MAX_SIDE, ModelConfig
from visionkit.errors import ConfigError
from visionkit.models.backbones.geometry import min_input_side
from visionkit.models.base import TASK_NAMES, BaseModel
from visionkit.models.detectors.fast_rcnn import build_fast_rcnn
from visionkit.models.detectors.faster_rcnn import build_faster_rcnn
from visionkit.models.detectors.mask_rcnn import MaskRCNN, build_mask_rcnn
from visionkit.models.detectors.rcnn import RCNN, build_rcnn
from visionkit.models.detectors.sppnet import build_sppnet
from visionkit.models.detectors.two_stage import TwoStageDetector
from visionkit.models.detectors.yolo_v1 import YOLOv1, build_yolo_v1
from visionkit.models.segmentors.fcn import FCN, build_fcn

# (config key, its value, the sides it sets) of each configured size a whole-image network sees
InputSides = list[tuple[str, object, list[int]]]


@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes:
        cls: its class, a :class:`~visionkit.models.base.BaseModel` (checked: TypeError).
        build: model config -> the model.
        input_sides: the configured sizes its whole-image network sees (:func:`check_input_size`).
    """

    cls: type[BaseModel]
    build: Callable[[ModelConfig], BaseModel]
    input_sides: Callable[[ModelConfig], InputSides]

    def __post_init__(self) -> None:
        if not (isinstance(self.cls, type) and issubclass(self.cls, BaseModel)):
            raise TypeError(f"{self.cls!r} is not a subclass of visionkit.models.base.BaseModel")
        if inspect.isabstract(self.cls) or getattr(self.cls, "task", None) not in TASK_NAMES:
            raise TypeError(
                f"{self.cls.__name__} must implement every BaseModel method and set task to one "
                f"of {', '.join(TASK_NAMES)}"
            )


def _input_size(cfg: ModelConfig) -> InputSides:
    return [("model.input_size", cfg.input_size, cfg.input_size)]


def _resized_sides(cfg: ModelConfig) -> InputSides:
    """A two-stage detector's input: stretched to ``input_size``, or shorter side ``min_size``
    (longer side at most ``max_size``, which then bounds both)."""
    if cfg.resize.mode == "fixed":
        return _input_size(cfg)
    r = cfg.resize
    return [
        (f"model.resize.{k}", v, [v])
        for k, v in (("min_size", r.min_size), ("max_size", r.max_size))
    ]


def _warp_size(cfg: ModelConfig) -> InputSides:
    return [("model.rcnn.warp_size", cfg.rcnn.warp_size, [cfg.rcnn.warp_size])]


MODELS: dict[str, ModelEntry] = {
    "yolo_v1": ModelEntry(YOLOv1, build_yolo_v1, _input_size),
    "faster_rcnn": ModelEntry(TwoStageDetector, build_faster_rcnn, _resized_sides),
    "mask_rcnn": ModelEntry(MaskRCNN, build_mask_rcnn, _resized_sides),
    "fast_rcnn": ModelEntry(TwoStageDetector, build_fast_rcnn, _resized_sides),
    "sppnet": ModelEntry(TwoStageDetector, build_sppnet, _resized_sides),
    "rcnn": ModelEntry(RCNN, build_rcnn, _warp_size),
    "fcn": ModelEntry(FCN, build_fcn, _input_size),
}

# What each model predicts: it picks the data the readers give (boxes or `sem_seg` label maps)
# and the evaluator (COCO box AP or segmentation IoU).
TASKS: dict[str, str] = {name: entry.cls.task for name, entry in MODELS.items()}


def model_task(name: str) -> str:
    """``"detection"`` or ``"sem_seg"``: what the model named ``name`` predicts (for code that
    has only a config; a built model says ``model.task``)."""
    return TASKS.get(name, "detection")


def build_model(cfg: ModelConfig) -> BaseModel:
    """Build the model named ``cfg.name`` (:class:`~visionkit.models.base.BaseModel`)."""
    if cfg.name not in MODELS:
        raise ConfigError(f"unknown model '{cfg.name}'; choose one of {', '.join(MODELS)}")
    model = MODELS[cfg.name].build(cfg)
    check_input_size(model, cfg)
    return model


def check_input_size(model: BaseModel, cfg: ModelConfig) -> None:
    """Refuse (ConfigError naming key, value and minimum) a configured input size below the
    smallest the built ``model`` runs on: one pixel at its deepest level used (the input
    divided by that level's stride), more where a layer needs a larger map
    (:func:`~visionkit.models.backbones.geometry.min_input_side`). A dense model's whole
    ``forward`` takes that input; the others' backbone does (what follows pools regions)."""
    sizes = [size for size in MODELS[cfg.name].input_sides(cfg) if size[2]]
    if not sizes:
        return  # each image at its own size, padded to a multiple of the deepest stride
    stride = max(model.backbone.out_strides.values())
    net = model if model.regions_per_image() is None else model.backbone
    least = min_input_side(net, stride, MAX_SIDE)
    for key, value, sides in sizes:
        if min(sides) < least:
            more = "" if least == stride else ", and its valid convolutions or pools need more"
            raise ConfigError(
                f"'{key}' must be at least {least} px for this {cfg.name} (its deepest level "
                f"used has stride {stride}{more}), got {value}"
            )
