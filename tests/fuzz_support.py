"""The fuzz suite's driver and fixtures: tools' ``main(argv)`` and the Python API called
in-process as ``visionkit.utils.cli.run_cli`` would, under a time and memory bound, with the
inputs hashed before and after and the outputs checked for half-written files.

``VISIONKIT_FUZZ_EXAMPLES=N``: examples per fuzz target (default: a CI-sized few, derandomized
so that CI runs are reproducible; with N set, random). ``VISIONKIT_FUZZ_REPORT=FILE``: record
each failing example as a JSON line in FILE and go on (a survey of everything a long run finds)
instead of failing at the first.
"""

from __future__ import annotations

import contextlib
import faulthandler
import hashlib
import io
import json
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, settings
from PIL import Image
from script_loader import load_script

import visionkit.data.build as data_build
from visionkit.errors import VisionkitError

EXAMPLES_ENV = os.environ.get("VISIONKIT_FUZZ_EXAMPLES")
EXAMPLES = int(EXAMPLES_ENV or 4)
REPORT = os.environ.get("VISIONKIT_FUZZ_REPORT")
BOUND_S = 20.0  # wall-clock seconds one example may take
MEMORY_HEADROOM = 3 * 2**30  # address space one example may add (bytes)
EXIT_CODES = {0, 1, 2, 3}
TEMP_NAME = re.compile(r"(\.tmp$|\.tmp\.|\.part$|\.partial$|~$|^\.~)")


