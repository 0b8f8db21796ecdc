"""Mixed precision of a training run (``train.amp``): the autocast dtype on its device."""

from __future__ import annotations

import torch

from visionkit.checkpoints.device import native_bfloat16
from visionkit.errors import ConfigError


def mixed_precision(amp: str, device: torch.device) -> tuple[torch.dtype | None, str | None]:
    """``train.amp`` on ``device``: the autocast dtype (None: float32) and the line that says so
    (printed once when the run starts; None for ``none``).

    ``auto`` (the default) is ``bf16`` where the device computes bfloat16 natively (a GPU of
    compute capability 8.0 or newer, a CPU with AVX512-BF16 or AMX:
    :func:`~visionkit.checkpoints.device.native_bfloat16`), else float32, and its line says
    which and why. ``bf16`` autocasts to bfloat16 on CUDA and on CPU (float32's exponent range:
    no gradient scaling); ``fp16`` is CUDA only (its range needs the gradient scaler, and CPUs
    have no fast float16 arithmetic). The float32 islands stay float32 under any of them (RoI
    pooling, box decoding, the losses).

    Raises:
        ConfigError: ``fp16`` off CUDA.
    """
    if amp == "none":
        return None, None
    why = ""
    if amp == "auto":
        native, reason = native_bfloat16(device)
        if not native:
            return (
                None,
                f"mixed precision: off, float32 on {device.type} (train.amp=auto: {reason})",
            )
        why = f": {reason}"
    elif amp == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"train.amp=fp16 runs on CUDA only; the device is {device} (use train.amp=bf16)"
        )
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    scaler = " with a gradient scaler" if amp == "fp16" else ""
    return dtype, (
        f"mixed precision: {dtype} autocast on {device.type}{scaler} (train.amp={amp}{why})"
    )
