"""What every command-line tool shares: argument parsing conventions and one-line errors."""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO, TypeVar

from visionkit.errors import ConfigError, VisionkitError
from visionkit.utils.warn import show_warning


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's examples as written and shows defaults."""


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run ``main``; user errors become one line on stderr and a non-zero exit, no traceback;
    Python warnings (a dataset's dropped boxes, ...) one counted ``warning: ...`` line each
    (:mod:`visionkit.utils.warn`)."""
    warnings.showwarning = show_warning
    try:
        code = main(argv)
    except VisionkitError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def one_line(error: VisionkitError) -> str:
    """The error's message on one line.

    An error raised in a DataLoader worker is re-raised in the main process with the worker's
    traceback in its message; its last line holds the original message after the class name.
    """
    lines = [ln for ln in str(error).strip().splitlines() if ln.strip()] or [type(error).__name__]
    last = lines[-1]
    prefix = f"{type(error).__module__}.{type(error).__name__}: "
    return last[len(prefix) :] if last.startswith(prefix) else last


def show_progress(no_progress: bool) -> bool:
    """Progress bars only on a terminal: redrawn bars in a log file are hundreds of lines per
    epoch, so when stderr is a file or a pipe the tools print their plain per-epoch lines only."""
    return not no_progress and sys.stderr.isatty()


T = TypeVar("T")
PLAIN_STEPS = 4  # without a bar: a line at each quarter


def track(
    items: Iterable[T],
    total: int,
    desc: str,
    progress: bool = True,
    unit: str = "items",
    out: TextIO | None = None,
) -> Iterator[T]:
    """``items`` (``total`` of them) with their progress shown: a tqdm bar on stderr when
    ``progress`` is wanted and stderr is a terminal; else a few plain lines on ``out`` (default
    stdout, where the tools' other lines go), never a carriage return: ``"<desc>: <total>
    <unit> ..."`` at the start, ``"<desc>: <i>/<total> <unit>"`` at each quarter and
    ``"<desc>: done, <total> <unit> in <s> s"`` at the end (none when the loop stops early)."""
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=desc, unit=unit.rstrip("s"), leave=False)
        return
    out = out or sys.stdout
    start = time.perf_counter()
    print(f"{desc}: {total} {unit} ...", file=out, flush=True)
    marks = {total * k // PLAIN_STEPS for k in range(1, PLAIN_STEPS)} - {0, total}
    for done, item in enumerate(items, 1):
        yield item
        if done in marks:
            print(f"{desc}: {done}/{total} {unit}", file=out, flush=True)
    seconds = time.perf_counter() - start
    print(f"{desc}: done, {total} {unit} in {seconds:.1f} s", file=out, flush=True)


_OVERRIDE = re.compile(r"[A-Za-z_][\w-]*(\.[\w-]+)*=")


def split_overrides(words: list[str]) -> tuple[list[str], list[str]]:
    """``(positional arguments, key=value overrides)`` of a job's free words, in order: a word
    is an override when it starts with a dotted key and ``=`` (``train.epochs=3``)."""
    overrides = [w for w in words if _OVERRIDE.match(w)]
    return [w for w in words if not _OVERRIDE.match(w)], overrides


def take_positionals(
    words: list[str], flags: dict[str, str | None], job: str
) -> tuple[dict[str, str | None], list[str]]:
    """Fill ``flags`` (name -> value given with its ``--flag``, or None), in order, from the
    positional words among ``words``; return them and the overrides. A value given both ways,
    or a positional word left over, is a one-line :class:`ConfigError`."""
    positionals, overrides = split_overrides(words)
    filled = dict(flags)
    free = [name for name, value in flags.items() if value is None]
    for name in list(flags):
        if not positionals:
            break
        if filled[name] is None and name in free:
            filled[name] = positionals.pop(0)
    if positionals:
        raise ConfigError(
            f"visionkit {job}: unexpected argument(s) {' '.join(positionals)} (overrides are "
            "key=value; `visionkit " + job + " --help` shows the arguments)"
        )
    return filled, overrides
