"""Typed configs loaded from YAML, with one ``base:`` include and dotted overrides."""

from visionkit.config.loader import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_overrides,
    save_config,
)
from visionkit.config.schema import (
    AugmentConfig,
    BackboneConfig,
    Config,
    DataConfig,
    DatasetConfig,
    EvalConfig,
    ModelConfig,
    TrainConfig,
    YoloConfig,
)

__all__ = [
    "AugmentConfig",
    "BackboneConfig",
    "Config",
    "DataConfig",
    "DatasetConfig",
    "EvalConfig",
    "ModelConfig",
    "TrainConfig",
    "YoloConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "parse_overrides",
    "save_config",
]
