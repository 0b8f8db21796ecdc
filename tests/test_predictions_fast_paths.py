"""The fast paths of scoring a predictions file hold to the checked ones they replace: orjson's
parse (visionkit/io/json_fast.py) gives the checked parse's very value or leaves the text to it;
the bulk check of results (results_check.checked_prefix) vouches only for records the per-record
check passes, so a bad record is the same one-line error; faster-coco-eval's result index
(coco_backends.result_index) gives loadRes' numbers bit for bit. Hand cases, then hypothesis:
hostile files give one-line errors or the old path's numbers."""

import contextlib
import copy
import gc
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fuzz_strategies import BIG_INTS, ODD_FLOATS, values
from fuzz_support import fuzz_settings
from hypothesis import example, given
from hypothesis import strategies as st
from script_loader import load_script

from visionkit.data.coco import coco_index
from visionkit.errors import DataError
from visionkit.evaluation import coco_backends
from visionkit.evaluation.coco_backends import _copies, faster_coco_eval, result_index
from visionkit.evaluation.coco_eval import coco_box_metrics
from visionkit.evaluation.results_check import _check_record, check_coco_results, checked_prefix
from visionkit.io import json_fast
from visionkit.io.heap import paused_gc
from visionkit.io.json_fast import nested_deeper
from visionkit.io.structured import MAX_DEPTH, _loads_checked, loads_json

GOOD = {"image_id": 1, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}
SIZES = {1: (30, 40), 2: (300, 400)}  # image id -> (height, width)
CATS = {1, 3}
# image 2 is 400 x 300 px: a box may stick out by 1 + 1 % of the side, 5.0 and 4.0 px (exact)
EDGE = {**GOOD, "image_id": 2}


def reference_check(results, where="p.json"):
    """The message of the per-record check of every record, in order (None: all good)."""
    try:
        if not isinstance(results, list):
            raise DataError(f"{where}: not a COCO results list")
        for k, r in enumerate(results):
            _check_record(k, r, SIZES, CATS, where, False)
    except DataError as e:
        return str(e)
    return None


def fast_check(results, where="p.json"):
    try:
        check_coco_results(results, SIZES, sorted(CATS), where)
    except DataError as e:
        assert "\n" not in str(e) and str(e).startswith(f"{where}: ")
        return str(e)
    return None


BULK_CASES = {  # record 2 of [GOOD, GOOD, record, GOOD]: whether it is good
    "at the margins": ({**EDGE, "bbox": [-5, -4, 410, 308]}, True),
    "left of the margin": ({**EDGE, "bbox": [-5.5, 0, 1, 1]}, False),
    "above the margin": ({**EDGE, "bbox": [0, -4.5, 1, 1]}, False),
    "right of the margin": ({**EDGE, "bbox": [0, 0, 405.5, 1]}, False),
    "below the margin": ({**EDGE, "bbox": [0, 0, 1, 304.5]}, False),
    "a zero-size box": ({**EDGE, "bbox": [0, 0, -0.0, 0]}, True),
    "a negative width": ({**EDGE, "bbox": [5, 5, -1, 1]}, False),
    "integer box and score": ({**EDGE, "bbox": [0, 0, 400, 300], "score": 1}, True),
    "score 0": ({**GOOD, "score": 0}, True),
    "score just above 1": ({**GOOD, "score": 1.0000001}, False),
    "score just below 0": ({**GOOD, "score": -1e-9}, False),
    "NaN score": ({**GOOD, "score": math.nan}, False),
    "infinite box": ({**GOOD, "bbox": [1, 2, math.inf, 4]}, False),
    "NaN box": ({**GOOD, "bbox": [math.nan, 2, 3, 4]}, False),
    "1e300 box": ({**GOOD, "bbox": [1, 2, 1e300, 4]}, False),
    "a 31-digit integer in the box": ({**GOOD, "bbox": [1, 2, 10**30, 4]}, False),
    "unknown image": ({**GOOD, "image_id": 3}, False),
    "unknown category": ({**GOOD, "category_id": 2}, False),
    "negative image id": ({**GOOD, "image_id": -1}, False),
}
STRUCTURAL = {  # what the bulk check leaves to the per-record check from record 0
    "not a dict": "x",
    "no score": {k: v for k, v in GOOD.items() if k != "score"},
    "a bool image id": {**GOOD, "image_id": True},
    "a float image id": {**GOOD, "image_id": 1.0},
    "a string score": {**GOOD, "score": "0.5"},
    "a bool in the box": {**GOOD, "bbox": [1, 2, True, 4]},
    "a tuple box": {**GOOD, "bbox": (1, 2, 3, 4)},
    "a box of 3": {**GOOD, "bbox": [1, 2, 3]},
    "an image id beyond int64": {**GOOD, "image_id": 2**70},
}


