"""Models: backbones, heads and detectors, and the registry that builds them from configs."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from visionkit.config.schema import MAX_SIDE, ModelConfig
from visionkit.errors import ConfigError
from visionkit.models.backbones.geometry import min_input_side
from visionkit.models.detectors.fast_rcnn import build_fast_rcnn
from visionkit.models.detectors.faster_rcnn import build_faster_rcnn
from visionkit.models.detectors.rcnn import build_rcnn
from visionkit.models.detectors.sppnet import build_sppnet
from visionkit.models.detectors.yolo_v1 import build_yolo_v1
from visionkit.models.segmentors.fcn import build_fcn

MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "yolo_v1": build_yolo_v1,
    "faster_rcnn": build_faster_rcnn,
    "fast_rcnn": build_fast_rcnn,
    "sppnet": build_sppnet,
    "rcnn": build_rcnn,
    "fcn": build_fcn,
}

# The task of each model that does not detect boxes: it picks the data the readers give (boxes
# or `sem_seg` label maps) and the evaluator (COCO box AP or segmentation IoU).
TASKS: dict[str, str] = {
    "fcn": "sem_seg",
}


def _resized_sides(cfg: ModelConfig) -> list[tuple[str, object, list[int]]]:
    """A two-stage detector's input: stretched to ``input_size``, or shorter side ``min_size``
    (longer side at most ``max_size``, which then bounds both)."""
    if cfg.resize.mode == "fixed":
        return [("model.input_size", cfg.input_size, cfg.input_size)]
    r = cfg.resize
    return [
        (f"model.resize.{k}", v, [v])
        for k, v in (("min_size", r.min_size), ("max_size", r.max_size))
    ]


# Per model, the configured sizes its whole-image network sees: (key, value, sides); and the
# models whose own forward takes that network's input (the others: their backbone; what comes
# after it pools regions to fixed sizes).
INPUT_SIDES: dict[str, Callable[[ModelConfig], list[tuple[str, object, list[int]]]]] = {
    "yolo_v1": lambda cfg: [("model.input_size", cfg.input_size, cfg.input_size)],
    "faster_rcnn": _resized_sides,
    "fast_rcnn": _resized_sides,
    "sppnet": _resized_sides,
    "rcnn": lambda cfg: [("model.rcnn.warp_size", cfg.rcnn.warp_size, [cfg.rcnn.warp_size])],
    "fcn": lambda cfg: [("model.input_size", cfg.input_size, cfg.input_size)],
}
WHOLE_IMAGE_FORWARD = ("yolo_v1", "fcn")


def model_task(name: str) -> str:
    """``"detection"`` or ``"sem_seg"``: what the model named ``name`` predicts."""
    return TASKS.get(name, "detection")


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the model named ``cfg.name``; its ``loss``/``predict`` follow the toolkit contract."""
    if cfg.name not in MODELS:
        raise ConfigError(f"unknown model '{cfg.name}'; choose one of {', '.join(MODELS)}")
    model = MODELS[cfg.name](cfg)
    check_input_size(model, cfg)
    return model


def check_input_size(model: nn.Module, cfg: ModelConfig) -> None:
    """Refuse (ConfigError naming key, value and minimum) a configured input size below the
    smallest the built ``model`` runs on: one pixel at its deepest level used (the input
    divided by that level's stride), more where a layer needs a larger map
    (:func:`~visionkit.models.backbones.geometry.min_input_side`)."""
    sizes = [(key, value, sides) for key, value, sides in INPUT_SIDES[cfg.name](cfg) if sides]
    if not sizes:
        return  # each image at its own size, padded to a multiple of the deepest stride
    stride = max(model.backbone.out_strides.values())
    net = model if cfg.name in WHOLE_IMAGE_FORWARD else model.backbone
    least = min_input_side(net, stride, MAX_SIDE)
    for key, value, sides in sizes:
        if min(sides) < least:
            more = "" if least == stride else ", and its valid convolutions or pools need more"
            raise ConfigError(
                f"'{key}' must be at least {least} px for this {cfg.name} (its deepest level "
                f"used has stride {stride}{more}), got {value}"
            )
