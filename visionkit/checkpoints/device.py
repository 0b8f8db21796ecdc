"""The device a model is loaded onto: chosen by name (``train.device``, ``--device``), and the
model placed there (training, inference and the benchmarks alike)."""

from __future__ import annotations

import torch
from torch import nn

from visionkit.config.validate import check_device
from visionkit.errors import VisionkitError


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cpu``, ``cuda``, ``cuda:N`` as named.

    Raises:
        ConfigError: any other name (``tpu``, ``cuda:x``, ``""``).
        VisionkitError: CUDA named but not available, or ``cuda:N`` beyond its devices.
    """
    check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise VisionkitError(
            f"device '{name}' requested but CUDA is not available; use --device cpu"
        )
    # checked on the name: torch.device wraps an index beyond int8 (cuda:999 is cuda:-25)
    count = torch.cuda.device_count()
    if int(name.partition(":")[2] or 0) >= count:
        raise VisionkitError(
            f"device '{name}' requested but there are {count} CUDA devices (cuda:0 to "
            f"cuda:{count - 1})"
        )
    return torch.device(name)


def place_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """Move ``model`` to ``device``, in NHWC layout when ``channels_last`` (faster convolutions)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model
