"""The options of ``predict``, ``visionkit.load``, ``visionkit predict`` and ``visionkit eval``,
checked in one place: a score threshold is a finite number in [0, 1], a batch size a whole number
in ``1..MAX_BATCH`` (the config's own cap on batch sizes), a precision one of
:data:`PRECISIONS`."""

from __future__ import annotations

import math
import numbers
from typing import Any

from visionkit.config.schema import MAX_BATCH
from visionkit.errors import ConfigError

# inference precisions: auto (bf16 where the device computes it natively, else float32), float32,
# bf16 (bfloat16 autocast), fp16 (float16 autocast, CUDA only); visionkit/cli repeats them
PRECISIONS = ("auto", "float32", "bf16", "fp16")


def check_score_thresh(value: Any, name: str = "score_thresh") -> float:
    """``value`` as a float when it is a finite number in [0, 1] (every score is), else a
    ConfigError naming ``name`` (``--score-thresh``) and the value: NaN would drop every
    detection, a threshold above 1 too, one below 0 keep everything silently."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1] (scores lie there); got {value!r}")
    return float(value)


def check_batch_size(value: Any, name: str = "batch_size") -> int:
    """``value`` as an int when it is a whole number in ``1..MAX_BATCH``, else a ConfigError
    naming ``name`` (``--batch-size``) and the value."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or not 1 <= value <= MAX_BATCH:
        raise ConfigError(
            f"{name} must be at least 1 and at most {MAX_BATCH} (a whole number of images "
            f"per forward pass); got {value!r}"
        )
    return int(value)


def check_precision(value: Any, name: str = "precision") -> str:
    """``value`` when it is one of :data:`PRECISIONS`, else a ConfigError naming ``name``."""
    if not isinstance(value, str) or value not in PRECISIONS:
        raise ConfigError(f"{name} must be one of {', '.join(PRECISIONS)}; got {value!r}")
    return value
