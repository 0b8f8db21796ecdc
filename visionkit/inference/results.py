"""One image's predictions in Python: what ``VisionModel.predict`` gives per image or frame.

A :class:`Result` selects like an array (``r[r.scores > 0.5]``, ``r[:5]``, ``r[0]``), gives plain
Python and JSON (``to_dict``, ``to_json``), a pandas table (``to_df``), a readable
``summary()``, and writes the annotated image (``save``), YOLO label lines (``save_txt``) and
each box's crop (``save_crop``). An instance segmentation model's result also holds each
detection's mask (``r.masks``), selected with its box, drawn by ``plot``, given as COCO RLE by
``to_coco``, ``to_dict`` and ``to_json`` and as a YOLO polygon by ``save_txt``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from visionkit.errors import ConfigError, DataError, VisionkitError
from visionkit.evaluation.coco_eval import to_coco_results
from visionkit.inference.selection import detection_index
from visionkit.inference.sources import IMAGE_EXTS, Frame
from visionkit.inference.writers import mask_polygon, write_image
from visionkit.io.atomic import write_text
from visionkit.io.outputs import check_outputs
from visionkit.structures.masks import encode_rles
from visionkit.utils.draw import class_colors, draw_prediction
from visionkit.utils.validators import is_id


@dataclass(repr=False, eq=False)
class Result:
    """The predictions for one image or video frame, in its own pixels.

    ``len(r)`` is the number of detections; ``r[key]`` selects them (a bool mask of one value
    per detection, an int, a slice, or integer indices as a list, array or tensor) into a new
    Result sharing the image, source, frame and class tables, with its own copies of
    ``boxes``, ``scores``, ``labels`` and ``masks``; iterating gives one-detection Results. A
    segmentation result has no detections to select: its ``sem_seg`` holds the label map.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB, the image as the model saw it.
        source: where it came from: the file's path as found, ``"webcam N"``, or an in-memory
            image's description (``"array 2"``, ``"tensor 0"``, ``"PIL image 1"``: its position
            in the list given to ``predict``, a batch tensor's images one position each).
        frame: the frame's index in its video or webcam stream; None for an image.
        boxes: ``(N, 4)`` float32 xyxy in the image's pixels (``(0, 4)`` for segmentation).
        scores: ``(N,)`` float32, highest first as the model gives them.
        labels: ``(N,)`` int64 in ``0..C-1``.
        class_names: label -> class name (all classes, shared with the model).
        cat_ids: label -> the dataset's category id (all classes, shared with the model).
        sem_seg: ``(H, W)`` int64 label map of a segmentation model; None for detectors.
        masks: ``(N, H, W)`` bool, each detection's mask in the image's pixels (an instance
            segmentation model's: Mask R-CNN's, pasted with its box and thresholded at 0.5);
            None for models without masks.
    """

    image: np.ndarray
    source: str
    frame: int | None
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str] = field(default_factory=list)
    cat_ids: list[int] = field(default_factory=list)
    sem_seg: np.ndarray | None = None
    masks: np.ndarray | None = None

    @classmethod
    def from_prediction(
        cls,
        frame: Frame,
        prediction: dict[str, Tensor],
        class_names: list[str],
        cat_ids: list[int],
    ) -> Result:
        """A frame and its prediction (a ``Predictor``'s output for it: CPU tensors ``boxes``,
        ``scores``, ``labels`` and, for instance segmentation, ``masks``; or ``sem_seg``) as a
        result; the arrays share the tensors' memory."""
        masks = prediction["masks"].numpy() if "masks" in prediction else None
        if "sem_seg" in prediction:
            boxes = np.zeros((0, 4), np.float32)
            scores, labels = np.zeros(0, np.float32), np.zeros(0, np.int64)
            sem_seg = prediction["sem_seg"].numpy()
        else:
            boxes, scores = prediction["boxes"].numpy(), prediction["scores"].numpy()
            labels, sem_seg = prediction["labels"].numpy(), None
        return cls(
            frame.image, frame.source.name, frame.index, boxes, scores, labels,
            class_names, cat_ids, sem_seg, masks,
        )  # fmt: skip

    @property
    def names(self) -> list[str]:
        """The class name of each box."""
        return [self.class_names[int(i)] for i in self.labels]

    @property
    def category_ids(self) -> np.ndarray:
        """``(N,)`` int64: the dataset's category id of each box."""
        return np.asarray(self.cat_ids, np.int64)[self.labels]

    def __len__(self) -> int:
        """The number of detections."""
        return len(self.scores)

    def __getitem__(self, key: Any) -> Result:
        """The detections ``key`` selects, as a new Result (see the class docstring); a
        one-line ConfigError for a mask of another length, an index out of range, float or
        other values, or a segmentation result."""
        if self.sem_seg is not None:
            raise ConfigError(
                "a segmentation result has no detections to select: r.sem_seg holds its label map"
            )
        index = detection_index(key, len(self))
        masks = self.masks
        if masks is not None:
            masks = np.array(masks[index]).reshape(-1, *masks.shape[1:])
        return dataclasses.replace(
            self,
            boxes=np.array(self.boxes[index]).reshape(-1, 4),
            scores=np.array(self.scores[index]).reshape(-1),
            labels=np.array(self.labels[index]).reshape(-1),
            masks=masks,
        )

    def __iter__(self) -> Iterator[Result]:
        """Each detection as a one-detection Result, in order."""
        return (self[i] for i in range(len(self)))

    @property
    def width(self) -> int:
        """The image's width in pixels."""
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        """The image's height in pixels."""
        return int(self.image.shape[0])

    def __repr__(self) -> str:
        where = self.source if self.frame is None else f"{self.source} frame {self.frame}"
        h, w = self.image.shape[:2]
        if self.sem_seg is not None:
            return f"Result({where}, {w}x{h}, sem_seg)"
        shown = ", ".join(
            f"{n} {s:.2f}" for n, s in zip(self.names[:3], self.scores[:3].tolist(), strict=True)
        )
        more = ", ..." if len(self) > 3 else ""
        masks = " with masks" if self.masks is not None else ""
        return f"Result({where}, {w}x{h}, {len(self)} detections{masks}: [{shown}{more}])"

    def _prediction(self) -> dict[str, Tensor]:
        if self.sem_seg is not None:
            return {"sem_seg": torch.from_numpy(self.sem_seg)}
        prediction = {
            "boxes": torch.from_numpy(self.boxes),
            "scores": torch.from_numpy(self.scores),
            "labels": torch.from_numpy(self.labels),
        }
        if self.masks is not None:
            prediction["masks"] = torch.from_numpy(self.masks)
        return prediction

    def mask_areas(self) -> np.ndarray:
        """``(N,)`` int64: each detection's mask area in pixels; a one-line ConfigError for a
        result without masks."""
        if self.masks is None:
            raise ConfigError(
                "this result has no masks (an instance segmentation model gives them)"
            )
        return self.masks.sum(axis=(1, 2), dtype=np.int64)

    def plot(self) -> np.ndarray:
        """The image annotated: ``(H, W, 3)`` uint8 RGB, a new array. Boxes with ``"<class>
        <score>"`` tags in their class's colour, over each mask (if any) filled half-transparent
        in it and outlined; segmentation: each non-background pixel blended with its class's
        colour (``visionkit.utils.draw``, as ``visionkit predict`` draws)."""
        colors = class_colors(len(self.class_names))
        return draw_prediction(self.image, self._prediction(), self.class_names, colors)

    def _source_file(self) -> str | None:
        """The image file this result came from (an input of the output rule), if any."""
        return self.source if Path(self.source).is_file() else None

    def _detections_only(self, what: str) -> None:
        if self.sem_seg is not None:
            raise ConfigError(
                f"{what} writes boxes; this is a segmentation result (r.sem_seg holds its map)"
            )

    def save(self, path: str | Path) -> Path:
        """Write :meth:`plot`'s image to ``path`` (its format from the extension: ``.jpg``,
        ``.png``, ...) atomically, missing folders created; returns the path. A one-line error
        when it cannot be written, or would be written over the image's own source file."""
        path = Path(path)
        if path.suffix.lower() not in IMAGE_EXTS:
            raise DataError(f"cannot save {path}: give an image file name (.jpg, .png, ...)")
        check_outputs({"its source": self._source_file()}, files={"Result.save": path})
        write_image(path, self.plot())
        return path

    def save_txt(self, path: str | Path, conf: bool = False) -> Path:
        """Write the boxes as YOLO labels to ``path``: one line per box, ``label cx cy w h``
        (the box clipped to the image, then its centre and size divided by the image's width
        and height: in [0, 1], 6 decimals), followed by the score with ``conf``; an empty file
        for no box. With masks, YOLO's segmentation lines instead: ``label x1 y1 ... xn yn``,
        the outline of each mask's largest region (:func:`mask_polygon`) divided by the width
        and height. Atomic, missing folders created, checked as :meth:`save` is; returns the
        path."""
        self._detections_only("save_txt")
        path = Path(path)
        check_outputs({"its source": self._source_file()}, files={"Result.save_txt": path})
        if self.masks is not None:
            scale = np.array([self.width, self.height], np.float64)
            lines = []
            for i, (mask, box) in enumerate(zip(self.masks, self._clipped(), strict=True)):
                xy = (mask_polygon(mask, box) / scale).reshape(-1).tolist()
                lines.append(f"{int(self.labels[i])} " + " ".join(f"{v:.6f}" for v in xy))
                lines[-1] += f" {float(self.scores[i]):.6f}" if conf else ""
            write_text(path, "".join(f"{line}\n" for line in lines))
            return path
        x1, y1, x2, y2 = self._clipped().T
        w, h = self.width, self.height
        rows = zip(
            self.labels.tolist(), ((x1 + x2) / 2 / w).tolist(), ((y1 + y2) / 2 / h).tolist(),
            ((x2 - x1) / w).tolist(), ((y2 - y1) / h).tolist(), self.scores.tolist(),
            strict=True,
        )  # fmt: skip
        lines = [
            f"{lb} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}" + (f" {s:.6f}" if conf else "")
            for lb, cx, cy, bw, bh, s in rows
        ]
        write_text(path, "".join(f"{line}\n" for line in lines))
        return path

    def save_crop(self, folder: str | Path, name: str | None = None) -> list[Path]:
        """Write each box's crop of :attr:`image` to ``folder/<class name>/<stem>_<i>.jpg``
        (``i`` the box's position in this result; ``stem`` ``name``, else the source's file
        stem, ``_<frame>`` added for a video frame); atomic, folders created. The box is clipped
        to the image and widened to whole pixels (``floor`` of x1, y1, ``ceil`` of x2, y2);
        one of zero area after clipping is skipped. Returns the paths written, in order."""
        self._detections_only("save_crop")
        if name is not None and (not isinstance(name, str) or _path_part(name) != name):
            raise ConfigError(
                f"save_crop: name must be a file name stem (no folders); got {name!r}"
            )
        folder = Path(folder)
        check_outputs({"its source": self._source_file()}, folders={"Result.save_crop": folder})
        stem = name or _path_part(Path(self.source).stem or self.source)
        if name is None and self.frame is not None:
            stem = f"{stem}_{self.frame}"
        paths = []
        for i, (x1, y1, x2, y2) in enumerate(self._clipped().tolist()):
            if not (x2 > x1 and y2 > y1):  # zero area (or NaN)
                continue
            crop = self.image[math.floor(y1) : math.ceil(y2), math.floor(x1) : math.ceil(x2)]
            path = folder / _path_part(self.class_names[int(self.labels[i])]) / f"{stem}_{i}.jpg"
            write_image(path, np.ascontiguousarray(crop))
            paths.append(path)
        return paths

    def _clipped(self) -> np.ndarray:
        """``(N, 4)`` float64 xyxy: the boxes clipped to the image."""
        boxes = self.boxes.astype(np.float64).reshape(-1, 4)
        high = np.array([self.width, self.height, self.width, self.height], np.float64)
        return np.clip(boxes, 0.0, high)

    def _class_pixels(self) -> dict[str, int]:
        """Class name -> its pixels in :attr:`sem_seg`, for each class present (label order)."""
        labels, counts = np.unique(self.sem_seg, return_counts=True)
        pixels: dict[str, int] = {}
        for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
            name = self.class_names[label] if 0 <= label < len(self.class_names) else str(label)
            pixels[name] = pixels.get(name, 0) + count
        return pixels

    def to_dict(self) -> dict[str, Any]:
        """The result as plain Python (str, int, float, list, dict, None: ``json.dumps`` takes
        it): ``source``, ``frame``, ``width``, ``height`` and, for a detector, ``detections``:
        one ``{"box": [x1, y1, x2, y2] (float pixels, xyxy), "score", "label" (0..C-1),
        "name", "category_id" (the dataset's)}`` per box, floats as the shortest decimals of
        their float32 values; with masks also ``"segmentation"`` (the mask as COCO's compressed
        RLE, ``{"size": [h, w], "counts": str}``: ``pycocotools.mask.decode`` gives it back)
        and ``"area"`` (its pixels). A segmentation result gives ``class_pixels`` instead: class
        name -> its pixels, for each class present (``r.sem_seg`` holds the label map)."""
        out: dict[str, Any] = {
            "source": str(self.source),
            "frame": None if self.frame is None else int(self.frame),
            "width": self.width,
            "height": self.height,
        }
        if self.sem_seg is not None:
            return out | {"class_pixels": self._class_pixels()}
        boxes, scores = _floats(self.boxes.reshape(-1, 4)), _floats(self.scores)
        out["detections"] = [
            {"box": b, "score": s, "label": lb, "name": self.class_names[lb],
             "category_id": int(self.cat_ids[lb])}
            for b, s, lb in zip(boxes, scores, self.labels.tolist(), strict=True)
        ]  # fmt: skip
        if self.masks is not None:
            rles, areas = encode_rles(self.masks), self.mask_areas().tolist()
            for d, rle, area in zip(out["detections"], rles, areas, strict=True):
                d |= {"segmentation": rle, "area": area}
        return out

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON text; ``kwargs`` go to ``json.dumps`` (``indent=2``)."""
        return json.dumps(self.to_dict(), **kwargs)

    def to_df(self) -> Any:
        """A ``pandas.DataFrame``: one row per detection, columns ``x1 y1 x2 y2`` (pixels),
        ``score``, ``label``, ``name``, ``category_id`` (and ``area``, the mask's pixels, with
        masks); for a segmentation result one row per class present: ``label``, ``name``,
        ``category_id``, ``pixels``. pandas is imported here (not a visionkit dependency): a
        one-line error without it."""
        try:
            import pandas as pd
        except ImportError:
            raise VisionkitError("Result.to_df needs pandas: pip install pandas") from None
        if self.sem_seg is not None:
            labels, counts = np.unique(self.sem_seg, return_counts=True)
            return pd.DataFrame({
                "label": labels, "name": [self.class_names[i] for i in labels],
                "category_id": np.asarray(self.cat_ids, np.int64)[labels], "pixels": counts,
            })  # fmt: skip
        boxes = self.boxes.reshape(-1, 4)
        columns = {k: boxes[:, i] for i, k in enumerate(("x1", "y1", "x2", "y2"))}
        columns |= {"score": self.scores, "label": self.labels, "name": self.names,
                    "category_id": self.category_ids}  # fmt: skip
        if self.masks is not None:
            columns["area"] = self.mask_areas()
        return pd.DataFrame(columns)

    def summary(self) -> str:
        """The result in lines: a header (source, size, the count per class), then one line per
        detection (``circle 0.91 [12.0, 30.5, 80.2, 99.0]``: score, xyxy pixels; with masks
        followed by ``mask 1234 px``, the mask's area) or, for segmentation, per class present
        (``circle 12.5%``: its share of the pixels)."""
        where = self.source if self.frame is None else f"{self.source} frame {self.frame}"
        head = f"{where}: {self.width}x{self.height}"
        if self.sem_seg is not None:
            pixels = self._class_pixels()
            lines = [f"{n} {100 * c / self.sem_seg.size:.1f}%" for n, c in pixels.items()]
            return "\n".join([f"{head}, {_count(len(pixels), 'class', 'classes')}", *lines])
        counts: dict[str, int] = {}
        for label in sorted(self.labels.tolist()):
            counts[self.class_names[label]] = counts.get(self.class_names[label], 0) + 1
        per_class = ", ".join(f"{c} {n}" for n, c in counts.items())
        head += f", {_count(len(self), 'detection', 'detections')}"
        lines = [
            f"{n} {s:.2f} [{', '.join(f'{v:.1f}' for v in b)}]"
            for n, s, b in zip(self.names, self.scores.tolist(), self.boxes.tolist(), strict=True)
        ]
        if self.masks is not None:
            lines = [f"{ln} mask {a} px" for ln, a in zip(lines, self.mask_areas(), strict=True)]
        return "\n".join([head + (f": {per_class}" if per_class else ""), *lines])

    def to_coco(self, image_id: int = 1) -> list[dict[str, Any]]:
        """The detections as COCO results: ``{"image_id", "category_id" (the dataset's id),
        "bbox": [x, y, w, h] (pixels), "score"}`` per box, with masks also ``"segmentation"``
        (compressed RLE, ``counts`` a str), what ``COCO.loadRes`` takes."""
        if self.sem_seg is not None:
            raise ConfigError("to_coco gives COCO box results; this is a segmentation model")
        if not is_id(image_id):
            raise ConfigError(f"to_coco: image_id must be a whole number (int64); got {image_id!r}")
        return to_coco_results(image_id, self._prediction(), self.cat_ids)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _floats(values: np.ndarray) -> list:
    """An array of floats as nested lists of Python floats: each the shortest decimal of its
    value in the array's own precision (float32 ``80.2``, not ``80.19999694824219``)."""
    return np.vectorize(float, otypes=[object])(values.astype(str)).tolist()


def _path_part(text: str) -> str:
    """``text`` as one file or folder name: path separators and control characters become
    ``_`` (a class named ``N/A`` goes to ``N_A``), and ``.``, ``..`` or nothing become ``_``."""
    part = "".join("_" if c in "/\\" or not c.isprintable() else c for c in text)
    return "_" if part in ("", ".", "..") else part
