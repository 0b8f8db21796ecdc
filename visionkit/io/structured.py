"""The one reader of every structured file: YAML configs, JSON (COCO instances, prediction files,
ONNX metadata), JSONL (``metrics.jsonl``) and XML (Pascal VOC annotations).

Whatever a file holds, the reader returns plain Python values or raises the caller's
:class:`~visionkit.errors.VisionkitError` subclass with one line naming the file and the
position: text that is not UTF-8 (or is UTF-16), a file beyond a size limit, nesting deeper than
:data:`MAX_DEPTH`, an integer of more than :data:`MAX_INT_DIGITS` digits, NaN or an infinite
number, a syntax error (line and column), YAML aliases that refer to themselves or expand beyond
:data:`MAX_YAML_NODES` (checked on the node graph, before anything is expanded), XML entity
declarations (entity bombs, external entities). What the values mean (ranges of ids, boxes
within their image) is checked by the readers of each format.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET
from xml.parsers import expat

import yaml

from visionkit.errors import ConfigError, DataError, VisionkitError
from visionkit.io.heap import paused_gc
from visionkit.io.json_fast import parse_plain

# Data files (COCO's train2017 instances: 450 MB, LVIS's: 1.1 GB) are read whole; beyond this a
# file is not one of them.
MAX_TEXT_BYTES = 4 << 30
# A YAML config is a few KB; this is far beyond any, and bounds the pure-Python YAML scanner.
MAX_YAML_BYTES = 1 << 20
# Nesting of lists/mappings (XML: elements). The formats read need 6 at most (a COCO polygon);
# the limit keeps every recursive consumer (config merging, repr in messages) far from Python's.
MAX_DEPTH = 64
# Digits of an integer literal (int64 ids need 19); Python refuses 4,300 and converts long ones in
# quadratic time.
MAX_INT_DIGITS = 100
# Nodes a YAML document may expand to, its aliases followed (a config has a few hundred): an
# alias bomb (9 levels of 9 aliases: 387 million) is refused before it is expanded.
MAX_YAML_NODES = 100_000

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a JSON escape of half a UTF-16 pair
_PLAIN_KEY = re.compile(r"[\w/\-]+")  # a key shown as is in a value's path (``bbox/AP50``)


def read_bytes(
    path: str | Path, *, error: type[VisionkitError] = DataError, max_bytes: int = MAX_TEXT_BYTES
) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them (a larger file is
    refused by its size before reading, and by what was read if it grew meanwhile).

    Raises:
        error: unreadable (missing, a folder, a pipe, no permission) or too large.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a pipe that would block the read
        raise error(f"cannot read {path}: not a regular file")
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size > max_bytes:
                raise error(f"{path}: larger than the {max_bytes:,} bytes read from such a file")
            # read() with no size: a size asks for a buffer that large up front (4 GiB)
            data = f.read()
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    if len(data) > max_bytes:
        raise error(f"{path}: larger than the {max_bytes:,} bytes read from such a file")
    return data


def decode_text(data: bytes, where: str, *, error: type[VisionkitError] = DataError) -> str:
    """``data`` as strict UTF-8 text (a UTF-8 byte-order mark dropped).

    Raises:
        error: UTF-16 text, NUL bytes, or bytes that are not UTF-8, naming the byte offset.
    """
    if data.startswith(_UTF16_BOMS):
        raise error(f"{where}: UTF-16 text; save it as UTF-8")
    data = data.removeprefix(_UTF8_BOM)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise error(f"{where}: a NUL byte at byte {nul} (UTF-16 or binary?); give UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{where}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def read_text(
    path: str | Path, *, error: type[VisionkitError] = DataError, max_bytes: int = MAX_TEXT_BYTES
) -> str:
    """The UTF-8 text of ``path`` (:func:`read_bytes`, :func:`decode_text`)."""
    return decode_text(read_bytes(path, error=error, max_bytes=max_bytes), str(path), error=error)


class _Refused:
    """A JSON literal the parser hooks refused (NaN, Infinity, a too long integer)."""

    def __init__(self, token: str) -> None:
        self.token = token


def _refuse_long_int(token: str) -> int | _Refused:
    return _Refused(token) if len(token.lstrip("-")) > MAX_INT_DIGITS else int(token)


def loads_json(
    text: str, where: str, *, error: type[VisionkitError] = DataError, allow_nan: bool = False
) -> Any:
    """The value of one JSON document ``text`` (``where`` names it in messages).

    ``allow_nan``: take NaN and Infinity (what Python's ``json.dumps`` writes for them, as in a
    ``metrics.jsonl``: an undefined AP is NaN) as floats, not refuse them.

    Raises:
        error: a syntax error (line and column); nesting deeper than :data:`MAX_DEPTH`; NaN,
            Infinity or a number that overflows to it (unless ``allow_nan``); an integer longer
            than :data:`MAX_INT_DIGITS` digits (each naming the path to the value,
            ``[3].bbox[0]``).

    Parsed by orjson first where installed (:func:`~visionkit.io.json_fast.parse_plain`), when
    that gives the same value; by Python's ``json`` with every check otherwise.
    """
    with paused_gc():  # a large document's containers hold no cycles
        plain, value = parse_plain(text, MAX_DEPTH)
        return value if plain else _loads_checked(text, where, error, allow_nan)


def _loads_checked(text: str, where: str, error: type[VisionkitError], allow_nan: bool) -> Any:
    """:func:`loads_json` by Python's ``json``, a hook on every integer and constant, then a walk
    over every value (the reference the fast parse is held to)."""
    constant = float if allow_nan else _Refused
    try:
        value = json.loads(text, parse_int=_refuse_long_int, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise error(
            f"{where}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None
    except RecursionError:
        raise error(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    bad = _first_problem(value, _is_refused if allow_nan else _is_bad_number)
    if bad is None and _SURROGATE_ESCAPE.search(text):
        bad = _lone_surrogate(value)
    if bad is not None:
        raise error(f"{where}: at {_short(bad[0])}: {bad[1]}")
    return value


def _short(path: str) -> str:
    """A value's path for a message: ``the top level`` or at most 60 characters of it."""
    return "the top level" if not path else path if len(path) <= 60 else path[:57] + "..."


