"""Where inference images come from: image files, folders, globs, path lists, videos, webcams.

:func:`resolve_sources` turns a ``--source`` argument into :class:`Source` entries;
:func:`read_frames` decodes them one after the other into :class:`Frame` records (``(H, W, 3)``
uint8 RGB), or :class:`Skipped` records with a one-line reason for anything that cannot be read, so
that the caller reports it and goes on; :func:`prefetch` runs such an iterator in a background
thread (decoding overlaps the model's work on the previous batch).
"""

from __future__ import annotations

import glob
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import cv2
import numpy as np

from visionkit.errors import DataError
from visionkit.io.image import read_image

IMAGE_EXTS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".ppm", ".pgm", ".pbm"}
)
VIDEO_EXTS = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv", ".flv", ".ts"}
)
LIST_EXTS = frozenset({".txt", ".lst"})

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """One thing to read: an image file, a video file, or a webcam (``path`` is its index)."""

    kind: Literal["image", "video", "webcam"]
    path: str

    @property
    def name(self) -> str:
        """How messages and ``images.json`` name it: the path as given, or ``webcam N``."""
        return f"webcam {self.path}" if self.kind == "webcam" else self.path


@dataclass
class Frame:
    """A decoded image or video frame.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        source: where it was read.
        index: the frame's index in its video or webcam stream; None for an image file.
        fps: the stream's frame rate (0 when the stream does not say); 0 for an image file.
    """

    image: np.ndarray
    source: Source
    index: int | None = None
    fps: float = 0.0


@dataclass(frozen=True)
class Skipped:
    """A source (or the rest of one) that could not be read; ``reason`` is one line."""

    source: Source
    reason: str


def _classify(path: Path) -> Source:
    kind = "video" if path.suffix.lower() in VIDEO_EXTS else "image"
    return Source(kind, str(path))


def _known_media(paths: Iterable[Path]) -> list[Source]:
    exts = IMAGE_EXTS | VIDEO_EXTS
    return [_classify(p) for p in sorted(paths) if p.is_file() and p.suffix.lower() in exts]


def _read_list(path: Path) -> list[Source]:
    """A text file of paths, one per line; blank lines and ``#`` comments are ignored, relative
    paths are relative to the list's folder. Entries are kept as listed (unreadable ones are
    reported when read)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the list of paths {path}: {type(e).__name__}") from None
    entries = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not entries:
        raise DataError(f"{path} lists no paths")
    return [_classify(p if p.is_absolute() else path.parent / p) for p in map(Path, entries)]


def resolve_sources(spec: str) -> list[Source]:
    """The sources a ``--source`` argument names.

    Args:
        spec: an integer (webcam index); a folder (its image and video files, sorted, not
            recursive); an image or video file (videos by extension, ``VIDEO_EXTS``); a ``.txt``
            or ``.lst`` file listing paths; or a glob (``**`` recursive; image and video files).

    Raises:
        DataError: nothing exists or matches there (one line).
    """
    if spec.strip().isdigit():
        return [Source("webcam", str(int(spec)))]
    path = Path(spec)
    if path.is_dir():
        found = _known_media(path.iterdir())
        if not found:
            raise DataError(f"no image or video files in folder {path}")
        return found
    if path.is_file():
        return _read_list(path) if path.suffix.lower() in LIST_EXTS else [_classify(path)]
    if glob.has_magic(spec):
        found = _known_media(Path(p) for p in glob.glob(spec, recursive=True))
        if not found:
            raise DataError(f"no image or video files match {spec}")
        return found
    raise DataError(f"source not found: {spec} (a file, folder, glob, list or webcam index)")


def video_frame_count(source: Source) -> int | None:
    """The number of frames a video file's header announces; None for webcams or when unknown."""
    if source.kind != "video":
        return None
    cap = cv2.VideoCapture(source.path)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    return count if count > 0 else None


def _read_stream(source: Source) -> Iterator[Frame | Skipped]:
    if source.kind == "video" and not Path(source.path).is_file():
        yield Skipped(source, f"cannot read video {source.path}: missing")
        return
    cap = cv2.VideoCapture(int(source.path) if source.kind == "webcam" else source.path)
    try:
        if not cap.isOpened():
            why = "not found or busy" if source.kind == "webcam" else "unsupported or corrupt"
            yield Skipped(source, f"cannot open {source.name}: {why}")
            return
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if np.isfinite(fps) and fps > 0 else 0.0
        index = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yield Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), source, index, fps)
            index += 1
        if index == 0:
            yield Skipped(source, f"cannot read {source.name}: no frame could be decoded")
    finally:
        cap.release()


def read_frames(sources: Iterable[Source]) -> Iterator[Frame | Skipped]:
    """Each source's image or frames, in order; a :class:`Skipped` record for each unreadable one."""
    for source in sources:
        if source.kind == "image":
            try:
                yield Frame(read_image(Path(source.path)), source)
            except DataError as e:
                yield Skipped(source, str(e))
        else:
            yield from _read_stream(source)


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Yield ``items`` as a background thread produces them, at most ``depth`` ahead.

    An exception in the thread is raised here. Closing the returned generator (``close()``, or
    leaving a ``contextlib.closing`` block) stops the thread and closes ``items``' iterator, which
    releases open videos.
    """
    q: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def work() -> None:
        it = iter(items)
        try:
            for item in it:
                if not _put(q, (True, item), stop):
                    return
            _put(q, (False, None), stop)
        except BaseException as e:  # handed to the consumer, raised there
            _put(q, (False, e), stop)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="visionkit-decode", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
