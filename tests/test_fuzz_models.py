"""Fuzz: hostile checkpoints (convert_checkpoint.py and every tool or API that loads weights),
hostile ONNX metadata (visionkit.load and infer.py on the tiny export with its metadata_props
rewritten) and visualize.py's arguments. Each example: exit 0/1/2/3, no traceback, no input
changed, nothing half-written, within the bound."""

from __future__ import annotations

import collections
import datetime
import fractions as fr
import json

import numpy as np
import onnx
import pytest
import torch
from fuzz_assets import SIZE, session_assets
from fuzz_strategies import (
    ODD_TEXT,
    apply_json_edits,
    fractions,
    json_edit,
    numbers,
    values,
)
from fuzz_support import case, check, fuzz_settings, invoke, refused, run_tool
from hypothesis import example, given
from hypothesis import strategies as st

import visionkit


@pytest.fixture(scope="module")
def assets():
    return session_assets()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_models")


DTYPES = [torch.float32, torch.float16, torch.float64, torch.int64, torch.uint8, torch.bool]
tensors = st.tuples(
    st.sampled_from(DTYPES), st.lists(st.integers(0, 5), max_size=4), st.sampled_from([0.0, 1e30])
).map(lambda t: (torch.ones(t[1]) * t[2]).to(t[0]))
OBJECTS = [
    np.array(["a", 1], dtype=object), np.float64(1.5), np.arange(3, dtype=np.uint16),
    np.zeros((), np.float32), {1, 2}, complex(1, 2), collections.OrderedDict(a=1),
    fr.Fraction(1, 3), datetime.date(2024, 1, 1), np.array([1.0], np.longdouble), b"\x00",
    np.ma.masked_array([1, 2]), np.datetime64("2024-01-01"),
]  # fmt: skip
CKPT_KEYS = ["model", "config", "class_names", "cat_ids", "model_name", "epoch"]
checkpoint_kinds = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=300)),
    st.tuples(st.just("truncated"), fractions),
    st.tuples(
        st.just("edited"),
        st.lists(
            st.tuples(
                st.sampled_from(CKPT_KEYS + ["config.model", "model.first", "extra"]),
                st.one_of(values, tensors, st.sampled_from(OBJECTS), st.just("<delete>")),
            ),
            min_size=1,
            max_size=3,
        ),
    ),
    st.tuples(st.just("plain"), st.one_of(values, tensors, st.sampled_from(OBJECTS))),
)


def write_checkpoint(kind, path, source) -> None:
    """The hostile checkpoint file: random bytes, a truncated real one, a real one edited
    (keys set to odd values or deleted), or any value saved with torch.save."""
    name, arg = kind
    if name == "bytes":
        path.write_bytes(arg)
    elif name == "truncated":
        data = source.read_bytes()
        path.write_bytes(data[: int(len(data) * arg)])
    elif name == "plain":
        torch.save(arg, path)
    else:
        ckpt = torch.load(source, weights_only=True)
        for key, value in arg:
            node, leaf = ckpt, key
            if key == "config.model":
                node, leaf = ckpt.get("config"), "model"
            elif key == "model.first":
                node = ckpt.get("model")
                leaf = next(iter(node), None) if isinstance(node, dict) else None
            if not isinstance(node, dict) or leaf is None:
                continue  # an earlier edit replaced the section: nothing left to edit in it
            if isinstance(value, str) and value == "<delete>":
                node.pop(leaf, None)
            else:
                node[leaf] = value
        torch.save(ckpt, path)


def weights_argv(tool: str, weights, assets, c) -> list:
    return {
        "convert_checkpoint": [weights, c.out / "safe.pth"],
        "infer": ["--weights", weights, "--source", assets.images / "img0.jpg", "--output",
                  c.out / "infer", "--no-progress"],
        "eval": ["--config", assets.config, "--weights", weights, "--no-progress"],
        "export": ["--config", assets.config, "--weights", weights, "--output", c.out / "m.onnx"],
        "visualize": ["--config", assets.config, "--weights", weights, "--output", c.out / "vis"],
    }[tool]  # fmt: skip


@pytest.mark.parametrize("tool", ["convert_checkpoint", "infer", "eval", "export", "visualize"])
@fuzz_settings()
@given(kind=checkpoint_kinds)
@example(kind=("bytes", b""))
@example(kind=("truncated", 0.5))
@example(kind=("plain", [1, 2, 3]))
@example(kind=("plain", np.array(["a", 1], dtype=object)))
@example(kind=("edited", [("class_names", ["box"])]))
@example(kind=("edited", [("config.model", "yolo")]))
@example(kind=("edited", [("model.first", torch.ones(3))]))
@example(kind=("edited", [("model", {"x": np.arange(3)})]))
def test_hostile_checkpoints(base, assets, tool, kind):
    with case(base, assets) as c:
        weights = c.inp / "weights.pth"
        write_checkpoint(kind, weights, assets.checkpoint)
        argv = weights_argv(tool, weights, assets, c)
        check(c, lambda: run_tool(tool, argv, c.root), None, f"checkpoint {kind!r}"[:600])


