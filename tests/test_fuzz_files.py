"""Fuzz: hostile structured files: COCO annotation JSON, VOC XML and YOLO datasets (data.yaml and
label files: browse_dataset.py, eval.py, train.py's border, convert.py), COCO results files (eval.py --predictions) and metrics.jsonl files
(plot_logs.py, compare.py). Each example: exit 0/1/2/3, no traceback, no input changed,
nothing half-written, within the bound; refusals where the issue says a value is an error."""

from __future__ import annotations

import json
import math
import shutil
from unittest import mock
from xml.sax.saxutils import escape

import pytest
from fuzz_assets import SIZE, session_assets
from fuzz_strategies import (
    ODD_TEXT,
    TEXT_ATTACKS,
    apply_json_edits,
    attack_text,
    fractions,
    json_bytes,
    json_edit,
    numbers,
    values,
)
from fuzz_support import case, check, fuzz_settings, refused, run_tool, valid_predictions
from hypothesis import example, given
from hypothesis import strategies as st

from visionkit.engine.trainer import Trainer


@pytest.fixture(scope="module")
def assets():
    return session_assets()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_files")


def data_overrides(kind: str, root, ann=None) -> list[str]:
    keys = {"type": kind, "root": root} | ({"ann_file": ann} if ann else {"splits": "[2007/val]"})
    return [f"data.{s}.{k}={v}" for s in ("train", "val") for k, v in keys.items()]


def dataset_argv(tool: str, assets, c, overrides: list[str], predictions=None) -> tuple[str, list]:
    """A tool reading the dataset the overrides name (train: only its border runs)."""
    common = ["--config", assets.config]
    if tool == "browse_dataset":
        return tool, [*common, "--output", c.out / "browse", "--num", "3", *overrides]
    if tool == "train":
        return tool, [*common, "--output-dir", c.out / "run", "--no-progress", *overrides]
    return "eval", [*common, "--predictions", predictions, "--out", c.out / "m.json", *overrides]


def duplicate_names(doc) -> bool:
    try:
        names = [c["name"] for c in doc["categories"]]
        return len(names) != len(set(map(str, names)))
    except (KeyError, TypeError, IndexError):
        return False


COCO_PATHS = (
    [[]]
    + [[k] for k in ("images", "annotations", "categories", "info")]
    + [["images", i, f] for i in (0, 3) for f in ("id", "file_name", "width", "height")]
    + [["annotations", i, f] for i in (0, 5) for f in ("image_id", "category_id", "bbox", "area",
                                                          "iscrowd", "segmentation", "id")]
    + [["annotations", 0, "bbox", j] for j in range(4)]
    + [["categories", i, f] for i in (0, 1) for f in ("id", "name")]
)  # fmt: skip
coco_edits = st.lists(
    json_edit(COCO_PATHS, st.one_of(numbers, values, st.sampled_from(ODD_TEXT))), max_size=4
)


@pytest.mark.parametrize("tool", ["browse_dataset", "eval_predictions", "train"])
@fuzz_settings()
@given(edits=coco_edits, attack=st.sampled_from(TEXT_ATTACKS), where=fractions)
@example(edits=[(["categories", 1, "name"], "box")], attack="none", where=0.5)
@example(edits=[(["annotations", 0, "bbox", 2], 1e300)], attack="none", where=0.5)
@example(edits=[(["images", 0, "width"], 0)], attack="none", where=0.5)
@example(edits=[(["images", 0, "file_name"], "../../../etc/passwd")], attack="none", where=0.5)
@example(edits=[], attack="invalid_utf8", where=0.2)
@example(edits=[], attack="utf16", where=0.5)
@example(edits=[], attack="deep", where=0.5)
@example(edits=[], attack="long_number", where=0.5)
@example(edits=[], attack="truncate", where=0.7)
def test_hostile_coco_annotations(base, assets, tool, edits, attack, where):
    doc = apply_json_edits(assets.coco, edits)
    with case(base, assets) as c:
        ann = c.inp / "instances.json"
        ann.write_bytes(json_bytes(doc, attack, where))
        preds = valid_predictions(c, assets.coco)
        overrides = data_overrides("coco", assets.images, ann)
        script, argv = dataset_argv(tool, assets, c, overrides, preds)
        expect = refused if duplicate_names(doc) else None
        with mock.patch.object(Trainer, "train", lambda self: {}):
            check(c, lambda: run_tool(script, argv, c.root), expect, f"{edits!r} {attack}")


