"""Where inference images come from: image files, folders, globs, path lists, videos, webcams,
and images already in memory (numpy arrays, PIL images, torch tensors).

:func:`resolve_sources` turns a ``--source`` argument (or ``predict``'s source) into
:class:`Source` entries;
:func:`read_frames` decodes them one after the other into :class:`Frame` records (``(H, W, 3)``
uint8 RGB), or :class:`Skipped` records with a one-line reason for anything that cannot be read, so
that the caller reports it and goes on; :func:`prefetch` runs such an iterator in a background
thread (decoding overlaps the model's work on the previous batch).
"""

from __future__ import annotations

import glob
import queue
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import cv2
import numpy as np
import torch

from visionkit.errors import DataError, shown
from visionkit.io.image import (
    IMAGE_EXTS,
    check_pil_image,
    check_unit_range,
    pil_image_rgb,
    read_image,
    unit_float_to_uint8,
)

VIDEO_EXTS = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv", ".flv", ".ts"}
)
LIST_EXTS = frozenset({".txt", ".lst"})
MAX_WEBCAM = 2**31 - 1  # OpenCV's camera index is a C int
FLOAT_TENSORS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """One thing to read: an image file, a video file, a webcam (``path`` is its index), or an
    image in memory (``kind`` ``"array"``, ``path`` a description such as ``"array 2"``, the
    object in ``data``, ``bgr`` whether a numpy array's channels are BGR)."""

    kind: Literal["image", "video", "webcam", "array"]
    path: str
    data: Any = field(default=None, compare=False, repr=False)
    bgr: bool = field(default=False, compare=False)

    @property
    def name(self) -> str:
        """How messages and ``images.json`` name it: the path as given, ``webcam N``, or the
        in-memory image's description."""
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
        raise DataError(
            f"cannot read the list of paths {shown(path)}: {type(e).__name__}"
        ) from None
    entries = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not entries:
        raise DataError(f"{shown(path)} lists no paths")
    return [_classify(p if p.is_absolute() else path.parent / p) for p in map(Path, entries)]


def _resolve_path(spec: str) -> list[Source]:
    """A path, folder, glob or list file; a string of digits naming nothing on disk is a webcam
    (``2024`` is the folder ``./2024`` where there is one)."""
    path = Path(spec)
    digits = spec.strip()
    webcam = digits.isascii() and digits.isdigit() and len(digits) <= 10
    if webcam and int(digits) <= MAX_WEBCAM and not path.exists():
        return [Source("webcam", str(int(digits)))]
    if path.is_dir():
        found = _known_media(path.iterdir())
        if not found:
            raise DataError(f"no image or video files in folder {shown(path)}")
        return found
    if path.is_file():
        return _read_list(path) if path.suffix.lower() in LIST_EXTS else [_classify(path)]
    if glob.has_magic(spec):
        found = _known_media(Path(p) for p in glob.glob(spec, recursive=True))
        if not found:
            raise DataError(f"no image or video files match {shown(spec)}")
        return found
    raise DataError(f"source not found: {shown(spec)} (a file, folder, glob, list or webcam index)")


def _is_pil(obj: Any) -> bool:
    pil = sys.modules.get("PIL.Image")  # a PIL image exists only once PIL is imported
    return pil is not None and isinstance(obj, pil.Image)


def _in_memory(obj: Any, index: int, bgr: bool) -> list[Source]:
    """An in-memory image as a source (a batch tensor as one source per image, named from
    ``index`` on), its shape, dtype and values checked now (converted when read): numpy arrays
    ``(H, W, 3)``, ``(H, W, 4)`` (alpha dropped), ``(H, W, 1)`` or ``(H, W)``; tensors
    ``(3, H, W)``, ``(4, H, W)``, ``(1, H, W)``, ``(H, W)`` or ``(N, C, H, W)`` of those; uint8,
    or float with every value finite and in [0, 1]."""
    if _is_pil(obj):
        name = f"PIL image {index}"
        check_pil_image(obj, name)
        return [Source("array", name, obj)]
    if isinstance(obj, np.ndarray):
        name, want = f"array {index}", "(H, W, 3), (H, W, 4) or (H, W)"
        shape_ok = obj.ndim == 2 or (obj.ndim == 3 and obj.shape[2] in (1, 3, 4))
        floating = obj.dtype.kind == "f"
        dtype_ok = floating or obj.dtype == np.uint8
    else:
        name, want = f"tensor {index}", "(3, H, W), (4, H, W), (H, W) or (N, 3, H, W)"
        shape_ok = obj.dim() == 2 or (obj.dim() in (3, 4) and obj.shape[-3] in (1, 3, 4))
        floating = obj.dtype in FLOAT_TENSORS
        dtype_ok = (floating or obj.dtype == torch.uint8) and obj.layout == torch.strided
    if not (shape_ok and dtype_ok):
        dtype = str(obj.dtype).removeprefix("torch.")
        raise DataError(
            f"{name}: an image must be {want}, uint8 (0..255) or float (0..1); "
            f"got {dtype} {tuple(obj.shape)}"
        )
    if 0 in obj.shape:
        what = "batch" if obj.ndim == 4 else "image"
        raise DataError(f"{name}: an empty {what} (shape {tuple(obj.shape)})")
    if obj.ndim == 4:  # a batch: its images, as a list of them would be given
        return [_in_memory(image, index + i, bgr)[0] for i, image in enumerate(obj)]
    if floating:
        low, high = (float(v) for v in (obj.min(), obj.max()))
        what = "array" if isinstance(obj, np.ndarray) else "tensor"
        check_unit_range(low, high, f"{name}: a float {what}")
    return [Source("array", name, obj, bgr and isinstance(obj, np.ndarray))]  # tensors are RGB