def onnx_meta(path) -> dict:
    model = onnx.load(str(path))
    return json.loads(next(p.value for p in model.metadata_props if p.key == "visionkit"))


META_PATHS = [[], *[[k] for k in ("format_version", "model", "task", "class_names", "cat_ids",
                                   "inputs", "outputs", "input", "config")]]  # fmt: skip
META_PATHS += [["input", k] for k in ("dtype", "resize", "input_size", "min_size", "size_divisor")]
META_PATHS += [["config", "model"], ["config", "model", "num_classes"], ["class_names", 0]]
meta_edits = st.lists(
    json_edit(
        META_PATHS, st.one_of(numbers, values, st.sampled_from(ODD_TEXT + ["fcn", "sem_seg"]))
    ),
    max_size=3,
)
META_TEXT = ["json", "not_json", "absent", "deep", "long_number", "empty"]
GRAPH_FACTS = (["task"], ["class_names"], ["input", "input_size"], ["model"])


def rewrite_meta(source, dest, meta, text_kind: str) -> None:
    model = onnx.load(str(source))
    props = [p for p in model.metadata_props if p.key != "visionkit"]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    value = {
        "json": json.dumps(meta),
        "not_json": json.dumps(meta)[:-7],
        "deep": "[" * 100_000 + "]" * 100_000,
        "long_number": "9" * 5000,
        "empty": "",
    }.get(text_kind)
    if value is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "visionkit", value
    onnx.save(model, str(dest))


def contradicts_graph(meta: dict, edited: dict) -> bool:
    """The edited record announces another task, class count, input size or model than the
    graph's: must be refused."""

    def get(d, path):
        for p in path:
            d = d.get(p) if isinstance(d, dict) else None
        return d

    return any(
        get(edited, path) != get(meta, path) and not (path == ["class_names"] and
        isinstance(get(edited, path), list) and len(get(edited, path)) == len(meta["class_names"]))
        for path in GRAPH_FACTS
    )  # fmt: skip


@pytest.mark.parametrize("via", ["api", "infer"])
@fuzz_settings()
@given(edits=meta_edits, text_kind=st.sampled_from(META_TEXT))
@example(edits=[], text_kind="not_json")
@example(edits=[], text_kind="absent")
@example(edits=[(["class_names"], ["box"])], text_kind="json")
@example(edits=[(["class_names"], "<delete>")], text_kind="json")
@example(edits=[(["task"], "sem_seg"), (["model"], "fcn")], text_kind="json")
@example(edits=[(["input", "input_size"], [32, 32])], text_kind="json")
@example(edits=[], text_kind="deep")
def test_hostile_onnx_metadata(base, assets, via, edits, text_kind):
    meta = onnx_meta(assets.onnx)
    edited = apply_json_edits(meta, edits)
    with case(base, assets) as c:
        path = c.inp / "model.onnx"
        rewrite_meta(assets.onnx, path, edited, text_kind)
        image = np.zeros((SIZE, SIZE, 3), np.uint8)
        if via == "api":
            what = f"visionkit.load({path}).predict(array)"

            def outcome():
                return invoke(what, lambda: visionkit.load(path).predict(image), c.root)
        else:
            argv = ["--weights", path, "--source", assets.images / "img0.jpg", "--output",
                    c.out / "infer", "--no-progress"]  # fmt: skip

            def outcome():
                return run_tool("infer", argv, c.root)

        bad = text_kind == "json" and isinstance(edited, dict) and contradicts_graph(meta, edited)
        check(c, outcome, refused if bad else None, f"metadata {edits!r} as {text_kind}")


@fuzz_settings()
@given(
    sizes=st.tuples(*[st.sampled_from([1, 2, 32, 10**4, 10**6, 2**31]) for _ in range(3)]),
    output=st.sampled_from(["out/vis", "in/existing.txt", "/proc/vk_fuzz", "out/a/b"]),
    image=st.sampled_from([None, "garbage", "empty", "good", "folder"]),
    layers=st.sampled_from([None, ["stage1"], ["nope"], [""], ["backbone"]]),
)
@example(sizes=(32, 10**6, 64), output="out/vis", image=None, layers=None)
@example(sizes=(32, 32, 64), output="in/existing.txt", image=None, layers=None)
@example(sizes=(2**31, 32, 10**6), output="out/vis", image="good", layers=None)
def test_hostile_visualize_arguments(base, assets, sizes, output, image, layers):
    with case(base, assets) as c:
        (c.inp / "existing.txt").write_text("the user's own file\n")
        argv = ["--config", assets.config, "--output", c.root / output,
                "--max-channels", sizes[0], "--filter-size", sizes[1], "--map-size", sizes[2]]  # fmt: skip
        if image:
            img = c.inp / "image.jpg"
            if image == "folder":
                img.mkdir()
            else:
                data = {"garbage": b"\x89PNG garbage", "empty": b""}.get(image)
                img.write_bytes(
                    data if data is not None else (assets.images / "img1.jpg").read_bytes()
                )
            argv += ["--image", img]
            argv += ["--layers", *layers] if layers else []
        check(c, lambda: run_tool("visualize", argv, c.root), None, f"{sizes} {output} {image}")
