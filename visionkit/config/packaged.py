"""The configs shipped inside the package (``visionkit/configs/*.yaml``), found by name.

``find_config("yolo_v1_shapes")`` is the packaged file; a path to a YAML file (existing, or
with a directory part or a ``.yaml``/``.yml`` suffix) is taken as given, so a user's own config
always wins over a packaged name and a mistyped path is reported as a missing file.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from visionkit.errors import ConfigError, shown

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def packaged_configs() -> dict[str, Path]:
    """Name -> file of every packaged config, sorted by name."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}


def is_config_name(spec: str) -> bool:
    """Whether ``spec`` has the form of a packaged config's name (no folder, no suffix)."""
    return bool(spec) and "/" not in spec and "\\" not in spec and "." not in spec


def find_config(spec: str | Path) -> Path:
    """The config file ``spec`` names: an existing file or a path as given, else the packaged
    config of that name (``yolo_v1_shapes``). An unknown name is a one-line
    :class:`ConfigError` listing the closest packaged names."""
    path = Path(spec)
    text = str(spec)
    if not is_config_name(text):
        return path
    try:
        if path.is_file():
            return path
    except (OSError, ValueError):  # a name too long, a NUL byte: the reader says so
        return path
    packaged = packaged_configs()
    if text in packaged:
        return packaged[text]
    close = difflib.get_close_matches(text, list(packaged), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"config {shown(text)}: no such file and no packaged config of that name{hint} "
        "(`visionkit configs` lists them)"
    )
