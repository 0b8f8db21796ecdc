"""Models: backbones, heads and detectors, and the registry that builds them from configs."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from visionkit.config.schema import ModelConfig
from visionkit.errors import ConfigError
from visionkit.models.detectors.yolo_v1 import build_yolo_v1

MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "yolo_v1": build_yolo_v1,
}


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the model named ``cfg.name``; its ``loss``/``predict`` follow the toolkit contract."""
    if cfg.name not in MODELS:
        raise ConfigError(f"unknown model '{cfg.name}'; choose one of {', '.join(MODELS)}")
    return MODELS[cfg.name](cfg)