def _is_refused(v: Any) -> bool:
    return type(v) is _Refused


def _is_bad_number(v: Any) -> bool:
    return type(v) is _Refused or (type(v) is float and not math.isfinite(v))


def _first_problem(value: Any, is_bad: Callable[[Any], bool]) -> tuple[str, str] | None:
    """``(path, problem)`` of the first value (document order) of a parsed JSON value nested
    deeper than :data:`MAX_DEPTH` or that ``is_bad`` (a refused literal, a non-finite float), or
    None. Iterative: a stack of ``(key, iterator over the container's items)``."""
    if is_bad(value):
        return "", _number_problem(value)
    if type(value) is not dict and type(value) is not list:
        return None
    stack: list[tuple[Any, Any]] = [(None, _items(value))]
    while stack:
        for k, v in stack[-1][1]:
            if type(v) is dict or type(v) is list:
                if len(stack) >= MAX_DEPTH:
                    return _path(stack, k), f"nested deeper than {MAX_DEPTH} levels"
                stack.append((k, _items(v)))
                break
            if is_bad(v):
                return _path(stack, k), _number_problem(v)
        else:
            stack.pop()
    return None


def _items(node: dict | list) -> Any:
    return iter(node.items()) if type(node) is dict else enumerate(node)


def _path(stack: list[tuple[Any, Any]], key: Any) -> str:
    """``a.b[2]``: the keys of the containers on ``stack`` (the top one's first), then ``key``."""
    keys = [k for k, _ in stack[1:]] + [key]
    return "".join(map(_step, keys)).lstrip(".")


def _step(key: Any) -> str:
    """One step of a value's path: ``.name`` for a plain key, ``['a b\\n']`` for another
    (escaped: a message is one line), ``[3]`` for a list index."""
    if type(key) is str:
        return f".{key}" if _PLAIN_KEY.fullmatch(key) else f"[{key!r}]"
    return f"[{key}]"