SIZES = ["64", "0", "-64", "128", "1e9", "64.0", "", "abc", "9" * 30, " 64 "]
COORDS = ["1", "10", "63", "64", "-5", "1e300", "nan", "inf", "", "x", "1e9", "30.5", "70"]
voc_objects = st.lists(
    st.tuples(
        st.sampled_from(["cat", "dog", "person"]) | st.sampled_from(ODD_TEXT),
        st.lists(st.sampled_from(COORDS), min_size=4, max_size=4),
        st.sampled_from(["0", "1", "2", "yes", ""]),
    ),
    max_size=3,
)
VOC_ATTACKS = [
    "none",
    "entity_bomb",
    "external_entity",
    "deep",
    "invalid_utf8",
    "utf16",
    "truncate",
]
BOMB = (
    '<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY a "aaaaaaaaaa">'
    + "".join(
        f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefg", "bcdefgh", strict=True)
    )
    + "]>"
)


def voc_xml(width: str, height: str, objects, attack: str, where: float) -> bytes:
    objs = "".join(
        f"<object><name>{escape(n)}</name><difficult>{d}</difficult><bndbox>"
        + "".join(
            f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)
        )
        + "</bndbox></object>"
        for n, box, d in objects
    )
    body = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>{objs}"
    if attack == "entity_bomb":
        return f"{BOMB}<annotation><folder>&h;</folder>{body}</annotation>".encode()
    if attack == "external_entity":
        head = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
        return f"{head}<annotation><folder>&x;</folder>{body}</annotation>".encode()
    if attack == "deep":
        return ("<annotation>" + "<a>" * 50_000 + "</a>" * 50_000 + body + "</annotation>").encode()
    text = f'<?xml version="1.0" encoding="utf-8"?><annotation>{body}</annotation>'
    return attack_text(text, attack, where, kind="xml")


def int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


@pytest.mark.parametrize("tool", ["browse_dataset", "eval_predictions"])
@fuzz_settings()
@given(
    width=st.sampled_from(SIZES),
    height=st.sampled_from(SIZES),
    objects=voc_objects,
    attack=st.sampled_from(VOC_ATTACKS),
    where=fractions,
)
@example(width="128", height="128", objects=[("cat", ["1", "1", "100", "100"], "0")],
         attack="none", where=0.5)  # fmt: skip
@example(width="0", height="64", objects=[("cat", ["1", "1", "10", "10"], "0")],
         attack="none", where=0.5)  # fmt: skip
@example(width="-64", height="-64", objects=[], attack="none", where=0.5)
@example(width="64", height="64", objects=[("cat", ["1", "1", "1e300", "10"], "0")],
         attack="none", where=0.5)  # fmt: skip
@example(width="64", height="64", objects=[], attack="entity_bomb", where=0.5)
@example(width="64", height="64", objects=[], attack="utf16", where=0.5)
def test_hostile_voc_annotations(base, assets, tool, width, height, objects, attack, where):
    with case(base, assets) as c:
        voc = c.inp / "VOCdevkit" / "VOC2007"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (voc / sub).mkdir(parents=True)
        names = ["000001", "000002"]
        (voc / "ImageSets/Main/val.txt").write_text("\n".join(names) + "\n")
        for k, name in enumerate(names):
            shutil.copy(assets.images / f"img{k}.jpg", voc / "JPEGImages" / f"{name}.jpg")
            good = voc_xml(str(SIZE), str(SIZE), [("cat", ["5", "5", "30", "30"], "0")], "none", 0)
            xml = voc_xml(width, height, objects, attack, where) if k == 0 else good
            (voc / "Annotations" / f"{name}.xml").write_bytes(xml)
        preds = c.inp / "predictions.json"
        preds.write_text(json.dumps([{"image_id": 2, "category_id": 8, "bbox": [5, 5, 25, 25],
                                      "score": 0.9}]))  # fmt: skip
        overrides = [*data_overrides("voc", c.inp / "VOCdevkit"), "model.num_classes=20"]
        script, argv = dataset_argv(tool, assets, c, overrides, preds)
        w, h = int_or_none(width), int_or_none(height)
        wrong_size = w is not None and h is not None and (w, h) != (SIZE, SIZE)
        expect = refused if wrong_size and attack == "none" else None
        detail = f"VOC size {width!r}x{height!r}, objects {objects!r}, attack {attack}"
        check(c, lambda: run_tool(script, argv, c.root), expect, detail)