@pytest.mark.parametrize("name", sorted(BULK_CASES))
def test_the_bulk_check_finds_the_first_bad_record(name):
    record, good = BULK_CASES[name]
    results = [GOOD, GOOD, record, GOOD]
    assert checked_prefix(results, SIZES, CATS) == (4 if good else 2)
    message = fast_check(results)
    assert message == reference_check(results)
    assert (message is None) == good
    if not good:
        assert message.startswith("p.json: record 2: ")


@pytest.mark.parametrize("name", sorted(STRUCTURAL))
def test_what_the_bulk_check_cannot_read_is_checked_record_by_record(name):
    results = [GOOD, GOOD, STRUCTURAL[name], GOOD]
    assert checked_prefix(results, SIZES, CATS) == 0
    message = fast_check(results)
    assert message == reference_check(results) and message.startswith("p.json: record 2")


def test_a_bad_record_deep_in_a_long_file_is_found_in_bulk():
    results = [{**GOOD, "score": (k % 100) / 100} for k in range(20_000)]
    results[19_999] = {**GOOD, "bbox": [1, 2, 50, 4]}
    assert checked_prefix(results, SIZES, CATS) == 19_999
    assert (
        fast_check(results)
        == "p.json: record 19999: bbox [1, 2, 50, 4] lies beyond its 40x30 image"
    )
    assert checked_prefix([], SIZES, CATS) == 0 and fast_check([]) is None
    assert checked_prefix(results[:100], SIZES, CATS) == 100


# -- the JSON parse ---------------------------------------------------------------------------


