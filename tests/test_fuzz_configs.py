"""Fuzz: hostile config files (edits around the schema, YAML attacks) and dotted overrides
given to every tool that reads a config. Each example: exit 0/1/2/3, no traceback, no input
changed, nothing half-written, within the bound. Training is stopped right after the
Trainer is built, so only the border (config, data, model construction) runs."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
import yaml
from fuzz_assets import session_assets
from fuzz_strategies import config_edits, fractions, overrides, render_config, text_attacks
from fuzz_support import Case, case, check, fuzz_settings, refused, run_tool, valid_predictions
from hypothesis import example, given

from visionkit.config.diff import TEST_TIME_MODEL_KEYS
from visionkit.engine.trainer import Trainer

TOOLS = ["train", "eval", "eval_predictions", "export", "summary", "browse_dataset", "visualize"]


@pytest.fixture(scope="module")
def assets():
    return session_assets()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_configs")


def tool_argv(tool: str, config: Path, c: Case, assets) -> tuple[str, list]:
    """The script and its arguments for a tool reading ``config``, every output under out/."""
    out = c.out
    args = {
        "train": ["--output-dir", out / "run", "--no-progress"],
        "eval": ["--weights", assets.checkpoint, "--out", out / "m.json", "--no-progress"],
        "eval_predictions": ["--predictions", valid_predictions(c, assets.coco) if tool ==
                             "eval_predictions" else "", "--out", out / "m.json"],
        "export": ["--weights", assets.checkpoint, "--output", out / "m.onnx"],
        "summary": ["--json", out / "summary.json"],
        "browse_dataset": ["--output", out / "browse", "--num", "2"],
        "visualize": ["--output", out / "vis"],
    }[tool]  # fmt: skip
    return tool.removesuffix("_predictions"), ["--config", config, *args]


def run_config(base, assets, tool, config_bytes, extra, detail, expect=None):
    with case(base, assets) as c:
        config = c.inp / "config.yaml"
        config.write_bytes(config_bytes)
        script, argv = tool_argv(tool, config, c, assets)
        with mock.patch.object(Trainer, "train", lambda self: {}):  # stop before any epoch
            check(c, lambda: run_tool(script, [*argv, *extra], c.root), expect, detail)


@pytest.mark.parametrize("tool", TOOLS)
@fuzz_settings()
@given(edits=config_edits, attack=text_attacks, where=fractions, extra=overrides)
@example(edits=[], attack="alias_bomb_unknown", where=0.5, extra=[])
@example(edits=[], attack="alias_bomb_known", where=0.5, extra=[])
@example(edits=[], attack="recursive_alias", where=0.5, extra=[])
@example(edits=[], attack="invalid_utf8", where=0.3, extra=[])
@example(edits=[], attack="utf16", where=0.5, extra=[])
@example(edits=[], attack="long_number", where=0.5, extra=[])
@example(edits=[], attack="deep", where=0.5, extra=[])
@example(edits=[("data.augment.hflip", 1.5)], attack="none", where=0.5, extra=[])
@example(edits=[("data.augment.exposure", 0)], attack="none", where=0.5, extra=[])
@example(edits=[("model.input_size", [7, 7])], attack="none", where=0.5, extra=[])
@example(edits=[("model.input_size", [-64, 64])], attack="none", where=0.5, extra=[])
@example(edits=[], attack="none", where=0.5, extra=["eval.batch_size=1e20"])
@example(edits=[], attack="none", where=0.5, extra=["train.device=tpu"])
@example(edits=[("model.yolo.head_channels", 10**9)], attack="none", where=0.5, extra=[])
def test_hostile_config(base, assets, tool, edits, attack, where, extra):
    data = render_config(assets.config_dict, edits, attack, where)
    detail = f"config edits {edits!r}, attack {attack} at {where:.2f}, overrides {extra!r}"
    run_config(base, assets, tool, data, extra, detail)


@pytest.mark.parametrize("tool", TOOLS)
@fuzz_settings()
@given(extra=overrides)
@example(extra=["model.input_size=[7,7]"])
@example(extra=["data.augment.hflip=1.5"])
@example(extra=["data.augment.exposure=0"])
@example(extra=["model.input_size=[-64,64]"])
@example(extra=["eval.batch_size=1e20"])
@example(extra=["train.device=tpu"])
@example(extra=["model.num_classes=-3"])
@example(extra=["data.batch_size=0"])
@example(extra=["model.yolo.grid_size=0"])
@example(extra=["train.lr=nan"])
@example(extra=["model.yolo.grid_size=3"])
def test_hostile_overrides(base, assets, tool, extra):
    data = assets.config.read_bytes()
    # the checkpoint is the truth: a model.* value unlike the stored one is refused
    expect = refused if tool in ("eval", "export") and changes_model(extra, assets) else None
    detail = f"overrides {extra!r} on the tiny valid config"
    run_config(base, assets, tool, data, extra, detail, expect)


def changes_model(extra: list[str], assets) -> bool:
    """An override sets a model.* key (not an inference setting) to a value unlike the
    checkpoint's config (which is the tiny config itself)."""
    for item in extra:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key.startswith("model.") or key in TEST_TIME_MODEL_KEYS:
            continue
        try:
            value = yaml.safe_load(raw) if raw else ""
        except (yaml.YAMLError, ValueError):  # the loader takes what YAML refuses as text
            value = raw
        node = assets.config_dict
        for part in key.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is KeyError or value != node:
            return True
    return False