YOLO_TOKENS = ["0", "1", "2", "-1", "0.5", "0.25", "1.0", "1.00001", "1.5", "-0.2", "nan", "inf",
               "1e300", "x", "0x10", "9" * 30, "\u00bd"]  # fmt: skip
yolo_lines = st.lists(
    st.lists(st.sampled_from(YOLO_TOKENS) | st.sampled_from(ODD_TEXT), max_size=9).map(" ".join),
    max_size=4,
)
YOLO_NAMES = ["[box, disc]", "{0: box, 1: disc}", "[box, box]", "[]", "{1: box, 2: disc}", "7",
              "[box, [x]]", "[box]"]  # fmt: skip
YOLO_SPLITS = ["images/train", "list.txt", "images/nope", "../../..", "''", "[images/train, 3]"]
GOOD_LINE = "0 0.5 0.5 0.25 0.25"


def yolo_line_refused(lines: list[str]) -> bool:
    """A line that no YOLO reader may accept: a count of numbers other than 0, 5 or an odd
    number >= 7, a token that is not a finite number, a class other than 0 or 1."""
    for line in lines:
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 5 and (len(tokens) < 7 or len(tokens) % 2 == 0):
            return True
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            return True
        if not all(math.isfinite(v) for v in values) or values[0] not in (0, 1):
            return True
    return False


@pytest.mark.parametrize("tool", ["browse_dataset", "convert"])
@fuzz_settings()
@given(
    lines=yolo_lines,
    names=st.sampled_from(YOLO_NAMES),
    split=st.sampled_from(YOLO_SPLITS),
    target=st.sampled_from(["labels", "yaml"]),
    attack=st.sampled_from(TEXT_ATTACKS),
    where=fractions,
    missing=st.booleans(),
)
@example(lines=["2 0.5 0.5 0.2 0.2"], names="[box, disc]", split="images/train",
         target="labels", attack="none", where=0.5, missing=False)  # fmt: skip
@example(lines=["0 0.5 0.5 0.2"], names="[box, disc]", split="list.txt", target="labels",
         attack="none", where=0.5, missing=True)  # fmt: skip
@example(lines=["0 0.5 nan 0.2 0.2"], names="{0: box, 1: disc}", split="images/train",
         target="labels", attack="none", where=0.5, missing=False)  # fmt: skip
@example(lines=[GOOD_LINE], names="[box, disc]", split="images/train", target="labels",
         attack="utf16", where=0.5, missing=False)  # fmt: skip
@example(lines=[GOOD_LINE], names="[box, disc]", split="images/nope", target="yaml",
         attack="none", where=0.5, missing=False)  # fmt: skip
@example(lines=[GOOD_LINE], names="[box, disc]", split="images/train", target="yaml",
         attack="alias_bomb_known", where=0.5, missing=False)  # fmt: skip
