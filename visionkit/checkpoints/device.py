"""The device a model is loaded onto: chosen by name (``train.device``, ``--device``), the model
placed there (training, inference and the benchmarks alike), and whether it computes bfloat16
natively (what ``train.amp=auto`` and predict's ``precision="auto"`` decide on)."""

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


# CPU instruction sets with bfloat16 arithmetic, and torch.cpu's (private) probe of each
CPU_BF16_FEATURES = (
    ("AVX512-BF16", "_is_avx512_bf16_supported"),
    ("AMX", "_is_amx_tile_supported"),
)


def _cpu_feature(probe: str) -> bool:
    """``torch.cpu.<probe>()``; False on a torch without that probe."""
    fn = getattr(torch.cpu, probe, None)
    return bool(fn()) if callable(fn) else False


def native_bfloat16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` computes bfloat16 natively, and why (the end of a sentence:
    ``"the CPU has native bfloat16 (AVX512-BF16)"``). Where it does not, bfloat16 is emulated
    and slower than float32; ``train.amp=auto`` and ``precision="auto"`` then stay in float32.

    CUDA: ``torch.cuda.is_bf16_supported(including_emulation=False)`` on that GPU (compute
    capability 8.0 and newer; ROCm). CPU: AVX512-BF16 or AMX (``torch.cpu``'s detection; a torch
    without it means none). Any other device type: no.
    """
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.cuda.device(index):
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        if native:
            return True, f"cuda:{index} computes bfloat16 natively"
        return False, f"cuda:{index} has no native bfloat16 (compute capability below 8.0)"
    if device.type == "cpu":
        found = [name for name, probe in CPU_BF16_FEATURES if _cpu_feature(probe)]
        if found:
            return True, f"the CPU has native bfloat16 ({', '.join(found)})"
        return False, "this CPU has no native bfloat16"
    return False, f"no native bfloat16 known on {device.type}"
