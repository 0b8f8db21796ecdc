"""Hypothesis strategies of hostile input: values around the config schema, YAML/JSON/XML text
attacks (alias bombs, recursive aliases, invalid UTF-8/UTF-16, deep nesting, 5000-digit
numbers, torn files), dotted overrides, COCO/prediction/metrics records and their edits."""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from typing import Any, Literal, get_args, get_origin

import yaml
from hypothesis import strategies as st

from visionkit.config.schema import Config

BIG_INTS = [0, -1, 1, 2, 3, 7, 255, 2**31, -(2**31), 2**63, 10**20, 10**30, -(10**30)]
ODD_FLOATS = [
    float("nan"), float("inf"), float("-inf"), 1e300, -1e300, 1e-300, -0.0, 0.5, 1.5, -0.5, 1e20,
]  # fmt: skip
ODD_TEXT = [
    "", " ", "nan", "tpu", "cuda:99", "../../etc/passwd", "/proc/self/mem", "a" * 5000, "ä☃\u202e",
    "\x00", "~", "-1", "[]", "{}", "C:\\x", "${HOME}", "%s%n",
]  # fmt: skip

scalars = st.one_of(
    st.sampled_from(BIG_INTS),
    st.integers(),
    st.sampled_from(ODD_FLOATS),
    st.floats(),
    st.sampled_from(ODD_TEXT),
    st.text(st.characters(exclude_characters="/\\"), max_size=12),  # no path of the machine
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def deep(depth: int, leaf: Any = 0) -> Any:
    """``[[[...leaf...]]]`` nested ``depth`` deep."""
    out = leaf
    for _ in range(depth):
        out = [out]
    return out


def schema_fields(cls: type = Config, prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf field of the typed config as (dotted key, type)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            out += schema_fields(tp, key + ".")
        else:
            out.append((key, tp))
    return out


FIELDS = schema_fields()
KEYS = [k for k, _ in FIELDS]
SECTIONS = sorted({k.rsplit(".", 1)[0] for k in KEYS})


def near(tp: Any) -> st.SearchStrategy:
    """Values around a field's type: its boundaries and beyond, other types, odd text."""
    origin = get_origin(tp)
    if tp is bool:
        base = st.sampled_from([True, False, "yes", 2, None])
    elif tp is int:
        base = st.sampled_from(BIG_INTS) | st.integers(-(10**6), 10**6)
    elif tp is float:
        base = st.sampled_from(ODD_FLOATS + BIG_INTS) | st.floats()
    elif origin is Literal:
        base = st.sampled_from(list(get_args(tp))) | st.sampled_from(ODD_TEXT)
    elif origin is list:
        (item,) = get_args(tp)
        base = st.lists(near(item), max_size=6)
    else:
        base = st.sampled_from(ODD_TEXT)
    return st.one_of(base, base, values)


def _field_edit(pair: tuple[str, Any]) -> st.SearchStrategy:
    return near(pair[1]).map(lambda v: (pair[0], v))


config_edits = st.lists(
    st.one_of(
        st.sampled_from(FIELDS).flatmap(_field_edit),
        st.tuples(st.sampled_from(SECTIONS).map(lambda s: f"{s}.unknown_key"), values),
        st.tuples(st.sampled_from(["model", "data", "train", "eval", "base", "nonsense"]), values),
    ),
    min_size=0,
    max_size=4,
)

ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
TEXT_ATTACKS = [
    "none",
    "alias_bomb_unknown",
    "alias_bomb_known",
    "recursive_alias",
    "invalid_utf8",
    "utf16",
    "bom",
    "nul",
    "long_number",
    "deep",
    "python_tag",
    "truncate",
    "tabs",
]
text_attacks = st.sampled_from(TEXT_ATTACKS)


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """``tree[a][b][c] = value`` for ``key`` ``a.b.c``; a non-dict on the way is replaced."""
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def attack_text(text: str, attack: str, where: float = 0.5, kind: str = "yaml") -> bytes:
    """``text`` with one text-level attack applied, as the bytes of a file; ``where`` in
    [0, 1] places cuts and insertions."""
    cut = int(len(text) * where)
    if attack == "invalid_utf8":
        data = text.encode()
        return data[:cut] + b"\xff\xfe\xc3(" + data[cut:]
    if attack == "utf16":
        return text.encode("utf-16")
    if attack == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if attack == "nul":
        return text[:cut].encode() + b"\x00" + text[cut:].encode()
    if attack == "truncate":
        return text[:cut].encode()
    if kind == "json":
        if attack == "deep":
            return ("[" * 100_000 + "]" * 100_000).encode()
        if attack == "long_number":
            return ("[" + "9" * 5000 + "]").encode()
        return text.encode()
    if attack == "alias_bomb_unknown":
        return (ALIAS_BOMB.replace("\n", "\n  ").join(["junk:\n  ", "\n"]) + text).encode()
    if attack == "alias_bomb_known":
        return (text + "\n" + ALIAS_BOMB.replace("a:", "model:", 1)).encode()
    if attack == "recursive_alias":
        return (text + "\nextra: &r [*r]\n").encode()
    if attack == "long_number":
        return (text + f"\ntrain:\n  epochs: {'9' * 5000}\n").encode()
    if attack == "deep":
        return (text + "\nmodel:\n  input_size: " + "[" * 5000 + "]" * 5000 + "\n").encode()
    if attack == "python_tag":
        return (text + "\nmodel:\n  name: !!python/object/apply:builtins.len [[1]]\n").encode()
    if attack == "tabs":
        return text.replace("  ", "\t").encode()
    return text.encode()


def render_config(
    base: dict[str, Any], edits: list[tuple[str, Any]], attack: str, where: float
) -> bytes:
    """The config file: ``base`` with ``edits`` applied, dumped as YAML, then ``attack``."""
    tree = copy.deepcopy(base)
    for key, value in edits:
        set_dotted(tree, key, value)
    text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)
    return attack_text(text, attack, where)


OVERRIDE_VALUES = [
    "nan", "inf", "-inf", "-1", "0", "1e20", "1e999", "[1,2", "{", "&a [*a]", "[*a]", "~", "''",
    "!!python/object/apply:builtins.len [[1]]", "[" * 300 + "]" * 300, "9" * 5000, "[7,7]",
    "[0,0]", "[-64,64]", "[1e9,1e9]", "tpu", "yes", "0x10", "1_000", ".5", "[a, b]",
]  # fmt: skip
override_keys = st.one_of(
    st.sampled_from(KEYS),
    st.sampled_from(["", ".", "model..name", "x" * 300, "model.name.sub", "=", " train.epochs"]),
    st.text(max_size=10),
)
override_values = st.one_of(
    st.sampled_from(OVERRIDE_VALUES),
    st.text(st.characters(exclude_characters="/\\"), max_size=10),
    values.map(json.dumps),
)
overrides = st.lists(
    st.one_of(
        st.tuples(override_keys, override_values).map(lambda kv: f"{kv[0]}={kv[1]}"),
        st.sampled_from(["noequals", "model.name", "=1"]),
    ),
    max_size=4,
)

# edits of a JSON document: (path of keys/indices, value); a value of DELETE removes the key
DELETE = "<delete>"


def json_edit(paths: list[list[Any]], value_strategy: st.SearchStrategy) -> st.SearchStrategy:
    """One edit at one of ``paths`` (lists of keys and indices) with a value or DELETE."""
    return st.tuples(st.sampled_from(paths), st.one_of(value_strategy, st.just(DELETE)))


def apply_json_edits(doc: Any, edits: list[tuple[list[Any], Any]]) -> Any:
    """A copy of ``doc`` with each edit applied where its path still exists."""
    doc = copy.deepcopy(doc)
    for path, value in edits:
        if not path:
            doc = value
            continue
        node = doc
        try:
            for p in path[:-1]:
                node = node[p]
            if value == DELETE:
                del node[path[-1]]
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    return doc


def json_bytes(doc: Any, attack: str, where: float) -> bytes:
    """``doc`` as JSON text (NaN and Infinity as Python writes them), then ``attack``."""
    return attack_text(json.dumps(doc), attack, where, kind="json")


numbers = st.one_of(st.sampled_from(ODD_FLOATS + BIG_INTS), st.floats(-100, 200))
fractions = st.floats(0, 1)
