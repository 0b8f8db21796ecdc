"""The one reader of structured files (visionkit/io/structured.py) refuses, in one line naming
the file and the position, every category of hostile text: not UTF-8, too deep, too long an
integer, NaN, YAML alias bombs and recursive aliases (before expansion), XML entities; and the
numbers annotation and prediction files hold are checked where they enter (boxes within the
image, scores in [0, 1], VOC sizes against the JPEG, duplicate class names). Hand cases per
category, then hypothesis: random bytes and random structures give a value or a VisionkitError,
never another exception, in bounded time."""

import json
import math
import os
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile_annotations import GOOD, with_exif_orientation

from visionkit.config import load_config
from visionkit.data.coco_checks import check_coco_dataset
from visionkit.data.voc import VOCDetection, parse_voc_xml
from visionkit.engine.training_curves import read_metrics
from visionkit.errors import CheckpointError, ConfigError, DataError, VisionkitError
from visionkit.io.structured import (
    MAX_DEPTH,
    MAX_YAML_NODES,
    loads_json,
    loads_yaml,
    read_json,
    read_jsonl,
    read_text,
    read_xml,
    read_yaml,
)

EXAMPLES = int(os.environ.get("VISIONKIT_FUZZ_EXAMPLES", "40"))
BOUND_S = 5.0  # wall-clock bound of one read, on a loaded CI machine
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)
)  # 9 levels of 9 aliases: 387 million values once expanded


def refused(call, error=VisionkitError, match=None):
    """The one-line message of the ``error`` ``call()`` raises (fast, no traceback)."""
    start = time.perf_counter()
    with pytest.raises(error, match=match) as e:
        call()
    assert time.perf_counter() - start < BOUND_S and "\n" not in str(e.value)
    return str(e.value)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- text ------------------------------------------------------------------------------------


def test_text_must_be_utf8_naming_the_byte(tmp_path):
    bad = write(tmp_path / "c.yaml", b"model:\n  name: caf\xe9\n")
    assert (
        refused(lambda: read_text(bad))
        == f"{bad}: not UTF-8 text (byte 18: invalid continuation byte)"
    )
    utf16 = write(tmp_path / "u.json", '{"a": 1}'.encode("utf-16"))
    assert refused(lambda: read_json(utf16)).endswith("UTF-16 text; save it as UTF-8")
    no_bom = write(tmp_path / "n.json", '{"a": 1}'.encode("utf-16-le"))
    assert "a NUL byte at byte 1" in refused(lambda: read_json(no_bom))
    bom = write(tmp_path / "b.json", b'\xef\xbb\xbf{"a": 1}')
    assert read_json(bom) == {"a": 1}
    assert "larger than the 4 bytes" in refused(lambda: read_text(bom, max_bytes=4))
    assert refused(lambda: read_text(tmp_path)).startswith(f"cannot read {tmp_path}")


def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path):
    for data in (b"train:\n  epochs: \xff\n", "train:\n  epochs: 3\n".encode("utf-16")):
        path = write(tmp_path / "c.yaml", data)
        assert refused(lambda p=path: load_config(p), ConfigError).startswith(f"{path}: ")


# -- JSON ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, f"nested deeper than {MAX_DEPTH} levels"),
        ('{"a": ' + "[" * 70 + "]" * 70 + "}", "at a[0][0]"),
        ('{"id": ' + "7" * 5000 + "}", "at id: an integer of 5000 digits (at most 100)"),
        ('[{"score": NaN}]', "at [0].score: NaN is not a JSON number"),
        ('{"b": [1, -Infinity]}', "at b[1]: -Infinity is not a JSON number"),
        ('{"b": [1, 1e999]}', "at b[1]: a number beyond a double's range"),
        ('{"name": "\\udc80"}', "at name: half of a UTF-16 surrogate pair"),
        ('{"a": 1,\n "b": [1,, 2]}', "not valid JSON at line 2, column 10: Expecting value"),
    ],
)
def test_json_refused_in_one_line_naming_the_position(text, message):
    assert message in refused(lambda: loads_json(text, "f.json", error=CheckpointError))


