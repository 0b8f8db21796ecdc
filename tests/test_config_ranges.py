"""Config values outside their range are one line naming key, value, range and file, before any
work. The range tests are generated from the schema: every numeric field, at and beyond each
bound."""

import dataclasses
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_model_contract import TINY
from test_tools_e2e import run_tool

import visionkit
from visionkit.checkpoints import select_device
from visionkit.config import config_to_dict, load_config
from visionkit.config.schema import Config, num
from visionkit.config.validate import RULES, check_declared_ranges, numeric_fields
from visionkit.errors import ConfigError, VisionkitError
from visionkit.models import MODELS, build_model
from visionkit.models.backbones.geometry import min_input_side, runs_at

ROOT = Path(__file__).resolve().parents[1]
YOLO = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")
FIELDS = list(numeric_fields())
DEFAULTS = Config()

CASES = [
    ("train.lr=-1", "'train.lr' must be in (0, 10], got -1.0"),
    ("train.lr=.nan", "'train.lr' must be a finite number"),
    ("train.epochs=0", "'train.epochs' must be in [1, 1000000], got 0"),
    ("data.batch_size=0", "'data.batch_size' must be in [1, 4096], got 0"),
    ("data.num_workers=-1", "'data.num_workers' must be in [0, 256], got -1"),
    ("model.input_size=[0,0]", "'model.input_size[0]' must be in [1, 16384], got 0"),
    ("model.input_size=[192]", "'model.input_size' must be [] or [height, width]"),
    ("model.yolo.grid_size=0", "'model.yolo.grid_size' must be in [1, 128], got 0"),
    ("model.yolo.boxes_per_cell=0", "'model.yolo.boxes_per_cell' must be in [1, 32]"),
    ("train.device=tpu", "'train.device' must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("train.device=cuda:x", "'train.device' must be auto, cpu, cuda or cuda:N, got 'cuda:x'"),
    ("train.device=", "'train.device' must be auto, cpu, cuda or cuda:N, got ''"),
    ("eval.batch_size=0", "'eval.batch_size' must be in [1, 4096]"),
    # the cases
    ("eval.batch_size=100000000000000000000", "'eval.batch_size' must be in [1, 4096], got 10"),
    ("eval.batch_size=1e20", "'eval.batch_size' must be int, got '1e20'"),
    ("data.augment.hflip=1.5", "'data.augment.hflip' must be in [0, 1], got 1.5"),
    ("data.augment.exposure=0", "'data.augment.exposure' must be in [1, 10], got 0.0"),
    ("data.augment.hue=0.6", "'data.augment.hue' must be in [0, 0.5], got 0.6"),
    ("model.input_size=[-5,64]", "'model.input_size[0]' must be in [1, 16384], got -5"),
    ("model.anchors.sizes=[[32.0,-1.0]]", "'model.anchors.sizes[0][1]' must be in (0, 16384]"),
    ("model.rpn.pos_iou_thresh=1.5", "'model.rpn.pos_iou_thresh' must be in [0, 1], got 1.5"),
    ("data.augment.scale_range=[2.0,0.5]", "'data.augment.scale_range' must be [] or [lo, hi]"),
    ("data.val.image_size=20", "'data.val.image_size' must be 0 (the default) or at least 35"),
    ("model.backbone.output_stride=12", "'model.backbone.output_stride' must be 8, 16 or 32"),
]


@pytest.mark.parametrize(("override", "message"), CASES)
def test_out_of_range_values_name_key_and_source(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(YOLO, [override])
    assert str(e.value).startswith(f"command line: {message}")
    assert "\n" not in str(e.value)


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"base: {YOLO}\ntrain:\n  lr: 0\n")
    with pytest.raises(ConfigError, match=rf"^{path}: 'train.lr' must be in \(0, 10\], got 0.0$"):
        load_config(path)


@pytest.mark.parametrize(
    "path", sorted((ROOT / "visionkit" / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_config_loads(path):
    load_config(path)


def test_every_numeric_field_declares_its_range():
    assert FIELDS and all(rng is not None for _, _, rng in FIELDS)
    assert {"eval.batch_size", "data.augment.hflip", "model.anchors.sizes"} <= {
        key for key, _, _ in FIELDS
    }
    check_declared_ranges()


def test_a_numeric_field_without_a_range_is_refused():
    @dataclasses.dataclass
    class Inner:
        ok: int = num(1, 0, 2)
        size: float = 1.0

    @dataclasses.dataclass
    class Outer:
        inner: Inner = dataclasses.field(default_factory=Inner)
        sides: list[int] = dataclasses.field(default_factory=list)
        name: str = ""
        flag: bool = False

    with pytest.raises(TypeError, match=r"without a range \(schema.num\): inner.size, sides$"):
        check_declared_ranges(Outer)


def _get(key: str) -> object:
    value = DEFAULTS
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _filled(default: object, v: float) -> object:
    """The field's default with every number replaced by ``v`` (an empty list: two of them)."""
    if isinstance(default, list):
        return [_filled(d, v) for d in default] if default else [v, v]
    return v


def _override(key: str, tp: type, v: float) -> str:
    return f"{key}={json.dumps(_filled(_get(key), v))}"


def _is_int(tp: type) -> bool:
    return tp is int or tp == list[int]


def _inside(key, tp, rng):
    """Values at each closed bound, and just inside each open one."""
    for bound, side, toward in ((rng.lo, "lo", math.inf), (rng.hi, "hi", -math.inf)):
        if rng.open != side:
            yield key, tp, bound
        elif not _is_int(tp):
            yield key, tp, math.nextafter(bound, toward)


def _beyond(key, tp, rng):
    """Values just beyond each bound: the open bound itself, the next int or float outward."""
    for bound, side, away in ((rng.lo, "lo", -math.inf), (rng.hi, "hi", math.inf)):
        if rng.open == side:
            yield key, tp, bound
        elif _is_int(tp):
            yield key, tp, int(bound) + (1 if away > 0 else -1)
        else:
            yield key, tp, math.nextafter(bound, away)


INSIDE = [case for f in FIELDS for case in _inside(*f)]
BEYOND = [case for f in FIELDS for case in _beyond(*f)]


@pytest.mark.parametrize(("key", "tp", "value"), INSIDE, ids=[f"{k}={v!r}" for k, _, v in INSIDE])
def test_each_bound_loads(key, tp, value):
    cfg = load_config(None, [_override(key, tp, value)])
    assert _get_from(cfg, key) == _filled(_get(key), value)


@pytest.mark.parametrize(("key", "tp", "value"), BEYOND, ids=[f"{k}={v!r}" for k, _, v in BEYOND])
def test_just_beyond_each_bound_is_refused_naming_key_value_and_range(key, tp, value):
    rng = dict((k, r) for k, _, r in FIELDS)[key]
    with pytest.raises(ConfigError) as e:
        load_config(None, [_override(key, tp, value)])
    depth = str(tp).count("list[")  # the first number of a list is named: key[0], key[0][0]
    shown = value if _is_int(tp) else float(value)
    assert str(e.value) == f"command line: '{key}{'[0]' * depth}' must be in {rng}, got {shown!r}"


def _get_from(cfg: Config, key: str) -> object:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


@settings(max_examples=int(os.environ.get("VISIONKIT_FUZZ_EXAMPLES", 200)), deadline=None)
@given(field=st.sampled_from(FIELDS), data=st.data())
def test_any_value_loads_exactly_when_inside_its_range(field, data):
    key, tp, rng = field
    span = max(abs(rng.lo), abs(rng.hi)) * 4 + 2
    value = (
        data.draw(st.integers(int(-span), int(span)))
        if _is_int(tp)
        else data.draw(st.floats(-span, span, allow_nan=False))
    )
    rule = RULES.get(key, (lambda v: True, ""))[0]  # what a range cannot say (output_stride 8)
    inside = value in rng and rule(_filled(_get(key), value))
    try:
        load_config(None, [_override(key, tp, value)])
    except ConfigError as e:
        assert not inside and f"'{key}" in str(e)
    else:
        assert inside


def test_yaml_exponent_without_a_dot_is_a_float():
    assert load_config(YOLO, ["train.lr=1e-3"]).train.lr == 0.001


@pytest.mark.slow
def test_train_refuses_a_bad_value_in_one_line(tmp_path):
    proc = run_tool("train.py", "--config", YOLO, "--output-dir", str(tmp_path / "r"),
                    "data.batch_size=0", check=False)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "error: command line: 'data.batch_size' must be in [1, 4096], got 0"
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("metric", "task", "ok"),
    [("bbox/AP50", "detection", True), ("bbox/AP-circle", "detection", True),
     ("sem_seg/mIoU", "sem_seg", True), ("sem_seg/bIoU@3", "sem_seg", True),
     ("bbox/AP5O", "detection", False), ("sem_seg/mIoU", "detection", False),
     ("bbox/AP50", "sem_seg", False), ("mIoU", "sem_seg", False)],
)  # fmt: skip
def test_best_metric_must_be_one_the_evaluation_gives(metric, task, ok):
    from visionkit.evaluation.build import check_best_metric

    if ok:
        check_best_metric(metric, task)
    else:
        with pytest.raises(ConfigError, match="is not a number the"):
            check_best_metric(metric, task)


# ---- the model's minimum input size, derived from its strides ----
def _tiny(name: str, side: int) -> list[str]:
    """test_model_contract's tiny config of ``name`` with every size its network sees at
    ``side`` px."""
    sizes = {
        "yolo_v1": [f"model.input_size=[{side},{side}]"],
        "fcn": [f"model.input_size=[{side},{side}]"],
        "rcnn": [f"model.rcnn.warp_size={side}", "model.rcnn.context_pad=0"],
    }.get(name, [f"model.resize.min_size={side}", f"model.resize.max_size={side}"])
    return [f"model.name={name}", *TINY[name], *sizes]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_model_runs_at_its_minimum_input_size_and_refuses_below(name):
    # every tiny model is on LeNet, whose deepest level is at stride 8 behind 2x2 max-pools
    model = build_model(load_config(None, _tiny(name, 8)).model).eval()
    assert max(model.backbone.out_strides.values()) == 8
    with torch.no_grad():
        model.predict([torch.rand(3, 8, 8)])
        model.backbone(torch.rand(1, 3, 8, 8))  # the network itself, at the minimum
    key = {"yolo_v1": "model.input_size", "fcn": "model.input_size"}.get(
        name, "model.rcnn.warp_size" if name == "rcnn" else "model.resize.min_size"
    )
    value = "[7, 7]" if key == "model.input_size" else "7"
    with pytest.raises(ConfigError) as e:
        build_model(load_config(None, _tiny(name, 7)).model)
    assert str(e.value) == (
        f"'{key}' must be at least 8 px for this {name} (its deepest level used has stride 8), "
        f"got {value}"
    )


def test_a_fixed_two_stage_size_is_checked_too():
    overrides = [*_tiny("faster_rcnn", 64), "model.resize.mode=fixed", "model.input_size=[64,4]"]
    with pytest.raises(
        ConfigError, match=r"^'model.input_size' must be at least 8 px .* \[64, 4\]"
    ):
        build_model(load_config(None, overrides).model)


def test_valid_convolutions_raise_the_minimum_above_the_stride():
    # AlexNet: a valid 11x11/4 conv and three valid 3x3/2 pools: 63 px for one pixel at pool5
    overrides = ["model.name=rcnn", "model.input_size=[]", "model.backbone.name=alexnet",
                 "model.rcnn.context_pad=0", "model.rcnn.fc_dim=8"]  # fmt: skip
    with pytest.raises(ConfigError) as e:
        build_model(load_config(None, [*overrides, "model.rcnn.warp_size=62"]).model)
    assert str(e.value) == (
        "'model.rcnn.warp_size' must be at least 63 px for this rcnn (its deepest level used has "
        "stride 32, and its valid convolutions or pools need more), got 62"
    )
    model = build_model(load_config(None, [*overrides, "model.rcnn.warp_size=63"]).model)
    with torch.no_grad():
        out = model.backbone(torch.rand(1, 3, 63, 63))
    assert out["pool5"].shape[-2:] == (1, 1)
    with pytest.raises(RuntimeError):  # what the check prevents
        model.backbone(torch.rand(1, 3, 62, 62))


def test_minimum_side_search_does_not_touch_the_model():
    model = build_model(load_config(None, _tiny("yolo_v1", 64)).model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert min_input_side(model, 8, 16384) == 8 and not runs_at(model, 7)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ---- devices ----
@pytest.mark.parametrize("name", ["tpu", "cuda:x", "", "cpu:0", "cuda:1000", "CPU"])
def test_an_unknown_device_is_one_line(name):
    with pytest.raises(ConfigError) as e:
        select_device(name)
    assert str(e.value) == f"device must be auto, cpu, cuda or cuda:N, got {name!r}"
    with pytest.raises(ConfigError, match=r"^command line: 'train.device' must be auto, cpu"):
        load_config(YOLO, [f"train.device={name}"])


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1", "cuda:999"])
def test_a_cuda_device_that_is_not_there_is_one_line(monkeypatch, name):
    with monkeypatch.context() as m:
        m.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(VisionkitError, match=f"^device '{name}' requested but CUDA is not "):
            select_device(name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    if name in ("cuda", "cuda:0"):
        assert select_device(name) == torch.device(name)
    else:  # torch.device("cuda:999") would be cuda:-25
        with pytest.raises(VisionkitError, match=r"there are 1 CUDA devices \(cuda:0 to cuda:0\)$"):
            select_device(name)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    cfg = load_config(None, _tiny("yolo_v1", 64))
    path = tmp_path_factory.mktemp("device") / "m.pth"
    torch.save({"model": build_model(cfg.model).state_dict(), "config": config_to_dict(cfg),
                "class_names": ["a", "b", "c"], "cat_ids": [1, 2, 3]}, path)  # fmt: skip
    return path


@pytest.mark.parametrize("name", ["tpu", "cuda:x", ""])
def test_the_api_refuses_an_unknown_device_in_one_line(checkpoint, name):
    with pytest.raises(ConfigError, match="'train.device' must be auto, cpu, cuda or cuda:N"):
        visionkit.load(checkpoint, device=name)
    model = visionkit.load(checkpoint, device="cpu")
    message = f"^device must be auto, cpu, cuda or cuda:N, got {re.escape(repr(name))}$"
    with pytest.raises(ConfigError, match=message):
        model.to(name)
    with pytest.raises(ConfigError, match=message):
        model.predict(np.zeros((64, 64, 3), np.uint8), device=name)
    assert str(model.device) == "cpu"
