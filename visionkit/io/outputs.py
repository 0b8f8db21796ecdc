"""The output rule: what a command writes never touches what it reads, and is checked first.

Every tool (and the API's file writers) names, before any long work, each path it will write
(a file or a folder) and each path it reads (the config and its ``base:``, weights, predictions,
sources and their folders, dataset roots and annotation files). :func:`check_outputs` resolves
them all (symlinks and hard links too) and refuses, in one line naming both
(:class:`~visionkit.errors.ConfigError`, exit 2):

- an output that is an input (it would be written over);
- an output inside an input folder (outputs never go into what is read);
- an output folder that holds an input (the tool's files could land on it);
- two outputs that are one path;

and then, still before the work: an output file that is a folder, a folder that is a file, a
folder that cannot be created or written in (probed by creating and removing a file there: a
read-only filesystem, ``/proc``), a file suffix the writer cannot write.

:func:`numbered_folder` keeps runs apart: a non-empty output folder gets a numbered sibling
(``runs/infer``, ``runs/infer2``, ``runs/infer3``, ...), as Ultralytics numbers its runs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from visionkit.errors import ConfigError, shown

PathLike = str | Path
Inputs = Mapping[str, PathLike | Iterable[PathLike] | None]


def check_outputs(
    inputs: Inputs,
    files: Mapping[str, PathLike | None] | None = None,
    folders: Mapping[str, PathLike | None] | None = None,
    suffixes: Mapping[str, Collection[str]] | None = None,
) -> None:
    """Apply the output rule (module docstring) before any long work.

    Args:
        inputs: role (``"--config"``, ``"data.val.root"``) -> the path(s) read in that role;
            None and empty strings are left out. Folders among them are input folders.
        files: flag -> an output file (None: not written this time).
        folders: flag -> an output folder (created if need be).
        suffixes: flag -> the suffixes (lower case, with the dot) its writer can write.

    Raises:
        ConfigError: one line naming the output and, for a clash, the input.
    """
    files = {k: Path(v) for k, v in (files or {}).items() if v not in (None, "")}
    folders = {k: Path(v) for k, v in (folders or {}).items() if v not in (None, "")}
    read = [(role, Path(p)) for role, value in inputs.items() for p in _paths(value)]
    written = [(flag, path, False) for flag, path in files.items()]
    written += [(flag, path, True) for flag, path in folders.items()]
    for i, (flag, path, is_folder) in enumerate(written):
        for role, source in read:
            _check_clash(flag, path, is_folder, role, source)
        for other, other_path, _ in written[:i]:
            if _same(path, other_path):
                raise ConfigError(f"{flag} {path} is also {other}: give each output its own path")
    for flag, path in files.items():
        check_output_file(path, flag, (suffixes or {}).get(flag))
    for flag, path in folders.items():
        check_output_folder(path, flag)


def _paths(value: PathLike | Iterable[PathLike] | None) -> list[PathLike]:
    if value is None or value == "":
        return []
    if isinstance(value, str | Path):
        return [value]
    return [v for v in value if v not in (None, "")]


def _resolved(path: Path) -> Path:
    """``path`` resolved; a name no file system takes (a NUL byte, too long) is a ConfigError."""
    try:
        return Path(path).resolve()
    except (ValueError, OSError) as e:
        raise ConfigError(f"{shown(str(path))} is not a usable path: {e}") from None


def _same(a: Path, b: Path) -> bool:
    """One file or folder: the same resolved path, or the same inode (a hard link)."""
    if _resolved(a) == _resolved(b):
        return True
    with contextlib.suppress(OSError):
        return a.exists() and b.exists() and os.path.samefile(a, b)
    return False


def _check_clash(flag: str, path: Path, is_folder: bool, role: str, source: Path) -> None:
    """Refuse ``path`` (written as ``flag``) when it is, is inside, or (a folder) holds the input
    ``source`` (read as ``role``)."""
    out, src = _resolved(path), _resolved(source)
    if _same(path, source):
        raise ConfigError(
            f"{flag} {path} is {role} {source}: it would be written over; choose another path"
        )
    if src in out.parents and src.is_dir():
        raise ConfigError(
            f"{flag} {path} is inside {role} {source}: outputs never go into an input folder; "
            "choose another path"
        )
    if is_folder and out in src.parents:
        raise ConfigError(
            f"{flag} {path} holds {role} {source}: the outputs could write over it; choose "
            "another folder"
        )


def check_output_folder(folder: PathLike, flag: str) -> None:
    """Before any long work: ``folder`` (given as ``flag``) exists or is created, and a file can
    be created in it (probed). A ConfigError (exit 2) otherwise."""
    _writable_folder(Path(folder), f"{flag} {folder}")


def check_output_file(
    path: PathLike | None, flag: str, suffixes: Collection[str] | None = None
) -> None:
    """Before any long work: ``path`` (given as ``flag``) can be written as a file: not an
    existing folder nor a write-protected file, in a folder that can be written in (created if
    need be), and with one of ``suffixes`` when given. A ConfigError otherwise."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ConfigError(
            f"{flag} {path}: cannot write a '{path.suffix}' file; give a name ending in "
            f"{', '.join(sorted(suffixes))}"
        )
    _writable_folder(path.parent, f"{flag} {path}: its folder {path.parent}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{flag} {path}: not writable")


def _writable_folder(folder: Path, named: str) -> None:
    """Create ``folder`` if need be and probe it by creating and removing a file there;
    ``named`` starts the error's line."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{named} is a file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".visionkit-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{named}: cannot write there ({e.strerror})") from None


def files_of(path: PathLike | None) -> list[Path]:
    """The inputs of ``path`` when it is read file by file (a run folder given as weights): the
    files directly in it when it is a folder, else ``path`` itself. An output may then go into a
    subfolder of it, never over its files nor into it as a whole."""
    if path is None or path == "":
        return []
    path = Path(path)
    return sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]


def numbered_folder(folder: PathLike, exist_ok: bool = False) -> Path:
    """``folder`` when it is absent, empty, or ``exist_ok``; else its first numbered sibling that
    is absent or empty: ``runs/infer`` -> ``runs/infer2``, ``runs/infer3``, ... (Ultralytics'
    numbering), so that a run never mixes its files with an earlier run's."""
    folder = Path(folder)
    if not folder.name:  # "." or "/": its own name
        folder = folder.resolve()
    if exist_ok or not _taken(folder):
        return folder
    n = 2
    while _taken(folder.with_name(f"{folder.name}{n}")):
        n += 1
    return folder.with_name(f"{folder.name}{n}")


def _taken(folder: Path) -> bool:
    """Anything there but an empty folder."""
    if not folder.is_dir():
        return folder.exists()
    return any(folder.iterdir())
