"""Models: backbones, heads and detectors, and the registry that builds them from configs."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from visionkit.config.schema import ModelConfig
from visionkit.errors import ConfigError
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


def model_task(name: str) -> str:
    """``"detection"`` or ``"sem_seg"``: what the model named ``name`` predicts."""
    return TASKS.get(name, "detection")


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the model named ``cfg.name``; its ``loss``/``predict`` follow the toolkit contract."""
    if cfg.name not in MODELS:
        raise ConfigError(f"unknown model '{cfg.name}'; choose one of {', '.join(MODELS)}")
    return MODELS[cfg.name](cfg)
