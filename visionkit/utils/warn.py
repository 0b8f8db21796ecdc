"""Warnings: one ``warning: ...`` line each on stderr (above any progress bar), counted so that a
tool's end-of-run summary can say how many there were."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

_count = 0


def warn(message: str) -> None:
    """Print ``warning: <message>`` as one line and count it."""
    global _count
    _count += 1
    text = " ".join(str(message).split())  # one line, whatever the message holds
    tqdm.write(f"warning: {text}", file=sys.stderr)


def warning_count() -> int:
    """Warnings printed by this process so far (:func:`warn` and Python warnings once
    :func:`show_warning` is installed, as ``run_cli`` does)."""
    return _count


def warnings_part() -> str:
    """``"; 3 warnings (above)"`` for a summary line, or ``""`` when there were none."""
    n = warning_count()
    return f"; {n} warning{'' if n == 1 else 's'} (above)" if n else ""


def show_warning(
    message: Warning | str,
    category: type,
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A ``warnings.showwarning`` hook: a Python warning (a dataset's dropped boxes, a library's
    deprecation) becomes one counted :func:`warn` line, not two lines with a source path."""
    warn(str(message))
