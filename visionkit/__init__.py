"""visionkit: object detection and semantic segmentation on shared CNN backbones.

``visionkit.load(path)`` gives a trained model to apply in Python (``predict``, ``evaluate``,
``export``; ``visionkit.inference.api``). It is imported on first use, so ``import visionkit``
stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Result", "VisionModel", "load"]

if TYPE_CHECKING:
    from visionkit.inference.api import VisionModel, load
    from visionkit.inference.results import Result

_LAZY = {
    "load": "visionkit.inference.api",
    "VisionModel": "visionkit.inference.api",
    "Result": "visionkit.inference.results",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'visionkit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
