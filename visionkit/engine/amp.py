"""Mixed precision of a training run (``train.amp``): the autocast dtype on its device."""

from __future__ import annotations

import torch

from visionkit.errors import ConfigError


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
