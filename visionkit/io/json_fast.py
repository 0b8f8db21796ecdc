"""The fast first try of :func:`visionkit.io.structured.loads_json`: a JSON document parsed by
orjson (when installed: ``pip install orjson``, the ``fast`` extra), kept only when bulk checks
show it is the very value the checked parse (Python's ``json`` with hooks on every number, then
a walk over every value) would return; anything else, every refusal included, is left to that
parse, which gives the value or the one-line error.

orjson refuses NaN, Infinity, numbers that overflow a double, lone surrogate escapes, control
characters in strings and nesting beyond 1,024 levels, as the checked parse does (naming the
position). What it reads otherwise: an integer beyond int64 (uint64) becomes a float where
``json`` keeps the exact int, so text with a run of :data:`MAX_PLAIN_DIGITS` + 1 digits or more is
left to the checked parse; and the nesting limit is :data:`~visionkit.io.structured.MAX_DEPTH`,
counted on the text.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

try:
    import orjson
except ImportError:  # the checked parse alone
    orjson = None

# The longest run of digits the fast parse takes: an integer of 18 digits is within int64, read
# exactly by both parsers; a float's digits are correctly rounded by both.
MAX_PLAIN_DIGITS = 18
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * (MAX_PLAIN_DIGITS + 1)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # a JSON escape of half a UTF-16 pair
_ESCAPE = re.compile(rb"\\.", re.DOTALL)  # an escape in a JSON string: backslash and one character
_NOT_MARKS = bytes(b for b in range(256) if b not in b'[]{}"')
_OPENS = np.frombuffer(b"[{", np.uint8)
_CLOSES = np.frombuffer(b"]}", np.uint8)


def parse_plain(text: str, max_depth: int) -> tuple[bool, Any]:
    """``(True, value)`` when orjson parses ``text`` to the value the checked parse would
    return (no integer beyond :data:`MAX_PLAIN_DIGITS` digits, no surrogate escape, nesting at
    most ``max_depth`` levels); ``(False, None)`` otherwise, or without orjson."""
    if orjson is None:
        return False, None
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a str holding a surrogate: the checked parse names it
        return False, None
    if _LONG_RUN in data.translate(_DIGITS_TO_ZERO) or _SURROGATE_ESCAPE.search(data):
        return False, None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False, None
    if nested_deeper(data, max_depth):
        return False, None
    return True, value


def nested_deeper(data: bytes, max_depth: int) -> bool:
    """Whether lists and objects nest more than ``max_depth`` levels (a top-level one is level
    1) in ``data``, the UTF-8 text of a valid JSON document, counted on the text in bulk: its
    escapes dropped (a backslash and the character after it; what is left of ``\\uXXXX`` is
    hex digits), only the brackets and quotes kept, then the running count of the brackets
    outside strings (after an even number of quotes)."""
    if b"\\" in data:
        data = _ESCAPE.sub(b"", data)
    marks = np.frombuffer(data.translate(None, _NOT_MARKS), np.uint8)
    if len(marks) <= max_depth:
        return False
    outside = (np.cumsum(marks == ord('"'), dtype=np.int64) & 1) == 0
    step = np.isin(marks, _OPENS).astype(np.int32) - np.isin(marks, _CLOSES)
    return int(np.cumsum(step * outside, dtype=np.int32).max()) > max_depth
