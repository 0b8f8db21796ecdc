"""Load YAML configs into :class:`~visionkit.config.schema.Config`, with validation.

A config file may name one ``base:`` file (relative to itself) whose values it overrides.
Command-line overrides are dotted ``key=value`` strings parsed as YAML scalars
(``train.epochs=3``, ``data.train.splits=[2007/trainval]``). Every mistake raises
:class:`~visionkit.errors.ConfigError` with a one-line message naming the key and the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from visionkit.config.packaged import find_config, is_config_name, packaged_configs
from visionkit.config.schema import Config
from visionkit.config.validate import validate_config
from visionkit.errors import ConfigError, shown
from visionkit.io.atomic import write_text
from visionkit.io.structured import loads_yaml, read_yaml


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        found = path.is_file()
    except (OSError, ValueError) as e:  # a name too long, a NUL byte
        raise ConfigError(f"config file {shown(str(path))}: not a usable path ({e})") from None
    if not found:
        raise ConfigError(f"config file not found: {shown(str(path))}")
    data = read_yaml(path, error=ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _base_path(path: Path, base_name: Any) -> Path | None:
    """The file that ``path``'s ``base:`` value names (relative to ``path``; else a packaged
    config of that name, ``yolo_v1_shapes.yaml``), or None."""
    if base_name is None:
        return None
    if not isinstance(base_name, str) or not base_name or "\0" in base_name:
        raise ConfigError(
            f"{path}: 'base' must name a config file (a path relative to it), got "
            f"{shown(repr(base_name), 80)}"
        )
    beside = path.parent / base_name
    name = base_name.removesuffix(".yaml")
    with contextlib.suppress(OSError, ValueError):  # a name too long: _read_yaml says so
        if not beside.is_file() and is_config_name(name) and name in packaged_configs():
            return packaged_configs()[name]  # a user's config on a packaged base, by name
        return beside.resolve()
    return beside


def _load_tree(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Read ``path`` and its base; return the merged tree and, per dotted key, its source file."""
    data = _read_yaml(path)
    base_name = data.pop("base", None)
    sources = {k: str(path) for k in _dotted_keys(data)}
    if base_name is None:
        return data, sources
    base_path = _base_path(path, base_name)
    base_data = _read_yaml(base_path)
    if "base" in base_data:
        raise ConfigError(
            f"{base_path}: a base config cannot have its own 'base:' (one level only)"
        )
    base_sources = {k: str(base_path) for k in _dotted_keys(base_data)}
    return _merge(base_data, data), {**base_sources, **sources}


def _dotted_keys(d: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        keys.append(key)
        if isinstance(v, dict):
            keys += _dotted_keys(v, key + ".")
    return keys


def _check_type(value: Any, tp: Any, key: str, where: str) -> Any:
    """Return ``value`` coerced to ``tp`` (int -> float only), or raise ConfigError."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return _check_type(value, arg, key, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: '{key}' must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(map(str, get_args(tp)))
            raise ConfigError(f"{where}: '{key}' must be one of {choices}; got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: '{key}' must be a list, got {value!r}")
        (item_tp,) = get_args(tp)
        return [_check_type(v, item_tp, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if tp is float and isinstance(value, str):
        with contextlib.suppress(ValueError):  # YAML 1.1 reads 1e-3 (no dot) as a string
            value = float(value)
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }[tp](value)
    if not ok:
        raise ConfigError(f"{where}: '{key}' must be {_type_name(tp)}, got {value!r}")
    if tp is float and not math.isfinite(value):
        raise ConfigError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value) if tp is float else value


def _type_name(tp: Any) -> str:
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _build(cls: type, data: dict[str, Any], prefix: str, sources: dict[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        where = sources.get(key, "command line")
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            if not isinstance(v, dict):
                raise ConfigError(f"{where}: '{key}' must be a section (a mapping), got {v!r}")
            kwargs[k] = _build(tp, v, key + ".", sources)
        else:
            kwargs[k] = _check_type(v, tp, key, where)
    return cls(**kwargs)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["train.epochs=3", ...]`` into a nested dict; values are parsed as YAML (through
    :func:`~visionkit.io.structured.loads_yaml`: no alias expands); a value that is not YAML
    is taken as its text."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"command line: override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = loads_yaml(raw, "command line") if raw != "" else ""
        except ConfigError:
            value = raw
        node = tree
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"command line: override {item!r} conflicts with another")
        node[parts[-1]] = value
    return tree


def _finish(
    tree: dict[str, Any], sources: dict[str, str], overrides: list[str] | None, where: str
) -> Config:
    """``tree`` with the overrides applied, type-checked and validated; errors name the file of
    each key (``sources``), ``command line`` for overrides, ``where`` for defaults."""
    over = parse_overrides(overrides or [])
    tree = _merge(tree, over)
    sources = {**sources, **{k: "command line" for k in _dotted_keys(over)}}
    cfg = _build(Config, tree, "", sources)
    validate_config(cfg, lambda key: sources.get(key, where))
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a config file (or the defaults when ``path`` is None) and apply dotted overrides.
    ``path`` may also name a packaged config (``"yolo_v1_shapes"``: :func:`find_config`)."""
    path = find_config(path) if path is not None else None
    tree, sources = _load_tree(path) if path is not None else ({}, {})
    return _finish(tree, sources, overrides, str(path) if path else "defaults")


def apply_overrides(
    cfg: Config | dict[str, Any], overrides: list[str] | None, where: str = "checkpoint"
) -> Config:
    """A config (a :class:`Config`, or :func:`config_to_dict`'s dict, e.g. a checkpoint's) with
    dotted overrides applied, checked and validated as :func:`load_config` does; errors about
    its own keys name ``where``."""
    tree = config_to_dict(cfg) if isinstance(cfg, Config) else cfg
    return _finish(tree, {k: where for k in _dotted_keys(tree)}, overrides, where)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain dicts/lists, ready for YAML or a checkpoint."""
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict[str, Any], where: str = "checkpoint") -> Config:
    """Rebuild a :class:`Config` from :func:`config_to_dict` output (e.g. stored in a checkpoint)."""
    return _build(Config, data, "", {k: where for k in _dotted_keys(data)})


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the fully resolved config as YAML, atomically (folders created)."""
    write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def config_files(path: str | Path) -> list[Path]:
    """The files a config is read from: ``path`` (or the packaged config it names), then its
    ``base:`` file if it names one."""
    path = find_config(path)
    base = _base_path(path, _read_yaml(path).get("base"))
    return [path] + ([base] if base is not None else [])