def fuzz_settings(share: float = 1.0) -> settings:
    """Hypothesis settings of a fuzz target: ``share`` x ``EXAMPLES`` examples (at least one),
    no deadline (a bound is enforced per example by the driver), no database, derandomized
    unless VISIONKIT_FUZZ_EXAMPLES is set."""
    return settings(
        max_examples=max(1, round(EXAMPLES * share)),
        derandomize=EXAMPLES_ENV is None,
        deadline=None,
        database=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.function_scoped_fixture,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


class Hang(BaseException):
    """An example ran past its wall-clock bound (raised by SIGALRM)."""


@dataclass
class Outcome:
    """What one call did: exit code (None: it raised ``error``), captured output, seconds."""

    what: str
    code: int | None
    stdout: str
    stderr: str
    seconds: float
    error: str | None = None


@contextlib.contextmanager
def bounded(seconds: float = BOUND_S) -> Iterator[None]:
    """Raise :class:`Hang` after ``seconds`` (SIGALRM), and every second after; a hard exit with every thread's
    traceback after 3x that (a hang in C code that never returns to Python); the address space
    limited to the current one plus ``MEMORY_HEADROOM`` (a memory bomb raises instead of taking
    the machine)."""

    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    # again every second: library code may swallow one (a finalizer's exceptions are ignored)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    faulthandler.dump_traceback_later(3 * seconds + 30, exit=True, file=sys.__stderr__)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    pages = int(Path("/proc/self/statm").read_text().split()[0])
    limit = pages * resource.getpagesize() + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def disk_full_after(nbytes: int) -> Iterator[None]:
    """Every file this process writes stops growing at ``nbytes``: a write beyond fails with
    ``OSError(EFBIG)`` as on a full disk (RLIMIT_FSIZE, its SIGXFSZ ignored)."""
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@contextlib.contextmanager
def captured(cwd: Path) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """stdout and stderr captured, Python warnings shown as ``run_cli`` shows them, ``cwd`` the
    working folder; all restored after."""
    from visionkit.utils.warn import show_warning

    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_show = os.getcwd(), warnings.showwarning
    os.chdir(cwd)
    warnings.showwarning = show_warning
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out, err
    finally:
        warnings.showwarning = old_show
        os.chdir(old_cwd)


def invoke(what: str, call: Callable[[], Any], cwd: Path, bound: float = BOUND_S) -> Outcome:
    """Run ``call`` as ``run_cli`` runs a tool's main: its return value (or SystemExit's code)
    is the exit code; a VisionkitError prints ``error: ...`` and exits with its code; anything
    else is recorded as ``error`` (a traceback: a failure)."""
    from visionkit.utils.cli import one_line

    t0 = time.monotonic()
    code: int | None = None
    error = None
    with captured(cwd) as (out, err):
        try:
            with bounded(bound):
                result = call()
            code = result if isinstance(result, int) else 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except VisionkitError as e:
            print(f"error: {one_line(e)}", file=sys.stderr)
            code = e.exit_code
        except (Exception, Hang) as e:  # noqa: BLE001 - every other exception is the finding
            error = short_traceback(e)
    return Outcome(what, code, out.getvalue(), err.getvalue(), time.monotonic() - t0, error)


def short_traceback(error: BaseException) -> str:
    """The traceback's frames in this repository (the tools, visionkit) and the exception."""
    frames = [
        f"  {f.filename}:{f.lineno} in {f.name}: {f.line}"
        for f in traceback.extract_tb(error.__traceback__)
        if "/visionkit/" in f.filename or "/tools/" in f.filename
    ]
    return "\n".join([*frames[-6:], *traceback.format_exception_only(error)]).rstrip()


SHAPES_IMAGES = 6  # images of a shapes split a fuzzed config makes a tool generate


def run_tool(tool: str, argv: Sequence[str], cwd: Path, bound: float = BOUND_S) -> Outcome:
    """``tools/<tool>.py``'s ``main(argv)`` in this process (see :func:`invoke`). A config on
    the shapes dataset (an empty file is one: the defaults) generates splits of
    :data:`SHAPES_IMAGES` images: generating the real 2,000 is legitimate work of a minute, not
    a border to fuzz, and would pass the time bound."""
    main = load_script(f"tools/{tool}.py").main
    argv = [str(a) for a in argv]
    real = data_build.ensure_shapes

    def small_shapes(root=None, split="train", num_images=0, image_size=0, progress=True):
        n = min(num_images or SHAPES_IMAGES, SHAPES_IMAGES)
        return real(root, split, n, image_size, progress)

    with mock.patch.object(data_build, "ensure_shapes", small_shapes):
        return invoke(f"tools/{tool}.py {' '.join(argv)}", lambda: main(argv), cwd, bound)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(paths: Sequence[Path]) -> dict[str, str]:
    """Every file under ``paths`` (files or folders) -> its sha256 (links: their target)."""
    hashes = {}
    for root in paths:
        if root.is_symlink():
            hashes[str(root)] = f"link:{os.readlink(root)}"
        elif root.is_file():
            hashes[str(root)] = sha256(root)
        elif root.is_dir():
            for dirpath, _, files in os.walk(root):
                for name in files:
                    p = Path(dirpath) / name
                    hashes[str(p)] = f"link:{os.readlink(p)}" if p.is_symlink() else sha256(p)
    return hashes


def half_written(folder: Path, before: dict[str, str]) -> list[str]:
    """Files under ``folder`` that are temporary (``*.tmp``, ``*.part``, ...) or new/changed
    JSON, JSONL, YAML or image files that do not parse."""
    bad = []
    if not folder.is_dir():
        return bad
    for p in folder.rglob("*"):
        if not p.is_file() or p.is_symlink():
            continue
        if TEMP_NAME.search(p.name):
            bad.append(f"{p}: a temporary file left behind")
            continue
        if before.get(str(p)) == sha256(p):
            continue
        reason = unparsable(p)
        if reason:
            bad.append(f"{p}: {reason}")
    return bad


def unparsable(path: Path) -> str | None:
    """Why the file at ``path`` is not a whole file of its suffix's format (None: it is)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            json.loads(path.read_bytes())
        elif suffix == ".jsonl":
            for line in path.read_text().splitlines():
                if line.strip():
                    json.loads(line)
        elif suffix in (".png", ".jpg", ".jpeg"):
            with Image.open(path) as im:
                im.load()
        elif suffix in (".yaml", ".yml"):
            import yaml

            yaml.safe_load(path.read_text())
        elif suffix == ".pth":
            import torch

            torch.load(path, weights_only=True)
        elif suffix == ".onnx":
            import onnx

            onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - whatever the parser says
        return f"not a whole {suffix} file ({type(e).__name__})"
    return None


@dataclass
class Case:
    """One example's folders: ``inputs`` (must not change), ``outputs`` (checked for half-written
    files), and ``kept`` files under the outputs that existed before and must not change."""

    root: Path
    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)

    @property
    def inp(self) -> Path:
        return self.root / "in"

    @property
    def out(self) -> Path:
        return self.root / "out"


@contextlib.contextmanager
def case(base: Path, assets: Any) -> Iterator[Case]:
    """A fresh ``in/`` and ``out/`` under ``base`` (removed after); the session's assets are
    inputs of every example."""
    root = Path(tempfile.mkdtemp(dir=base))
    c = Case(root)
    c.inp.mkdir()
    c.out.mkdir()
    c.inputs += [c.inp, assets.root]
    c.outputs.append(c.out)
    try:
        yield c
    finally:
        shutil.rmtree(root, ignore_errors=True)


def check(
    c: Case,
    run: Callable[[], Outcome],
    expect: Callable[[Outcome], str | None] | None = None,
    detail: str = "",
) -> Outcome:
    """Run one example and assert the fuzz contract: an exit code in {0, 1, 2, 3}, no traceback,
    no input changed (nor the ``kept`` outputs), nothing half-written in the outputs, within the
    bound; ``expect`` may add a rule (returns why the outcome is wrong, or None)."""
    watched = [*c.inputs, *c.kept]
    before = snapshot(watched)
    out_before = snapshot(c.outputs)
    outcome = run()
    after = snapshot(watched)
    problems = []
    if outcome.error:
        problems.append(f"traceback:\n{outcome.error}")
    elif outcome.code not in EXIT_CODES:
        problems.append(f"exit code {outcome.code}")
    if "Traceback (most recent call last)" in outcome.stderr:
        problems.append("a traceback on stderr")
    changed = sorted(k for k in before if before[k] != after.get(k))  # new files may appear
    if changed:
        problems.append(f"inputs changed or removed: {changed[:5]}")
    for folder in c.outputs:
        problems += half_written(folder, out_before)
    if outcome.seconds > BOUND_S:
        problems.append(f"took {outcome.seconds:.1f} s (bound {BOUND_S:.0f} s)")
    if not problems and expect is not None:
        why = expect(outcome)
        if why:
            problems.append(why)
    if problems:
        fail(outcome, problems, detail)
    return outcome


def fail(outcome: Outcome, problems: list[str], detail: str) -> None:
    """Fail the example, or with VISIONKIT_FUZZ_REPORT append it to that file and go on."""
    message = (
        f"{outcome.what}\n{detail}\nexit {outcome.code} in {outcome.seconds:.1f} s\n"
        + "\n".join(problems)
        + f"\nstderr (end): {outcome.stderr[-1500:]}"
    )
    if REPORT:
        record = {"what": outcome.what, "detail": detail[:2000], "problems": problems}
        record |= {"code": outcome.code, "stderr": outcome.stderr[-600:]}
        with open(REPORT, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        return
    raise AssertionError(message)


def refused(outcome: Outcome) -> str | None:
    """An ``expect`` rule: the input must be refused (exit 1 or 2)."""
    return None if outcome.code in (1, 2) else f"accepted (exit {outcome.code}); must be refused"


def valid_predictions(c: Case, coco: dict) -> Path:
    """A COCO results file of the ground truth itself (score 0.9), under ``c.inp``."""
    preds = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 0.9,
        }
        for a in coco["annotations"]
    ]
    path = c.inp / "predictions.json"
    path.write_text(json.dumps(preds))
    return path
