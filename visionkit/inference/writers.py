"""Where inference results go: image and label files, videos, COCO JSON, mask outlines as YOLO
polygons, a window on screen."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch import Tensor

from visionkit.errors import DataError, VisionkitError
from visionkit.evaluation.coco_eval import to_coco_results
from visionkit.io.atomic import PendingFile, write_bytes, write_json

DEFAULT_FPS = 30.0  # for streams that do not say their frame rate (many webcams)


def write_image(path: Path, image: np.ndarray) -> None:
    """Encode ``image`` (``(H, W, 3)`` uint8 RGB, or ``(H, W)`` uint8/uint16 single channel) in
    the format of ``path``'s suffix and write it atomically (folders created); an unwritable
    path is a one-line error (:func:`visionkit.io.atomic.write_error`)."""
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, pixels, params)
    if not ok:
        raise DataError(f"cannot encode {path}")
    write_bytes(path, buf.tobytes())


def write_label_png(path: Path, labels: np.ndarray) -> None:
    """Write an ``(H, W)`` integer label map as a single-channel PNG holding the label values
    (uint8, or uint16 when there are more than 256 classes)."""
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    write_image(path, labels.astype(dtype))


def mask_polygon(mask: np.ndarray, box: np.ndarray | Sequence[float]) -> np.ndarray:
    """The outline of a mask's largest region as a polygon: ``(K, 2)`` float64 x, y pixel
    coordinates, ``K >= 3`` (``cv2.findContours``' outer contours, simplified; the largest by
    area, then by points). A region too thin for three points gives its pixel rectangle; an
    empty mask gives the corners of ``box`` (``(4,)`` xyxy, clipped to the image).

    Args:
        mask: ``(H, W)`` bool.
        box: the detection's box, for an empty mask.
    """
    contours, _ = cv2.findContours(
        np.ascontiguousarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    if not contours:
        x1, y1, x2, y2 = (float(v) for v in box)
        return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)
    largest = max(contours, key=lambda c: (cv2.contourArea(c), len(c))).reshape(-1, 2)
    if len(largest) < 3:  # a line or a pixel: its pixel rectangle
        (x1, y1), (x2, y2) = largest.min(0), largest.max(0) + 1
        return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)
    return largest.astype(np.float64)


class VideoWriter:
    """An MP4 (``mp4v``) file of ``(H, W, 3)`` uint8 RGB frames, all of one size, written into
    a temporary file beside ``path`` and renamed into place by :meth:`close` once it reads back
    whole; :meth:`discard` (a failure) removes it, so ``path`` never holds a truncated video.

    Args:
        path: the ``.mp4`` file.
        fps: frames per second (:data:`DEFAULT_FPS` when 0).
        size: ``(width, height)``.
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.path, self.frames = path, 0
        self._file = PendingFile(path)
        self._writer = cv2.VideoWriter(
            str(self._file.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps or DEFAULT_FPS, size
        )
        if not self._writer.isOpened():
            self._file.discard()
            raise DataError(f"cannot write video {path} (mp4v at {size[0]}x{size[1]})")

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        """Finish the file and rename it into place; one that does not read back with every
        frame (OpenCV does not report a full disk) is removed, a one-line error."""
        self._writer.release()
        check = cv2.VideoCapture(str(self._file.tmp))
        frames = int(check.get(cv2.CAP_PROP_FRAME_COUNT)) if check.isOpened() else 0
        check.release()
        if frames != self.frames:
            self._file.discard()
            raise VisionkitError(
                f"cannot write video {self.path}: {frames} of {self.frames} frames read back "
                "(a full disk?)"
            )
        self._file.commit()

    def discard(self) -> None:
        """Stop writing and remove the unfinished file; ``path`` stays as it was."""
        self._writer.release()
        self._file.discard()


class OutputNames:
    """Unique file stems inside one output folder: ``a``, then ``a_1``, ``a_2``... for sources of
    the same name from different folders."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def stem(self, wanted: str) -> str:
        stem, k = wanted, 0
        while stem in self._taken:
            k += 1
            stem = f"{wanted}_{k}"
        self._taken.add(stem)
        return stem


class CocoResults:
    """Predictions as COCO results, and the images they refer to.

    ``save`` writes ``predictions.json`` (detection models only: a list of ``{"image_id",
    "category_id", "bbox": [x, y, w, h], "score"}`` with the dataset's category ids, what
    ``COCO.loadRes`` takes; instance segmentation adds ``"segmentation"``, the mask as compressed
    RLE ``{"size": [h, w], "counts": str}``) and ``images.json`` (``{"images": [{"id", "file_name", "width",
    "height"}, + "frame" for video frames], "categories": [{"id", "name"}]}``).

    Args:
        class_names: label -> name.
        cat_ids: label -> the dataset's category id.
    """

    def __init__(self, class_names: Sequence[str], cat_ids: Sequence[int]) -> None:
        self.cat_ids = list(cat_ids)
        self.categories = [
            {"id": int(c), "name": n} for c, n in zip(cat_ids, class_names, strict=True)
        ]
        self.images: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []

    def add_image(self, file_name: str, size: tuple[int, int], frame: int | None = None) -> int:
        """Register an image (``size`` ``(H, W)``) or a video's frame; returns its id (1, 2, ...)."""
        entry = {"id": len(self.images) + 1, "file_name": file_name}
        entry |= {"width": int(size[1]), "height": int(size[0])}
        if frame is not None:
            entry["frame"] = frame
        self.images.append(entry)
        return entry["id"]

    def add_detections(self, image_id: int, prediction: dict[str, Tensor]) -> None:
        """``prediction``: ``boxes`` ``(N, 4)`` xyxy pixels, ``scores`` ``(N,)``, ``labels``
        ``(N,)`` and optionally ``masks`` ``(N, H, W)`` bool (kept as RLE only)."""
        self.results.extend(to_coco_results(image_id, prediction, self.cat_ids))

    def save(self, folder: Path, with_predictions: bool) -> None:
        """Write ``images.json`` and (``with_predictions``) ``predictions.json`` atomically."""
        write_json(folder / "images.json", {"images": self.images, "categories": self.categories})
        if with_predictions:
            write_json(folder / "predictions.json", self.results)


def gui_unavailable() -> str | None:
    """Why OpenCV cannot open a window here (one line), or None when it can."""
    info = cv2.getBuildInformation()
    gui = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if "GUI:" in ln), "")
    if gui.upper() in ("", "NONE"):
        return (
            "this OpenCV has no GUI support (opencv-python-headless); install opencv-python "
            "to see a window"
        )
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display (DISPLAY is not set)"
    return None


class Window:
    """Shows annotated images in an OpenCV window; the user closes it with ``q`` or Esc.

    Video frames are shown without waiting; an image waits for a key (any key: the next one).
    """

    def __init__(self, title: str = "visionkit") -> None:
        self.title = title

    def show(self, image: np.ndarray, is_frame: bool) -> bool:
        """Display ``image`` (``(H, W, 3)`` uint8 RGB); False once the user asked to stop."""
        cv2.imshow(self.title, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1 if is_frame else 0) & 0xFF
        return key not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyAllWindows()
