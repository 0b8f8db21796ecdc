"""Which way a metric improves, from its name: the one rule every choice of a "best" value
follows (``train.best_metric``'s ``best.pth``, ``visionkit compare``'s best run).

Losses and errors (any name holding ``loss`` or ``error``), times and memory are best when
lowest; everything the evaluators give (AP, AR, IoU, accuracy, in percent) when highest. The
learning rate (``lr``) is a setting, not a measure: nothing is best by it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

from visionkit.errors import ConfigError

LOWER_SUBSTRINGS = ("loss", "error")  # train/loss, train/loss_cls, train/rpn_loss, val_error
# whole words of a name (split at "/", "_", "-", "." and spaces): speed/ms_per_image, ...
LOWER_WORDS = frozenset(
    {"err", "ms", "sec", "seconds", "time", "latency", "memory", "mem", "mse", "mae", "rmse", "nll"}
)
NOT_MEASURES = frozenset({"lr", "epoch", "iter"})


def metric_direction(metric: str) -> Literal["lower", "higher"]:
    """``"lower"`` when ``metric`` (a metrics.jsonl key such as ``train/loss`` or ``bbox/AP50``)
    is best when lowest, ``"higher"`` when best when highest.

    Raises:
        ConfigError: ``lr``, ``epoch`` or ``iter``: settings and counters, which no run is best by.
    """
    name = metric.rpartition("/")[2].lower()
    if name in NOT_MEASURES:
        raise ConfigError(
            f"{metric} is a setting or a counter, not a measure of quality: nothing is best by "
            "it (give a loss or an evaluation metric)"
        )
    words = set(re.split(r"[\s_\-./]+", name))
    lower = any(s in name for s in LOWER_SUBSTRINGS) or bool(words & LOWER_WORDS)
    return "lower" if lower else "higher"


def worst_value(metric: str) -> float:
    """The value every real one improves on: ``inf`` for a lower-is-better metric, else
    ``-inf``."""
    return math.inf if metric_direction(metric) == "lower" else -math.inf


def improves(metric: str, value: float, best: float) -> bool:
    """``value`` is strictly better than ``best`` for ``metric`` (NaN never is)."""
    if math.isnan(value):
        return False
    return value < best if metric_direction(metric) == "lower" else value > best


def best_index(metric: str, values: Sequence[float]) -> int:
    """The position of the best of ``values`` (finite numbers, at least one) for ``metric``: the
    first of equals, as the trainer keeps the first ``best.pth`` of equal scores."""
    pick = min if metric_direction(metric) == "lower" else max
    return pick(range(len(values)), key=values.__getitem__)