def test_json_values_that_are_fine():
    assert loads_json('{"a": "\\ud83d\\ude00", "b": [1.5, -2]}', "f") == {"a": "😀", "b": [1.5, -2]}
    nan = loads_json('{"AP": NaN, "loss": Infinity}', "m", allow_nan=True)
    assert math.isnan(nan["AP"]) and nan["loss"] == math.inf
    assert loads_json("[" * MAX_DEPTH + "]" * MAX_DEPTH, "f") is not None


# -- YAML ------------------------------------------------------------------------------------


def test_yaml_alias_bomb_and_recursion_refused_before_expansion():
    assert f"expands to more than {MAX_YAML_NODES:,} values" in refused(
        lambda: loads_yaml(BOMB, "c.yaml"), ConfigError
    )
    assert refused(lambda: loads_yaml("a: &a [1, *a]", "c.yaml"), ConfigError) == (
        "c.yaml: the alias at line 1, column 4 contains itself"
    )
    assert "contains itself" in refused(lambda: loads_yaml("&m {k: *m}", "c.yaml"))
    assert "nested deeper than" in refused(lambda: loads_yaml("[" * 10_000 + "]" * 10_000, "c"))
    assert "an integer of 5000 digits" in refused(lambda: loads_yaml("a: " + "1" * 5000, "c"))
    assert "line 1, column 4: cannot read the value" in refused(
        lambda: loads_yaml("a: 2001-13-45", "c")
    )
    assert "character 0x0 is not allowed" in refused(lambda: loads_yaml("a: \x00", "c"))
    # shared anchors and merge keys still load
    assert loads_yaml("a: &x {b: 1}\nc: {<<: *x, d: 2}\ne: [*x, *x]", "c") == {
        "a": {"b": 1}, "c": {"b": 1, "d": 2}, "e": [{"b": 1}, {"b": 1}]
    }  # fmt: skip


def test_a_bomb_under_an_unknown_config_key_is_refused_quickly(tmp_path):
    nested = "".join(f"  {line}\n" for line in BOMB.splitlines())
    path = write(tmp_path / "c.yaml", f"train:\n  epochs: 1\nsurprise:\n{nested}".encode())
    assert "an alias bomb" in refused(lambda: load_config(path), ConfigError)
    base = write(tmp_path / "b.yaml", b"train: &t\n  epochs: [*t]\n")
    child = write(tmp_path / "child.yaml", b"base: b.yaml\n")
    assert f"{base.resolve()}: the alias" in refused(lambda: load_config(child), ConfigError)
    # an override is parsed as YAML too; one that is a bomb is only its text, never expanded
    cfg_error = refused(lambda: load_config(None, [f"data.train.splits={BOMB}"]), ConfigError)
    assert "must be a list" in cfg_error


# -- JSONL -----------------------------------------------------------------------------------


def test_a_torn_last_metrics_line_is_skipped_with_a_warning(tmp_path):
    good = '{"iter": 1, "train/loss": 2.0}\n{"iter": 2, "bbox/APl": NaN, "epoch": 1}\n'
    for torn in (b'{"iter": 3, "train/lo', b'{"iter": 3, "AP-caf\xc3', b"\x00\x00garbage"):
        path = write(tmp_path / "metrics.jsonl", good.encode() + torn)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            records = read_metrics(path)
        assert [r["iter"] for r in records] == [1, 2] and math.isnan(records[1]["bbox/APl"])
        (w,) = caught
        assert str(w.message).startswith(f"skipped a torn last line: {path}:3: ")


def test_a_garbage_line_before_the_last_is_an_error_naming_it(tmp_path):
    path = write(tmp_path / "metrics.jsonl", b'{"iter": 1}\n{"iter": 2\n{"iter": 3}\n')
    assert refused(lambda: read_metrics(path), DataError).startswith(f"{path}:2: not valid JSON")
    path = write(tmp_path / "metrics.jsonl", b'{"iter": 1}\n[1, 2]\n{"iter": 3}\n')
    assert refused(lambda: read_metrics(path)) == (
        f"{path}:2: not a metrics record (a JSON object with 'iter')"
    )
    path = write(tmp_path / "m.jsonl", b'{"a": 1}\n\xff\n{"a": 3}\n')
    assert refused(lambda: read_jsonl(path)).startswith(f"{path}:2: not UTF-8 text")


