"""Atomic writes: a file appears whole at its destination, or not at all.

:func:`atomic_path` yields a temporary path beside the destination: the same folder (so that the
rename never crosses filesystems), a hidden name, and the destination's suffix, so that writers
that choose their format from the suffix (``cv2.imwrite``, ``cv2.VideoWriter``, ``savefig``,
``np.savez``) choose the right one: ``runs/a/.last.pth.tmp-4242.pth`` for ``runs/a/last.pth``.
When the block ends, the temporary file is renamed over the destination (``os.replace``, atomic
within a filesystem); on any exception, a Ctrl-C included, it is removed. A full disk, a kill or
an interrupt thus leaves the previous file or the new one, never a truncated one.

An ``OSError`` of the write becomes one line naming the destination and the reason
(:func:`write_error`): a :class:`~visionkit.errors.ConfigError` (exit 2) when the path itself is
at fault (a missing or read-only folder, no permission, a folder in the way), else a
:class:`~visionkit.errors.VisionkitError` (exit 1: a full disk, an I/O error).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from visionkit.errors import ConfigError, VisionkitError

TEMP_MARK = ".tmp-"  # in every temporary file's name: .<name>.tmp-<pid><suffix>

# errors that say the destination path is wrong, not that the write failed on the way
PATH_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EEXIST,
        errno.EISDIR,
        errno.ELOOP,
        errno.ENAMETOOLONG,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EPERM,
        errno.EROFS,
    }
)


def write_error(path: str | Path, error: OSError) -> VisionkitError:
    """``error``, raised while writing ``path``, as a one-line error naming both: a ConfigError
    (exit 2) where the path is at fault (:data:`PATH_ERRNOS`), else a VisionkitError (exit 1)."""
    kind = ConfigError if error.errno in PATH_ERRNOS else VisionkitError
    return kind(f"cannot write {path}: {error.strerror or str(error) or type(error).__name__}")


def temporary_path(path: str | Path) -> Path:
    """The temporary file that :func:`atomic_path` writes ``path`` through: same folder, hidden,
    same suffix (``a/b.jpg`` -> ``a/.b.jpg.tmp-<pid>.jpg``)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}{path.suffix}")


def leftover_temporaries(folder: str | Path) -> list[Path]:
    """Temporary files of :func:`atomic_path` in ``folder`` that a killed process left behind."""
    return sorted(Path(folder).glob(f".*{TEMP_MARK}*"))


class PendingFile:
    """A file written through its :func:`temporary_path` and renamed into place by
    :meth:`commit`, or removed by :meth:`discard`: for writers that stay open across calls (a
    video). :func:`atomic_path` is the same for one block of code.

    The destination's folder is created if need be. Raises the :func:`write_error` of a failure.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.tmp = temporary_path(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(self.path, e) from None

    def commit(self, fsync: bool = False) -> None:
        """Rename the written temporary file over the destination (after flushing it to the disk
        with ``fsync``); a failure removes it."""
        try:
            if fsync:
                fd = os.open(self.tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.discard()
            raise write_error(self.path, e) from None
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Remove the temporary file, if any; the destination stays as it was."""
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """Yield the temporary path to write ``path`` through; renamed into place when the block
    ends, removed when it raises (an ``OSError`` is re-raised as :func:`write_error`'s line).
    ``fsync``: flush the file to the disk before the rename (checkpoints)."""
    pending = PendingFile(path)
    try:
        yield pending.tmp
    except OSError as e:
        pending.discard()
        raise write_error(pending.path, e) from None
    except BaseException:
        pending.discard()
        raise
    pending.commit(fsync)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (folders created); returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (folders created); returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any, indent: int | None = None) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (folders created); returns ``path``."""
    return write_text(path, json.dumps(data, indent=indent))


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` (UTF-8) to ``path`` whole or not at all: a write that fails part-way (a
    full disk, a Ctrl-C) is cut back to the file's previous end, so a line-per-record file never
    holds half a record; the failure is raised as :func:`write_error`'s line."""
    path = Path(path)
    data = memoryview(text.encode("utf-8"))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        start = os.fstat(fd).st_size
        try:
            while data:
                data = data[os.write(fd, data) :]
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        os.close(fd)
