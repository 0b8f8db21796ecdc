"""Config loading: base include, overrides, validation errors naming the key and the file."""

import subprocess
import sys
from pathlib import Path

import pytest

from visionkit.config import config_from_dict, config_to_dict, load_config, save_config
from visionkit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_base_include_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", "model:\n  num_classes: 5\ntrain:\n  epochs: 7\n  lr: 0.1\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\ntrain:\n  lr: 0.02\n")
    cfg = load_config(child, ["train.epochs=3", "data.train.splits=[2007/trainval,2012/trainval]"])
    assert cfg.model.num_classes == 5
    assert cfg.train.lr == 0.02 and cfg.train.epochs == 3
    assert cfg.data.train.splits == ["2007/trainval", "2012/trainval"]
    assert isinstance(load_config(child, ["train.lr=1"]).train.lr, float)


@pytest.mark.parametrize(
    ("text", "override", "message"),
    [
        ("train:\n  epochz: 3\n", [], "unknown key 'train.epochz' (did you mean 'train.epochs'?)"),
        ("model:\n  backbone:\n    nmae: vgg16\n", [], "unknown key 'model.backbone.nmae'"),
        ("train:\n  epochs: three\n", [], "'train.epochs' must be int, got 'three'"),
        ("train:\n  optimizer: adam\n", [], "'train.optimizer' must be one of sgd, adamw"),
        ("model: 3\n", [], "'model' must be a section"),
    ],
)
def test_errors_name_the_key_and_the_file(tmp_path, text, override, message):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_config(path, override)
    assert str(path) in str(e.value) and message in str(e.value)
    assert "\n" not in str(e.value)


def test_override_errors_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="command line: unknown key 'train.lrr'"):
        load_config(None, ["train.lrr=3"])
    with pytest.raises(ConfigError, match="must look like"):
        load_config(None, ["train.lr"])
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: c.yaml\n")
    with pytest.raises(ConfigError, match="one level only"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="base.yaml"):
        load_config(write(tmp_path / "x.yaml", "base: missing_base.yaml\n"))


def test_resolved_config_round_trip(tmp_path):
    cfg = load_config(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml", ["train.epochs=2"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "path", sorted((ROOT / "visionkit" / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_config_loads(path):
    load_config(path)


def test_tool_reports_config_typo_in_one_line(tmp_path):
    bad = write(
        tmp_path / "bad.yaml",
        "base: " + str(ROOT / "visionkit/configs/yolo_v1_shapes.yaml") + "\ntrain:\n  epochz: 1\n",
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools/train.py"),
            "--config",
            str(bad),
            "--output-dir",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'train.epochz'" in lines[0] and str(bad) in lines[0]