# -- XML -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ('<!DOCTYPE a [<!ENTITY x "xx"><!ENTITY y "&x;&x;">]><a>&y;</a>', "an entity declaration"),
        ('<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>', "an entity decl"),
        ("<a>" * 100 + "</a>" * 100, f"elements nested deeper than {MAX_DEPTH} levels"),
        ("<a>&undefined;</a>", "not valid XML at line 1, column 4: undefined entity"),
        ("<a><b></a>", "not valid XML at line 1, column 9: mismatched tag"),
        ("", "not valid XML at line 1, column 1: no element found"),
    ],
)
def test_xml_refused_in_one_line(xml, message, tmp_path):
    path = write(tmp_path / "a.xml", xml.encode())
    assert message in refused(lambda: read_xml(path), DataError)


# -- numbers of annotation and prediction files ----------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("annotations", 0, "bbox", [1, 2, 1e300, 4]), "lies beyond its 40x30 image"),
        (("annotations", 0, "bbox", [-20, 2, 10, 4]), "lies beyond its 40x30 image"),
        (("annotations", 0, "area", 1e300), "'area' must be a number in"),
        (("images", 0, "width", 10**30), f"'width' {10**30} is beyond"),
        (("images", 0, "height", 0), "'height' must be a positive integer, got 0"),
        (("images", 0, "id", 2**70), f"'id' {2**70} is beyond int64"),
        (("categories", 0, "id", -(2**64)), "is beyond int64"),
    ],
)
def test_coco_numbers_beyond_their_range_are_refused(change, message):
    data = json.loads(json.dumps(GOOD))
    section, k, key, value = change
    data[section][k][key] = value
    assert message in refused(lambda: check_coco_dataset(data, Path("f.json")), DataError)


def test_duplicate_class_names_are_refused(tmp_path):
    data = json.loads(json.dumps(GOOD))
    data["categories"].append({"id": 4, "name": "circle"})
    assert refused(lambda: check_coco_dataset(data, Path("f.json"))) == (
        "f.json: categories: class 'circle' appears twice (classes 0 and 1); each class needs "
        "its own name"
    )
    root = voc_root(tmp_path, 40, 30, (40, 30))
    assert "class 'cat' appears twice" in refused(
        lambda: VOCDetection(root, ["2007/val"], class_names=["cat", "dog", "cat"])
    )


def voc_root(tmp_path: Path, width, height, image_wh, orientation: int = 1) -> Path:
    """A one-image VOCdevkit: a JPEG of ``image_wh`` (EXIF ``orientation``) whose XML says
    ``width`` x ``height``."""
    folder = tmp_path / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    _, jpeg = cv2.imencode(".jpg", np.zeros((image_wh[1], image_wh[0], 3), np.uint8))
    data = jpeg.tobytes()
    if orientation != 1:
        data = with_exif_orientation(data, orientation)
    write(folder / "JPEGImages" / "a.jpg", data)
    (folder / "Annotations" / "a.xml").write_text(
        f"<annotation><size><width>{width}</width><height>{height}</height></size><object>"
        "<name>cat</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>20</xmax><ymax>20</ymax>"
        "</bndbox></object></annotation>"
    )
    (folder / "ImageSets" / "Main" / "val.txt").write_text("a\n")
    return tmp_path


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((0, 30), "<size> <width> must be a positive integer, got 0"),
        ((40, -30), "<size> <height> must be a positive integer, got -30"),
        ((50, 30), "<size> 50x30 differs from a.jpg, 40x30 px (1 annotation file(s) differ "
                   "from their image)"),
        ((30, 40), "<size> 30x40 differs from a.jpg, 40x30 px (1 annotation file(s) differ "
                   "from their image)"),  # the file has no EXIF rotation to explain it
    ],
)  # fmt: skip
def test_voc_sizes_that_are_zero_negative_or_not_the_jpegs_are_refused(size, message, tmp_path):
    root = voc_root(tmp_path, *size, (40, 30))
    xml = root / "VOC2007" / "Annotations" / "a.xml"
    assert refused(lambda: VOCDetection(root, ["2007/val"], class_names=["cat"])) == (
        f"{xml}: {message}"
    )