def _lone_surrogate(value: Any) -> tuple[str, str] | None:
    """``(path, problem)`` of the first string (or mapping key) holding half of a UTF-16
    surrogate pair (``"\\ud800"``: text no file or terminal can take), or None."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return path.lstrip("."), "half of a UTF-16 surrogate pair (not text)"
        elif isinstance(node, dict):
            stack.extend((k, f"{path}{_step(k)} (the key)") for k in node)
            stack.extend((v, f"{path}{_step(k)}") for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
    return None


def _number_problem(v: Any) -> str:
    if type(v) is float:
        return "a number beyond a double's range"
    if v.token.lstrip("-").isdigit():
        return f"an integer of {len(v.token.lstrip('-'))} digits (at most {MAX_INT_DIGITS})"
    return f"{v.token} is not a JSON number"


def read_json(
    path: str | Path, *, error: type[VisionkitError] = DataError, max_bytes: int = MAX_TEXT_BYTES
) -> Any:
    """The JSON value in ``path`` (:func:`read_text`, :func:`loads_json`)."""
    return loads_json(read_text(path, error=error, max_bytes=max_bytes), str(path), error=error)


def read_jsonl(
    path: str | Path,
    *,
    error: type[VisionkitError] = DataError,
    check: Callable[[Any], str | None] | None = None,
    allow_nan: bool = False,
) -> list[Any]:
    """The values of a JSON Lines file, one per non-blank line (:func:`loads_json`, with
    ``allow_nan``); ``check`` says what is wrong with a value that parsed (None: nothing).

    A torn or garbage last line (a writer killed mid-line) is skipped with a warning.

    Raises:
        error: an unreadable or refused line before the last (``<file>:<line>: ...``), an
            unreadable file.
    """
    lines = read_bytes(path, error=error).split(b"\n")
    numbered = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
    values = []
    for i, line in numbered:
        where = f"{path}:{i}"
        try:
            text = decode_text(line, where, error=error)
            value = loads_json(text, where, error=error, allow_nan=allow_nan)
            problem = check(value) if check is not None else None
            if problem:
                raise error(f"{where}: {problem}")
        except VisionkitError as e:
            if i != numbered[-1][0]:
                raise
            warnings.warn(f"skipped a torn last line: {e}", stacklevel=2)
            continue
        values.append(value)
    return values


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loading, with integers bounded (:data:`MAX_INT_DIGITS`), flow collections
    (``[[[...]]]``) nested at most :data:`MAX_DEPTH` deep while scanning, and a value that
    cannot be converted (a timestamp of month 13) reported at its node, as every YAML error."""

    def fetch_flow_collection_start(self, TokenClass: type) -> None:  # noqa: N803 (PyYAML's)
        # PyYAML's scanner revisits every open flow level per token: 5,000 nested brackets
        # take minutes before the composer could see their depth
        if self.flow_level >= MAX_DEPTH:
            raise yaml.scanner.ScannerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", self.get_mark()
            )
        super().fetch_flow_collection_start(TokenClass)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as e:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read the value ({e})", node.start_mark
            ) from None

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int:
        digits = len(str(node.value).lstrip("+-"))
        if digits > MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {digits} digits (at most {MAX_INT_DIGITS})",
                node.start_mark,
            )  # fmt: skip
        return self.construct_yaml_int(node)


