"""Drawing predictions on images: one stable colour per class, labelled boxes, segmentation overlays.

All images are ``(H, W, 3)`` uint8 RGB numpy arrays; the functions return new arrays and leave
their input unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from torch import Tensor

GOLDEN_RATIO = 0.6180339887498949
FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_colors(num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` uint8 RGB: class ``i``'s colour, the same in every run and for every
    number of classes (hues ``i * 0.618...`` around the circle, so neighbours differ)."""
    hues = (np.arange(num_classes) * GOLDEN_RATIO) % 1.0
    hsv = np.stack(
        [
            hues * 180,
            np.full(num_classes, 210.0),
            np.where(np.arange(num_classes) % 2, 200.0, 255.0),
        ],
        axis=-1,
    )
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]


def _text_color(color: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light colours, white on dark ones."""
    r, g, b = color
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def draw_labelled_boxes(
    image: np.ndarray,
    boxes: Tensor | np.ndarray,
    texts: Sequence[str],
    box_colors: Sequence[tuple[int, int, int]],
) -> np.ndarray:
    """Boxes with a text tag each (above the box, else inside it), drawn in order (the last on
    top).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(N, 4)`` float xyxy in the image's pixels.
        texts: ``N`` tags.
        box_colors: ``N`` RGB colours.
    """
    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    thickness = max(1, round(min(h, w) / 400))
    scale = float(np.clip(min(h, w) / 900, 0.3, 1.2))
    for box, text, color in zip(np.asarray(boxes).tolist(), texts, box_colors, strict=True):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        color = tuple(int(c) for c in color)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1  # above the box, else inside
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + base + 2), color, cv2.FILLED)
        cv2.putText(
            out, text, (x1 + 1, top + th + 1), FONT, scale, _text_color(color), 1, cv2.LINE_AA
        )
    return out


def draw_detections(
    image: np.ndarray,
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    class_names: Sequence[str],
    colors: np.ndarray,
) -> np.ndarray:
    """Boxes with ``"<class> <score>"`` tags, the best-scoring drawn last (on top).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(N, 4)`` float xyxy in the image's pixels.
        scores: ``(N,)`` float.
        labels: ``(N,)`` int64 in ``0..C-1``.
        class_names: label -> name.
        colors: ``(C, 3)`` uint8 RGB (:func:`class_colors`).
    """
    order = scores.argsort()
    labels, scores = labels[order].tolist(), scores[order].tolist()
    texts = [f"{class_names[lb]} {s:.2f}" for s, lb in zip(scores, labels, strict=True)]
    return draw_labelled_boxes(image, boxes[order], texts, colors[labels])


def overlay_segmentation(
    image: np.ndarray,
    labels: np.ndarray,
    colors: np.ndarray,
    alpha: float = 0.5,
    background: int | None = 0,
) -> np.ndarray:
    """The image with each pixel blended with its class's colour.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        labels: ``(H, W)`` integer labels in ``0..C-1``, the image's size.
        colors: ``(C, 3)`` uint8 RGB (:func:`class_colors`).
        alpha: the colour's weight.
        background: a label left unpainted (None: paint every pixel).
    """
    painted = cv2.addWeighted(image, 1.0 - alpha, colors[labels], alpha, 0.0)
    if background is None:
        return painted
    out = image.copy()
    keep = labels != background
    out[keep] = painted[keep]
    return out


def draw_prediction(
    image: np.ndarray,
    prediction: dict[str, Tensor],
    class_names: Sequence[str],
    colors: np.ndarray,
) -> np.ndarray:
    """One image's prediction drawn on a copy of it: :func:`draw_detections` for ``boxes``,
    ``scores``, ``labels``; :func:`overlay_segmentation` (half-transparent, ``background``
    left unpainted when class 0 is named so) for ``sem_seg`` (``(H, W)`` int64)."""
    if "sem_seg" in prediction:
        background = 0 if class_names[0] == "background" else None
        return overlay_segmentation(image, prediction["sem_seg"].numpy(), colors, 0.5, background)
    return draw_detections(
        image, prediction["boxes"], prediction["scores"], prediction["labels"], class_names, colors
    )