@pytest.mark.parametrize(("size", "as_stored"), [((40, 30), True), ((30, 40), False)])
def test_voc_follows_cocos_exif_rule(size, as_stored, tmp_path):
    root = voc_root(tmp_path, *size, (40, 30), orientation=6)  # stored 40x30, shown 30x40
    dataset = VOCDetection(root, ["2007/val"], class_names=["cat"])
    assert dataset.orientation(0) is not as_stored
    image, target = dataset[0]
    assert tuple(image.shape[1:]) == (size[1], size[0]) and target["orig_size"] == size[::-1]


def test_a_1e300_voc_box_is_refused_not_overflowed(tmp_path):
    path = write(tmp_path / "a.xml", b"<annotation><size><width>40</width><height>30</height>"
                 b"</size><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                 b"<xmax>1e300</xmax><ymax>9</ymax></bndbox></object></annotation>")  # fmt: skip
    assert refused(lambda: parse_voc_xml(path, ["cat"])) == (
        f"{path}: object 1 (cat): the box [1.0, 1.0, 1e+300, 9.0] lies beyond its 40x30 image"
    )


# -- hypothesis: any input gives a value or a VisionkitError, in bounded time ----------------

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8)
    | st.integers(min_value=10**150, max_value=10**200),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=40,
)  # fmt: skip


def bounded(call):
    """``call()``'s value, or None when it raised a VisionkitError; anything else fails."""
    start = time.perf_counter()
    try:
        return call()
    except VisionkitError as e:
        assert "\n" not in str(e)
        return None
    finally:
        assert time.perf_counter() - start < BOUND_S


@pytest.mark.filterwarnings("ignore:skipped a torn last line")
@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_into_every_reader(data, tmp_path):
    path = write(tmp_path / "f", data)
    for reader in (read_text, read_json, read_jsonl, read_yaml, read_xml):
        bounded(lambda r=reader: r(path))
    bounded(lambda: load_config(path))
    bounded(lambda: read_metrics(path))


@FUZZ
@given(value=JSONISH)
def test_random_structures_through_json_and_yaml(value):
    text = json.dumps(value)
    parsed = bounded(lambda: loads_json(text, "f.json"))
    if parsed is not None:
        assert parsed == value
    nested = json.dumps([[[value]]] * 3)
    bounded(lambda: loads_json(nested, "f.json"))
    dumped = yaml.safe_dump(value)
    parsed = bounded(lambda: loads_yaml(dumped, "c.yaml"))
    if parsed is not None:  # compared as JSON text: NaN equals NaN there
        assert json.dumps(parsed, sort_keys=True) == json.dumps(value, sort_keys=True)


@FUZZ
@given(fan=st.integers(1, 12), levels=st.integers(1, 12), cycle=st.booleans())
def test_random_alias_graphs_are_loaded_or_refused_in_bounded_time(fan, levels, cycle):
    lines = ["l0: &l0 [x]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]")
    if cycle:
        lines.append(f"z: &z [*l{levels}, *z]")
    value = bounded(lambda: loads_yaml("\n".join(lines), "c.yaml"))
    sizes = [2]  # l0: the list and its x
    for _ in range(levels):
        sizes.append(1 + fan * sizes[-1])
    expanded = 1 + sum(1 + s for s in sizes)  # the top mapping, its keys and values
    assert (value is None) == (cycle or expanded > MAX_YAML_NODES)


@FUZZ
@given(text=st.text(alphabet="[]{}:,&*ab1-\n \"'!<>", max_size=200))
def test_random_yaml_and_json_text(text):
    bounded(lambda: loads_yaml(text, "c.yaml"))
    bounded(lambda: loads_json(text, "f.json"))
    bounded(lambda: load_config(None, [f"train.epochs={text}"]))
