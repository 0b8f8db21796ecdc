"""One image's predictions in Python: what ``VisionModel.predict`` gives per image or frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from visionkit.errors import ConfigError, DataError
from visionkit.evaluation.coco_eval import to_coco_results
from visionkit.inference.sources import IMAGE_EXTS, Frame
from visionkit.inference.writers import write_image
from visionkit.io.outputs import check_outputs
from visionkit.utils.draw import class_colors, draw_prediction
from visionkit.utils.validators import is_id


@dataclass(repr=False, eq=False)
class Result:
    """The predictions for one image or video frame, in its own pixels.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB, the image as the model saw it.
        source: where it came from: the file's path as found, ``"webcam N"``, or an in-memory
            image's description (``"array 2"``, ``"tensor 0"``, ``"PIL image 1"``: its position
            in the list given to ``predict``).
        frame: the frame's index in its video or webcam stream; None for an image.
        boxes: ``(N, 4)`` float32 xyxy in the image's pixels (``(0, 4)`` for segmentation).
        scores: ``(N,)`` float32, highest first as the model gives them.
        labels: ``(N,)`` int64 in ``0..C-1``.
        class_names: label -> class name (all classes, shared with the model).
        cat_ids: label -> the dataset's category id (all classes, shared with the model).
        sem_seg: ``(H, W)`` int64 label map of a segmentation model; None for detectors.
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

    @classmethod
    def from_prediction(
        cls,
        frame: Frame,
        prediction: dict[str, Tensor],
        class_names: list[str],
        cat_ids: list[int],
    ) -> Result:
        """A frame and its prediction (a ``Predictor``'s output for it: CPU tensors ``boxes``,
        ``scores``, ``labels``, or ``sem_seg``) as a result; the arrays share the tensors'
        memory."""
        if "sem_seg" in prediction:
            boxes = np.zeros((0, 4), np.float32)
            scores, labels = np.zeros(0, np.float32), np.zeros(0, np.int64)
            sem_seg = prediction["sem_seg"].numpy()
        else:
            boxes, scores = prediction["boxes"].numpy(), prediction["scores"].numpy()
            labels, sem_seg = prediction["labels"].numpy(), None
        return cls(
            frame.image, frame.source.name, frame.index, boxes, scores, labels,
            class_names, cat_ids, sem_seg,
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

    def __repr__(self) -> str:
        where = self.source if self.frame is None else f"{self.source} frame {self.frame}"
        h, w = self.image.shape[:2]
        if self.sem_seg is not None:
            return f"Result({where}, {w}x{h}, sem_seg)"
        shown = ", ".join(
            f"{n} {s:.2f}" for n, s in zip(self.names[:3], self.scores[:3].tolist(), strict=True)
        )
        more = ", ..." if len(self) > 3 else ""
        return f"Result({where}, {w}x{h}, {len(self)} detections: [{shown}{more}])"

    def _prediction(self) -> dict[str, Tensor]:
        if self.sem_seg is not None:
            return {"sem_seg": torch.from_numpy(self.sem_seg)}
        return {
            "boxes": torch.from_numpy(self.boxes),
            "scores": torch.from_numpy(self.scores),
            "labels": torch.from_numpy(self.labels),
        }

    def plot(self) -> np.ndarray:
        """The image annotated: ``(H, W, 3)`` uint8 RGB, a new array. Boxes with ``"<class>
        <score>"`` tags in their class's colour; segmentation: each non-background pixel blended
        with its class's colour (``visionkit.utils.draw``, as ``visionkit predict`` draws)."""
        colors = class_colors(len(self.class_names))
        return draw_prediction(self.image, self._prediction(), self.class_names, colors)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`plot`'s image to ``path`` (its format from the extension: ``.jpg``,
        ``.png``, ...) atomically, folders created; returns the path. A one-line error when it
        cannot be written, or would be written over the image's own source file."""
        path = Path(path)
        if path.suffix.lower() not in IMAGE_EXTS:
            raise DataError(f"cannot save {path}: give an image file name (.jpg, .png, ...)")
        source = self.source if Path(self.source).is_file() else None
        check_outputs({"its source": source}, files={"Result.save": path})
        write_image(path, self.plot())
        return path

    def to_coco(self, image_id: int = 1) -> list[dict[str, Any]]:
        """The detections as COCO results: ``{"image_id", "category_id" (the dataset's id),
        "bbox": [x, y, w, h] (pixels), "score"}`` per box, what ``COCO.loadRes`` takes."""
        if self.sem_seg is not None:
            raise ConfigError("to_coco gives COCO box results; this is a segmentation model")
        if not is_id(image_id):
            raise ConfigError(f"to_coco: image_id must be a whole number (int64); got {image_id!r}")
        return to_coco_results(image_id, self._prediction(), self.cat_ids)