def _rgb(source: Source) -> np.ndarray:
    """An in-memory source's image as ``(H, W, 3)`` uint8 RGB: uint8 arrays as they are (their
    channels reversed when ``bgr``; grey ones repeated; a fourth channel, alpha, dropped as a PIL
    RGBA image's is), float ones (in [0, 1]) scaled by 255 and rounded as an 8-bit image file
    holds them, tensors ``(C, H, W)`` alike, PIL images exactly as the same image read from a
    file (:func:`~visionkit.io.image.pil_image_rgb`)."""
    obj = source.data
    if _is_pil(obj):
        return pil_image_rgb(obj, source.path)
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        t = t.float() if t.is_floating_point() else t  # numpy holds no bfloat16
        obj = (t if t.dim() == 2 else t.permute(1, 2, 0)).numpy()
    if obj.ndim == 3 and obj.shape[2] == 4:
        obj = obj[..., :3]
    if obj.dtype != np.uint8:
        obj = unit_float_to_uint8(obj)
    if obj.ndim == 2 or obj.shape[2] == 1:
        return np.repeat(obj.reshape(obj.shape[:2])[..., None], 3, axis=2)
    image = np.ascontiguousarray(obj[..., ::-1] if source.bgr else obj)
    return image if image.flags.writeable else image.copy()  # torch takes writable arrays


def resolve_sources(spec: Any, bgr: bool = False) -> list[Source]:
    """The sources ``spec`` names.

    Args:
        spec: an integer or a string of digits that names nothing on disk (webcam index); a
            folder (its image and video files, sorted, not recursive); an image or video file
            (videos by extension, ``VIDEO_EXTS``); a ``.txt`` or ``.lst`` file listing paths; a
            glob (``**`` recursive; image and video files); an image in memory: a numpy array
            (``(H, W, 3)`` RGB, BGR with ``bgr``, ``(H, W, 4)`` RGBA or BGRA (alpha dropped), or
            ``(H, W)`` grey; uint8, or float in ``[0, 1]``), a PIL image of any mode (read as
            the same image saved to a file is), a torch tensor (``(3, H, W)`` RGB, ``(4, H, W)``
            RGBA (alpha dropped) or ``(H, W)``; uint8, or float in ``[0, 1]``) or a batch of
            them ``(N, C, H, W)`` (its N images, as ``list(tensor)``); or a list or tuple of
            these (an in-memory image is then named by its position, a batch's images taking
            one position each: ``"array 2"``, ``"tensor 3"``).
        bgr: numpy arrays hold BGR (OpenCV's order), not RGB.

    Raises:
        DataError: nothing exists or matches there, or an in-memory image of another shape or
            type, empty, or with float values not finite or outside [0, 1] (one line).
    """
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    sources: list[Source] = []
    i = 0  # the position that names an in-memory image: a batch's images take one each
    for item in items:
        if isinstance(item, (np.ndarray, torch.Tensor)) or _is_pil(item):
            found = _in_memory(item, i, bgr)
            sources += found
            i += len(found) - 1
        elif isinstance(item, int) and not isinstance(item, bool):
            if not 0 <= item <= MAX_WEBCAM:
                raise DataError(f"webcam index {item}: a webcam index is in 0..{MAX_WEBCAM}")
            sources.append(Source("webcam", str(item)))
        elif isinstance(item, (str, Path)):
            try:
                sources += _resolve_path(str(item))
            except OSError as e:  # a name too long, a folder that cannot be listed
                raise DataError(f"cannot read source {shown(item)}: {e.strerror or e}") from None
        else:
            raise DataError(
                f"cannot read a {type(item).__name__} as an image source (a path, folder, glob, "
                "list file, video, webcam index, numpy array, PIL image or tensor)"
            )
        i += 1
    if not sources:
        raise DataError("no sources given (an empty list)")
    return sources


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
        yield Skipped(source, f"cannot read video {shown(source.path)}: missing")
        return
    cap = cv2.VideoCapture(int(source.path) if source.kind == "webcam" else source.path)
    try:
        if not cap.isOpened():
            why = "not found or busy" if source.kind == "webcam" else "unsupported or corrupt"
            yield Skipped(source, f"cannot open {shown(source.name)}: {why}")
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
            yield Skipped(source, f"cannot read {shown(source.name)}: no frame could be decoded")
    finally:
        cap.release()


def read_frames(sources: Iterable[Source]) -> Iterator[Frame | Skipped]:
    """Each source's image or frames, in order; a :class:`Skipped` record for each unreadable one."""
    for source in sources:
        if source.kind == "array":
            yield Frame(_rgb(source), source)
        elif source.kind == "image":
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