def same_value(a, b) -> bool:
    """Equal with the same types all the way down (1 is not 1.0, -0.0 is not 0.0, key order)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if type(a) is list:
        return len(a) == len(b) and all(map(same_value, a, b))
    if type(a) is dict:
        return list(a) == list(b) and all(same_value(a[k], b[k]) for k in a)
    return a == b


def outcome(parse, text: str, allow_nan: bool = False):
    try:
        return "value", parse(text, "f.json", error=DataError, allow_nan=allow_nan)
    except DataError as e:
        assert "\n" not in str(e)
        return "error", str(e)


def assert_same_outcome(text: str, allow_nan: bool = False) -> None:
    fast = outcome(loads_json, text, allow_nan)
    ref = outcome(_loads_checked, text, allow_nan)
    assert fast[0] == ref[0], (text[:200], fast, ref)
    assert same_value(fast[1], ref[1]) if fast[0] == "value" else fast[1] == ref[1]


@pytest.mark.skipif(json_fast.orjson is None, reason="orjson is not installed")
def test_the_fast_parse_takes_plain_json_and_leaves_the_rest():
    plain = '[{"image_id": 1, "bbox": [1.5, -0.0, 1e-7, 123456789012345678], "s": "\\u00e9 é"}]'
    assert json_fast.parse_plain(plain, MAX_DEPTH)[0]
    left = [
        "[1, 1234567890123456789]",  # 19 digits: orjson would give a float beyond int64
        '{"a": NaN}', "[1e999]", '["\\udc80"]', '["\\ud800"]', "[" * 65 + "]" * 65,
        '["\\ud83d\\ude00"]',  # a surrogate escape, even of a whole pair
        "[1,,2]", '"\x01"', "\ufeff[1]", "",
    ]  # fmt: skip
    for text in left:
        assert not json_fast.parse_plain(text, MAX_DEPTH)[0], text
    edge = ['["]]]]", ' + "[" * 63 + "]" * 63 + "]", '["\\"[[", ' + "[" * 64 + "]" * 64 + "]"]
    assert json_fast.parse_plain(edge[0], MAX_DEPTH)[0]
    assert not json_fast.parse_plain(edge[1], MAX_DEPTH)[0]  # 65 levels
    for text in [plain, *left, *edge, "[" * 64 + "]" * 64, '{"a": 1, "b": 2, "a": 3}', "-0", " 7 "]:
        assert_same_outcome(text)


def test_nesting_is_counted_on_the_text():
    def deeper(doc, limit: int) -> bool:
        texts = [json.dumps(doc).encode(), json.dumps(doc, ensure_ascii=False).encode()]
        (answer,) = {nested_deeper(t, limit) for t in texts}
        return answer

    assert not deeper(0, 2) and not deeper([], 1) and deeper([[]], 1) and not deeper([[]], 2)
    assert not deeper({"a": [1, {"b": 2}]}, 3) and deeper({"a": [1, {"b": []}]}, 3)
    # brackets inside strings, escaped quotes and backslashes are no nesting
    tricky = ["[[[{{", "\\", '"]]', '\\"[[', "é[", '\\\\"{{{{', "]]]]]", "}"]
    assert not deeper([tricky], 2) and deeper([[tricky]], 2)
    assert deeper([tricky, [[[]]]], 3) and not deeper([tricky, [[[]]]], 4)
    deep = []
    for _ in range(MAX_DEPTH - 1):
        deep = [1, {"k": deep, "s": "]}"}]
    assert not deeper(deep, 2 * MAX_DEPTH - 1) and deeper(deep, 2 * MAX_DEPTH - 2)


def test_without_orjson_the_checked_parse_alone(monkeypatch):
    monkeypatch.setattr(json_fast, "orjson", None)
    assert loads_json('{"a": [1, 2.5]}', "f") == {"a": [1, 2.5]}
    with pytest.raises(DataError, match=r"^f: at a\[1\]: NaN is not a JSON number$"):
        loads_json('{"a": [1, NaN]}', "f")


def test_the_garbage_collector_is_restored():
    assert gc.isenabled()
    with contextlib.suppress(ValueError), paused_gc():
        assert not gc.isenabled()
        raise ValueError
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


NUMBER_TEXT = st.from_regex(r"\A-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?\Z")
SNIPPETS = ["NaN", "-Infinity", "1e400", "12345678901234567890", "[" * 70, "\\ud800", "\\udfff",
            "\x01", "\x7f", "\t", ",", '"', "\\", "-0", "1.0e+308", "9223372036854775808", "é",
            "\u2028", "\ufeff", "{}", "]", "null", "tru"]  # fmt: skip


@fuzz_settings(share=4)
@given(
    doc=values,
    number=NUMBER_TEXT,
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
    snippet=st.sampled_from(["", *SNIPPETS]),
    where=st.floats(0, 1),
    allow_nan=st.booleans(),
)
@example(doc=[], number="0.1", ascii_only=True, indent=None, snippet="", where=0, allow_nan=False)
def test_the_fast_parse_gives_the_checked_parse_value_or_error(
    doc, number, ascii_only, indent, snippet, where, allow_nan
):
    text = json.dumps([doc, number], ensure_ascii=ascii_only, indent=indent)
    text = text.replace(f'"{number}"', number, 1)  # the number as a literal
    cut = round(len(text) * where)
    assert_same_outcome(text[:cut] + snippet + text[cut:], allow_nan)
    assert_same_outcome(text, allow_nan)


# -- the whole path: file, check, COCOeval ---------------------------------------------------

GT = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
               {"id": 2, "file_name": "b.jpg", "width": 400, "height": 300}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 12], "area": 120, "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 3, "bbox": [50, 60, 100, 80], "area": 8000, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 30, 20], "area": 600, "iscrowd": 1},
    ],
    "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}],
}  # fmt: skip


def old_numbers(coco, results, accumulated=None):
    """The 12 numbers and per-class AP by faster-coco-eval through loadRes (before
    result_index), as coco_box_metrics lays them out."""
    original = coco_backends.result_index
    coco_backends.result_index = lambda module, gt, res: gt.loadRes(_copies(res, "bbox"))
    try:
        return coco_box_metrics(coco, results, [1, 2] if accumulated is None else None,
                                accumulated=accumulated)  # fmt: skip
    finally:
        coco_backends.result_index = original


def same_numbers(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a
    )


FIELD_VALUES = st.one_of(
    st.sampled_from(BIG_INTS + ODD_FLOATS), st.floats(-10, 450), st.integers(-5, 5), values
)
records = st.lists(
    st.fixed_dictionaries(
        {"image_id": st.sampled_from([1, 2]), "category_id": st.sampled_from([1, 3]),
         "bbox": st.tuples(st.floats(0, 30), st.floats(0, 20), st.floats(0, 10),
                           st.floats(0, 10)).map(list),
         "score": st.floats(0, 1)}
    ),
    min_size=1, max_size=30,
)  # fmt: skip
edits = st.lists(
    st.tuples(
        st.integers(0, 29),
        st.sampled_from(["image_id", "category_id", "bbox", "score", "bbox0", "bbox2", "drop"]),
        FIELD_VALUES,
    ),
    max_size=3,
)


def apply(results, changes):
    results = copy.deepcopy(results)
    for k, field, value in changes:
        r = results[k % len(results)]
        if field == "drop":
            r.pop("score", None)
        elif field.startswith("bbox") and field != "bbox":
            if isinstance(r.get("bbox"), list) and len(r["bbox"]) == 4:
                r["bbox"][int(field[-1])] = value
        else:
            r[field] = value
    return results


@pytest.mark.skipif(faster_coco_eval() is None, reason="faster-coco-eval is not installed")
@fuzz_settings(share=2)
@given(results=records, changes=edits)
@example(results=[GOOD], changes=[(0, "bbox2", 10**30)])
@example(results=[GOOD], changes=[(0, "score", float("nan"))])
@example(results=[GOOD, GOOD], changes=[(1, "image_id", 2**64)])
def test_hostile_records_give_one_line_errors_or_the_old_numbers(
    tmp_path_factory, results, changes
):
    results = apply(results, changes)
    path = tmp_path_factory.mktemp("p") / "p.json"
    path.write_text(json.dumps(results))
    text = path.read_text()
    old = outcome(_loads_checked, text)
    new = outcome(loads_json, text)
    assert old[0] == new[0] and (
        same_value(old[1], new[1]) if old[0] == "value" else old[1] == new[1]
    )
    if new[0] == "error":
        return
    message = fast_check(new[1], str(path))
    assert message == reference_check(old[1], str(path))
    if message is None:
        coco = coco_index(copy.deepcopy(GT))
        assert same_numbers(coco_box_metrics(coco, new[1], [1, 2]), old_numbers(coco, old[1]))


@pytest.mark.skipif(faster_coco_eval() is None, reason="faster-coco-eval is not installed")
@pytest.mark.parametrize("seed", range(3))
def test_the_result_index_gives_loadres_numbers_bit_for_bit(seed):
    gt, results = load_script("benchmarks/coco_eval_speed.py").random_case(
        seed, 24, 120, 50, [3, 7, 8, 15, 42, 77, 90, 91], crowd=0.08
    )
    coco = coco_index(gt)
    before = [dict(r) for r in results]
    new, old = {}, {}
    numbers = coco_box_metrics(coco, results, None, accumulated=new)
    assert results == before  # left as they were
    module = faster_coco_eval()
    loaded = coco_backends._FAST_INDEX[coco].loadRes(_copies(results, "bbox"))
    dt = result_index(module, coco_backends._FAST_INDEX[coco], results)
    assert [a["id"] for a in dt.dataset["annotations"]] == [
        a["id"] for a in loaded.dataset["annotations"]
    ]
    assert dt.imgToAnns.keys() == loaded.imgToAnns.keys() and dt.catToImgs == loaded.catToImgs
    assert same_numbers(numbers, old_numbers(coco, results, old))
    assert np.array_equal(new["precision"], old["precision"]) and new["cat_ids"] == old["cat_ids"]
    with pytest.raises(ValueError, match="images the ground truth does not have"):
        result_index(module, coco_backends._FAST_INDEX[coco], [{**results[0], "image_id": 10**6}])


def test_end_to_end_benchmark_smoke_run(tmp_path):
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "eval_end_to_end.py"), "--scale", "0.004",
         "--repeats", "1", "--workdir", str(tmp_path)],
        capture_output=True, text=True, cwd=root, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("command: python benchmarks/eval_end_to_end.py --scale 0.004")
    assert lines[1].startswith("case: 20 images, 144 objects, ")
    table = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln.startswith("|")]
    assert table[0] == ["backend", "seconds (median)", "runs", "speed-up over pycocotools"]
    assert [r[0] for r in table[2:4]] == ["pycocotools", "faster-coco-eval"]
    assert table[2][3] == "1.00x"
    assert "the 12 numbers and per-class AP equal to 1e-6: yes" in lines[8]
    stages = [r[0] for r in table[4:]]
    assert "predictions: read and parse the JSON" in stages and stages[-1] == "total"
    assert "predictions: check every record" in stages and "COCOeval: evaluate" in stages
    assert (tmp_path / "predictions.json").is_file() and not any((tmp_path / "val2017").iterdir())
