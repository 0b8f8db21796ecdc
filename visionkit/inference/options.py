"""The numeric options of ``predict``, ``visionkit.load`` and ``visionkit predict``, checked in one
place: a score threshold is a finite number in [0, 1], a batch size a whole number in
``1..MAX_BATCH`` (the config's own cap on batch sizes)."""

from __future__ import annotations

import math
import numbers
from typing import Any

from visionkit.config.schema import MAX_BATCH
from visionkit.errors import ConfigError


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
