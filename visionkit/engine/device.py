"""Choosing the device a run uses and placing a model on it."""

from __future__ import annotations

import torch
from torch import nn

from visionkit.config.validate import check_device
from visionkit.errors import ConfigError, VisionkitError


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


def mixed_precision(amp: str, device: torch.device) -> tuple[torch.dtype | None, str | None]:
    """``train.amp`` on ``device``: the autocast dtype (None: float32) and the line that says so.

    ``bf16`` autocasts to bfloat16 on CUDA and on CPU (float32's exponent range: no gradient
    scaling); ``fp16`` is CUDA only (its range needs the gradient scaler, and CPUs have no fast
    float16 arithmetic).

    Raises:
        ConfigError: ``fp16`` off CUDA.
    """
    if amp == "none":
        return None, None
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"train.amp=fp16 runs on CUDA only; the device is {device} (use train.amp=bf16)"
        )
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    scaler = " with a gradient scaler" if amp == "fp16" else ""
    return dtype, f"mixed precision: {dtype} autocast on {device.type}{scaler} (train.amp={amp})"
