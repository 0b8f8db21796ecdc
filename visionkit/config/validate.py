"""Ranges and shapes of a config's numbers, checked once when it is loaded.

The loader checks each value's type; this checks what a type cannot say, so that a bad value is
one line naming key, value, range and file before any work, not a traceback from deep in a model
or a loader:

- every number of the typed config lies in the range its field declares
  (:func:`visionkit.config.schema.num`; :func:`numeric_fields` walks them, and a numeric field
  declared without a range is refused when this module is imported);
- :data:`RULES`: what a range cannot say (a list's length, "0 or at least ...");
- the device (:func:`check_device`, also used by ``visionkit.checkpoints.device``).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable, Iterator
from typing import Any

from visionkit.config.schema import Config, Range
from visionkit.errors import ConfigError

NUMBER_TYPES = (int, float, list[int], list[float], list[list[float]])
# the shapes dataset draws objects of at least 6 px in clutter up to a fifth of the image side
SHAPES_MIN_SIZE = 35

# dotted key -> (test, what the value must be), beyond the declared ranges
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model.input_size": (lambda v: len(v) in (0, 2), "[] or [height, width]"),
    "model.pixel_std": (lambda v: len(v) == 3, "3 values"),
    "model.pixel_mean": (lambda v: len(v) == 3, "3 values"),
    "data.augment.scale_range": (
        lambda v: not v or (len(v) == 2 and v[0] <= v[1]),
        "[] or [lo, hi] with lo <= hi",
    ),
    "data.augment.crop_size": (lambda v: len(v) in (0, 2), "[] or [height, width]"),
    "model.backbone.output_stride": (lambda v: v in (8, 16, 32), "8, 16 or 32"),
    **{
        f"data.{split}.image_size": (
            lambda v: v == 0 or v >= SHAPES_MIN_SIZE,
            f"0 (the default) or at least {SHAPES_MIN_SIZE} px",
        )
        for split in ("train", "val")
    },
}
DEVICE = re.compile(r"auto|cpu|cuda(:\d{1,3})?")  # no GPU index beyond 999


def numeric_fields(cls: type = Config, prefix: str = "") -> Iterator[tuple[str, type, Any]]:
    """Every numeric field under the dataclass ``cls``: ``(dotted key, type, its Range or
    None)``, depth first in declaration order (a shared section, e.g. ``DatasetConfig``, once per
    place it appears: ``data.train.*`` and ``data.val.*``)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from numeric_fields(tp, f"{prefix}{f.name}.")
        elif tp in NUMBER_TYPES:
            yield f"{prefix}{f.name}", tp, f.metadata.get("range")


def check_declared_ranges(cls: type = Config) -> None:
    """Raise TypeError naming every numeric field under ``cls`` declared without a range."""
    missing = [key for key, _, rng in numeric_fields(cls) if rng is None]
    if missing:
        raise TypeError(
            f"config fields declared without a range (schema.num): {', '.join(missing)}"
        )


check_declared_ranges()  # a new numeric field cannot be added without its range


def _get(tree: Any, key: str) -> Any:
    for part in key.split("."):
        tree = getattr(tree, part, None)
        if tree is None:
            return None
    return tree


def _outside(value: Any, rng: Range, key: str) -> tuple[str, Any] | None:
    """The first number of ``value`` (a number or nested lists) outside ``rng``: its key
    (``key[i][j]`` inside lists) and value; None when all lie inside."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            bad = _outside(item, rng, f"{key}[{i}]")
            if bad is not None:
                return bad
        return None
    return None if value in rng else (key, value)


def check_device(name: str, what: str = "device") -> None:
    """Raise a ConfigError (one line naming ``what``) unless ``name`` is auto, cpu, cuda or
    cuda:N."""
    if not isinstance(name, str) or not DEVICE.fullmatch(name):
        raise ConfigError(f"{what} must be auto, cpu, cuda or cuda:N, got {name!r}")


def validate_config(cfg: Any, where: Callable[[str], str]) -> None:
    """Raise a ConfigError naming the key, the value, what it must be and ``where(key)`` (its
    file, or the command line) for the first value of ``cfg`` outside its declared range or
    :data:`RULES`, or an unknown device."""
    for key, _, rng in numeric_fields(type(cfg)):
        bad = _outside(_get(cfg, key), rng, key)
        if bad is not None:
            raise ConfigError(f"{where(key)}: '{bad[0]}' must be in {rng}, got {bad[1]!r}")
    for key, (ok, must) in RULES.items():
        value = _get(cfg, key)
        if value is not None and not ok(value):
            raise ConfigError(f"{where(key)}: '{key}' must be {must}, got {value!r}")
    try:
        check_device(cfg.train.device, "'train.device'")
    except ConfigError as e:
        raise ConfigError(f"{where('train.device')}: {e}") from None
