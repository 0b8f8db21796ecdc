"""The unit of each metric, from its name: the one rule every printed table, one-line summary,
axis label and ``visionkit eval --out``'s ``"units"`` entry follows.

visionkit's evaluation numbers are percentages on COCO's 0-100 scale, as detectron2 prints them
(``AP50 81.51`` is 81.51 %, not 0.8151): every number of the ``bbox`` and ``segm`` (COCOeval),
``voc07`` / ``voc`` (Pascal VOC) and ``sem_seg`` (IoU, accuracy) sections, per-class ones
included. ``speed`` is in milliseconds per image. Training records (``train/<loss term>``,
``lr``) have no unit. Only the display carries the unit: the numbers themselves (metrics.jsonl,
the metrics dicts, ``train.best_metric``) stay plain floats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

Unit = Literal["percent", "ms"]
PERCENT_SECTIONS = frozenset({"bbox", "segm", "voc07", "voc", "sem_seg"})
SECTION_UNITS: dict[str, Unit] = {s: "percent" for s in PERCENT_SECTIONS} | {"speed": "ms"}
SYMBOLS: dict[str, str] = {"percent": "%", "ms": "ms"}


def section_unit(section: str) -> Unit | None:
    """The unit of every number of an evaluation section (``bbox``, ``voc07``, ``sem_seg``,
    ``speed``...); None for anything else (a loss, the learning rate)."""
    return SECTION_UNITS.get(section)


def metric_unit(key: str) -> Unit | None:
    """The unit of a flat ``"<section>/<metric>"`` key (``bbox/AP50``: ``"percent"``,
    ``speed/ms_per_image``: ``"ms"``, ``train/loss`` and ``lr``: None)."""
    section, slash, _ = key.partition("/")
    return section_unit(section) if slash else None


def unit_symbol(key: str) -> str:
    """``"%"``, ``"ms"`` or ``""`` for a flat metric key (:func:`metric_unit`)."""
    unit = metric_unit(key)
    return SYMBOLS[unit] if unit else ""


def _shown(value: float, symbol: str, digits: int) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}f} {symbol}" if symbol else f"{value:.{digits}f}"


def format_value(value: float, key: str, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals and the unit of ``key``: ``"81.51 %"``,
    ``"12.30 ms"``, ``"0.41"`` (no unit: a loss); NaN (an undefined AP) is ``"nan"``."""
    return _shown(value, unit_symbol(key), digits)


def percent(value: float, digits: int = 2) -> str:
    """A percentage on the 0-100 scale as printed: ``"81.51 %"`` (NaN: ``"nan"``)."""
    return _shown(value, SYMBOLS["percent"], digits)


def axis_label(key: str) -> str:
    """A chart's label of a flat key: ``"bbox/AP50 (%)"``, ``"speed/ms_per_image (ms)"``,
    ``"train/loss"``."""
    symbol = unit_symbol(key)
    return f"{key} ({symbol})" if symbol else key


def units_entry(metrics: Mapping[str, Any]) -> dict[str, str]:
    """``{section: unit}`` for each section of a metrics dict that has one (``{"bbox":
    "percent", "speed": "ms"}``): ``visionkit eval --out``'s ``"units"`` entry."""
    return {s: SECTION_UNITS[s] for s in metrics if s in SECTION_UNITS}
