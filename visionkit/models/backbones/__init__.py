"""The backbone registry: a plain dict of factories, and ``build_backbone`` from a config."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from visionkit.config.schema import BackboneConfig
from visionkit.errors import CheckpointError, ConfigError
from visionkit.models.backbones import small_nets, torchvision_nets, xception
from visionkit.models.backbones.base import Backbone, freeze_batchnorms

# name -> (factory taking an optional torchvision state_dict, torchvision weights name or None)
BACKBONES: dict[str, tuple[Callable[..., Backbone], str | None]] = {
    "lenet": (small_nets.lenet, None),
    "alexnet": (torchvision_nets.alexnet, "AlexNet_Weights"),
    "vgg11": (partial(torchvision_nets.vgg, "vgg11"), "VGG11_Weights"),
    "vgg16": (partial(torchvision_nets.vgg, "vgg16"), "VGG16_Weights"),
    "googlenet": (torchvision_nets.googlenet, "GoogLeNet_Weights"),
    "resnet18": (partial(torchvision_nets.resnet, "resnet18"), "ResNet18_Weights"),
    "resnet34": (partial(torchvision_nets.resnet, "resnet34"), "ResNet34_Weights"),
    "resnet50": (partial(torchvision_nets.resnet, "resnet50"), "ResNet50_Weights"),
    "resnet101": (partial(torchvision_nets.resnet, "resnet101"), "ResNet101_Weights"),
    "densenet121": (torchvision_nets.densenet121, "DenseNet121_Weights"),
    "xception": (xception.xception, None),
    "yolo_darknet": (small_nets.yolo_darknet, None),
    "fast_yolo": (small_nets.fast_yolo, None),
}


def _read_weights(path: str) -> dict[str, Any]:
    if not Path(path).is_file():
        raise CheckpointError(f"backbone weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read backbone weights {path}: {type(e).__name__}") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state_dict")
    return state


def build_backbone(cfg: BackboneConfig) -> Backbone:
    """Build ``cfg.name``, load its weights, freeze its BatchNorms (``frozen_bn``), dilate it
    (``output_stride``), choose its returned levels, freeze its first stages.

    ``pretrained: true`` downloads torchvision's ImageNet weights (where torchvision has them);
    a path loads a torchvision-model state_dict or this backbone's own.
    """
    if cfg.name not in BACKBONES:
        raise ConfigError(f"unknown backbone '{cfg.name}'; choose one of {', '.join(BACKBONES)}")
    factory, weights_name = BACKBONES[cfg.name]
    tv_state, own_state = None, None
    if cfg.pretrained is True:
        if weights_name is None:
            raise ConfigError(
                f"torchvision has no ImageNet weights for '{cfg.name}'; set "
                "model.backbone.pretrained to a local weights file"
            )
        import torchvision

        tv_state = torchvision.models.get_weight(f"{weights_name}.DEFAULT").get_state_dict(
            progress=True
        )
    elif isinstance(cfg.pretrained, str) and cfg.pretrained:
        state = _read_weights(cfg.pretrained)
        if any(k.startswith("stages.") for k in state):
            own_state = state
        elif weights_name is None:
            raise CheckpointError(f"{cfg.pretrained} does not hold '{cfg.name}' backbone weights")
        else:
            tv_state = state
    backbone = factory(tv_state) if weights_name is not None else factory()
    if own_state is not None:
        try:
            backbone.load_state_dict(own_state)
        except RuntimeError:
            raise CheckpointError(
                f"{cfg.pretrained} does not match backbone '{cfg.name}'"
            ) from None
    if cfg.frozen_bn:
        freeze_batchnorms(backbone, cfg.frozen_bn_eps)
    if cfg.output_stride != 32:
        torchvision_nets.dilate_resnet(backbone, cfg.output_stride)
    backbone.set_out_features(cfg.out_features)
    if cfg.freeze_stages:
        backbone.freeze(cfg.freeze_stages)
    return backbone


__all__ = ["BACKBONES", "Backbone", "build_backbone"]