_SafeLoader.add_constructor("tag:yaml.org,2002:int", _SafeLoader.construct_bounded_int)


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _yaml_message(e: yaml.YAMLError) -> str:
    """``at <position>: <problem>`` of a YAML error, on one line."""
    if isinstance(e, yaml.reader.ReaderError):
        return f"at character {e.position}: character {e.character:#x} is not allowed"
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "unreadable"
        return f"at {_at(mark)}: {problem}" if mark else f"({problem})"
    return f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_yaml_graph(root: yaml.Node, where: str, error: type[VisionkitError]) -> None:
    """Refuse a composed document whose aliases refer to a node holding them, that expands to
    more than :data:`MAX_YAML_NODES` nodes or nests deeper than :data:`MAX_DEPTH` once its
    aliases are followed. Iterative, each node visited once (an alias is the node it names)."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    open_nodes: set[int] = set()  # the nodes whose expansion the walk is inside
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key, kids = id(node), _yaml_children(node)
        if done:
            open_nodes.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            height[key] = 1 + max((height[id(k)] for k in kids), default=0)
            if size[key] > MAX_YAML_NODES:
                raise error(
                    f"{where}: the value at {_at(node.start_mark)} expands to more than "
                    f"{MAX_YAML_NODES:,} values (an alias bomb?)"
                )
            continue
        if key in open_nodes:
            raise error(f"{where}: the alias at {_at(node.start_mark)} contains itself")
        if depth + height.get(key, 1) - 1 > MAX_DEPTH:
            raise error(f"{where}: nested deeper than {MAX_DEPTH} levels at {_at(node.start_mark)}")
        if key in size:
            continue
        open_nodes.add(key)
        stack.append((node, depth, True))
        stack.extend((k, depth + 1, False) for k in kids)


def loads_yaml(text: str, where: str, *, error: type[VisionkitError] = ConfigError) -> Any:
    """The value of one YAML document ``text`` (safe loading: plain data, no objects).

    Raises:
        error: a syntax error (line and column), more than :data:`MAX_YAML_BYTES`, aliases
            that refer to themselves or expand to more than :data:`MAX_YAML_NODES` values or
            deeper than :data:`MAX_DEPTH` (checked before anything is expanded), an integer
            longer than :data:`MAX_INT_DIGITS` digits, text that is not UTF-8.
    """
    if len(text) > MAX_YAML_BYTES:
        raise error(f"{where}: longer than the {MAX_YAML_BYTES:,} characters a YAML file may hold")
    loader = None
    try:
        loader = _SafeLoader(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_graph(node, where, error)
        value = loader.construct_document(node)
    except yaml.YAMLError as e:
        message = " ".join(_yaml_message(e).split())  # one line, whatever the value held
        raise error(f"{where}: not valid YAML {message}") from None
    except RecursionError:
        raise error(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    finally:
        if loader is not None:
            loader.dispose()
    bad = _lone_surrogate(value)
    if bad is not None:
        raise error(f"{where}: at {_short(bad[0])}: {bad[1]}")
    return value


def read_yaml(path: str | Path, *, error: type[VisionkitError] = ConfigError) -> Any:
    """The YAML value in ``path`` (:func:`read_text` capped at :data:`MAX_YAML_BYTES`,
    :func:`loads_yaml`)."""
    text = read_text(path, error=error, max_bytes=MAX_YAML_BYTES)
    return loads_yaml(text, str(path), error=error)


class _XMLRefused(Exception):
    """An XML construct refused while parsing (raised from an expat handler)."""


def _refuse_entity(*args: Any) -> None:
    raise _XMLRefused("an entity declaration (entity bombs and external entities are refused)")


def read_xml(path: str | Path, *, error: type[VisionkitError] = DataError) -> ET.Element:
    """The root element of the XML file ``path``, parsed by expat into an ElementTree; no
    entity may be declared (no entity bomb, no external entity is ever expanded) and elements
    nest at most :data:`MAX_DEPTH` deep. The encoding is the file's own declaration's (UTF-8 by
    default).

    Raises:
        error: unreadable or too large, not well-formed XML, an entity declaration, too deep
            (line and column).
    """
    data = read_bytes(path, error=error)
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    depth = 0

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_DEPTH:
            raise _XMLRefused(f"elements nested deeper than {MAX_DEPTH} levels")
        builder.start(tag, attrs)

    def end(tag: str) -> None:
        nonlocal depth
        depth -= 1
        builder.end(tag)

    parser.buffer_text = True
    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = builder.data
    parser.EntityDeclHandler = parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_entity
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        problem = expat.ErrorString(e.code)
        raise error(
            f"{path}: not valid XML at line {e.lineno}, column {e.offset + 1}: {problem}"
        ) from None
    except _XMLRefused as e:
        position = f"line {parser.CurrentLineNumber}, column {parser.CurrentColumnNumber + 1}"
        raise error(f"{path}: {e} at {position}") from None
    return builder.close()