def test_hostile_yolo_datasets(base, assets, tool, lines, names, split, target, attack, where,
                               missing):  # fmt: skip
    with case(base, assets) as c:
        root = c.inp / "yolo"
        (root / "images/train").mkdir(parents=True)
        (root / "labels/train").mkdir(parents=True)
        for k in range(2):
            shutil.copy(assets.images / f"img{k}.jpg", root / "images/train" / f"img{k}.jpg")
        (root / "list.txt").write_text("./images/train/img0.jpg\nimages/train/img1.jpg\n")
        text = "\n".join(lines) + "\n"
        label = attack_text(text, attack, where) if target == "labels" else text.encode()
        (root / "labels/train/img0.txt").write_bytes(label)
        if not missing:
            (root / "labels/train/img1.txt").write_text(GOOD_LINE + "\n")
        yaml_text = f"train: {split}\nval: {split}\nnames: {names}\n"
        yaml_bytes = attack_text(yaml_text, attack, where) if target == "yaml" else None
        (root / "data.yaml").write_bytes(yaml_bytes or yaml_text.encode())
        keys = {"type": "yolo", "root": root / "data.yaml", "splits": "[train]"}
        overrides = [f"data.{s}.{k}={v}" for s in ("train", "val") for k, v in keys.items()]
        if tool == "convert":
            argv = [assets.config, "--to", "coco", "--output", c.out / "coco", "--no-progress",
                    *overrides]  # fmt: skip
        else:
            tool, argv = dataset_argv(tool, assets, c, overrides)
        clean = attack == "none" and names in YOLO_NAMES[:2] and split in YOLO_SPLITS[:2]
        expect = refused if clean and yolo_line_refused(lines) else None
        detail = f"labels {lines!r}, names {names}, split {split}, {attack} on {target}"
        check(c, lambda: run_tool(tool, argv, c.root), expect, detail)


PRED_PATHS = [[], [0], [1]] + [[i, f] for i in (0, 3) for f in
                                ("image_id", "category_id", "bbox", "score")]  # fmt: skip
PRED_PATHS += [[0, "bbox", j] for j in range(4)]
prediction_edits = st.lists(json_edit(PRED_PATHS, st.one_of(numbers, values)), max_size=4)
OUTS = ["out/m.json", "in/predictions.json", "out", "/proc/visionkit_fuzz.json", "out/a/b/m.json"]


def out_of_range(doc) -> bool:
    """A score outside [0, 1] or a box number not finite or beyond 1e6 px: must be refused."""
    if not isinstance(doc, list):
        return False
    for p in doc:
        try:
            nums = [float(p["score"]), *map(float, p["bbox"])]
        except (KeyError, TypeError, ValueError):
            return False
        if not all(math.isfinite(v) for v in nums) or not 0 <= nums[0] <= 1:
            return True
        if any(abs(v) > 1e6 for v in nums[1:]):
            return True
    return False


@fuzz_settings()
@given(
    edits=prediction_edits,
    attack=st.sampled_from(TEXT_ATTACKS),
    where=fractions,
    out=st.sampled_from(OUTS),
)
@example(edits=[([0, "score"], float("nan"))], attack="none", where=0.5, out="out/m.json")
@example(edits=[([0, "score"], 7.0)], attack="none", where=0.5, out="out/m.json")
@example(edits=[([0, "bbox", 2], 1e300)], attack="none", where=0.5, out="out/m.json")
@example(edits=[], attack="invalid_utf8", where=0.3, out="out/m.json")
@example(edits=[], attack="utf16", where=0.5, out="out/m.json")
@example(edits=[], attack="deep", where=0.5, out="out/m.json")
@example(edits=[], attack="long_number", where=0.5, out="out/m.json")
@example(edits=[], attack="none", where=0.5, out="in/predictions.json")
@example(edits=[], attack="none", where=0.5, out="out")
def test_hostile_prediction_files(base, assets, edits, attack, where, out):
    with case(base, assets) as c:
        preds = valid_predictions(c, assets.coco)
        doc = apply_json_edits(json.loads(preds.read_text()), edits)
        preds.write_bytes(json_bytes(doc, attack, where))
        argv = ["--config", assets.config, "--predictions", preds, "--out", c.root / out]
        expect = refused if out_of_range(doc) and attack == "none" else None
        detail = f"predictions {edits!r}, attack {attack}, --out {out}"
        check(c, lambda: run_tool("eval", argv, c.root), expect, detail)


METRIC_KEYS = ["iter", "epoch", "train/loss", "train/loss_cls", "lr", "bbox/AP50", "bbox/AP",
               "sem_seg/mIoU", "bbox/AP-box"]  # fmt: skip
