"""Choosing the device a run uses and placing a model on it."""

from __future__ import annotations

import torch
from torch import nn

from visionkit.errors import VisionkitError


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VisionkitError(
            f"device '{name}' requested but CUDA is not available; use --device cpu"
        )
    return torch.device(name)


def place_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """Move ``model`` to ``device``, in NHWC layout when ``channels_last`` (faster convolutions)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model