records = st.lists(
    st.dictionaries(st.sampled_from(METRIC_KEYS) | st.text(max_size=8),
                    st.one_of(numbers, values), max_size=6),
    min_size=0, max_size=5,
)  # fmt: skip
JSONL_ATTACKS = ["none", "torn_last", "garbage_middle", "invalid_utf8", "utf16", "deep",
                 "long_number", "blank_lines"]  # fmt: skip


def metrics_bytes(recs: list, many: int, attack: str, where: float) -> bytes:
    good = [{"iter": 1, "epoch": 1, "train/loss": 2.0, "lr": 0.01},
            {"iter": 2, "epoch": 1, "bbox/AP50": 40.0, "train/loss": 1.0}]  # fmt: skip
    wide = {"iter": 3, "epoch": 2, **{f"train/loss_{k}": float(k) for k in range(many)}}
    lines = [json.dumps(r) for r in [*good, *recs, wide]]
    if attack == "torn_last":
        lines.append(lines[-1][: len(lines[-1]) // 2])
    elif attack == "garbage_middle":
        lines.insert(1, "{not json")
    elif attack == "deep":
        lines.insert(1, "[" * 100_000 + "]" * 100_000)
    elif attack == "long_number":
        lines.insert(1, '{"iter": ' + "9" * 5000 + "}")
    elif attack == "blank_lines":
        lines = [x for line in lines for x in (line, "", "  ")]
    text = "\n".join(lines) + "\n"
    if attack in ("invalid_utf8", "utf16"):
        return attack_text(text, attack, where)
    return text.encode()


@pytest.mark.parametrize("tool", ["plot_logs", "compare"])
@fuzz_settings()
@given(
    recs=records,
    many=st.sampled_from([0, 3, 12]),
    attack=st.sampled_from(JSONL_ATTACKS),
    where=fractions,
    metric=st.sampled_from([None, "train/loss", "bbox/AP50", "lr", "nope", "iter", "epoch"]),
)
@example(recs=[], many=300, attack="none", where=0.5, metric=None)
@example(recs=[], many=0, attack="none", where=0.5, metric="train/loss")
@example(recs=[], many=0, attack="invalid_utf8", where=0.3, metric=None)
@example(recs=[], many=0, attack="utf16", where=0.5, metric=None)
@example(recs=[], many=0, attack="deep", where=0.5, metric=None)
@example(recs=[], many=0, attack="long_number", where=0.5, metric=None)
@example(recs=[{"iter": "x", "bbox/AP50": "high"}], many=0, attack="none", where=0.5,
         metric="bbox/AP50")  # fmt: skip
def test_hostile_metrics_files(base, assets, tool, recs, many, attack, where, metric):
    with case(base, assets) as c:
        run = c.inp / "run_a"
        run.mkdir()
        shutil.copy(assets.config, run / "config.yaml")
        (run / "metrics.jsonl").write_bytes(metrics_bytes(recs, many, attack, where))
        argv = [run, "--output", c.out / "chart.png"]
        if tool == "compare" and metric:
            argv += ["--metric", metric]
        detail = f"records {recs!r}, {many} extra keys, attack {attack}, metric {metric}"
        lowest = lowest_loss(recs) if tool == "compare" and metric == "train/loss" else None

        def expect(outcome):
            if outcome.code != 0 or lowest is None or attack != "none":
                return None
            row = [line for line in outcome.stdout.splitlines() if line.startswith("run_a")]
            if not row or f" {lowest:.2f} " not in f" {row[0]} ":
                return f"the best train/loss is the lowest, {lowest:.2f}; the table says {row}"
            return None

        check(c, lambda: run_tool(tool, argv, c.root), expect, detail)


def lowest_loss(recs: list) -> float | None:
    """The lowest finite train/loss of the written records (the two good ones: 2.0, 1.0)."""
    losses = [2.0, 1.0]
    for r in recs:
        v = r.get("train/loss", None)
        if isinstance(v, int | float) and not isinstance(v, bool):
            if not math.isfinite(v):
                return None  # what a non-finite loss means for "best" is not asserted here
            losses.append(float(v))
    return min(losses)
