"""Drawing predictions on images: one stable colour per class, labelled boxes, segmentation overlays
(half-transparent class colours, each class region outlined, a legend of the class colours) and
instance masks (each object filled half-transparent in its class's colour and outlined).

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
LEGEND_ALL = 8  # a legend of every class when there are at most this many, else of those present
LEGEND_PANEL = (32, 32, 32)  # the legend's background, blended LEGEND_ALPHA over the image
LEGEND_ALPHA = 0.7


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


def draw_label_outlines(
    image: np.ndarray, labels: np.ndarray, colors: np.ndarray, skip: Sequence[int] = ()
) -> np.ndarray:
    """The image with the outline of each class region in its class's colour: the pixels of a
    region next to another label (a morphological gradient of the label map, so the image's own
    border is no outline), about 1 px thick per 400 px of the shorter side.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        labels: ``(H, W)`` integer labels in ``0..C-1`` (``C`` <= 65535), the image's size.
        colors: ``(C, 3)`` uint8 RGB.
        skip: labels not outlined (the unpainted background).
    """
    h, w = labels.shape
    side = 2 * max(1, round(min(h, w) / 400)) + 1
    kernel = np.ones((side, side), np.uint8)
    grid = np.ascontiguousarray(labels, np.uint16)
    edge = cv2.dilate(grid, kernel) != cv2.erode(grid, kernel)
    if len(skip):
        edge &= ~np.isin(labels, list(skip))
    out = image.copy()
    out[edge] = colors[labels[edge]]
    return out


def draw_legend(
    image: np.ndarray,
    entries: Sequence[tuple[str, tuple[int, int, int]]],
    avoid: np.ndarray | None = None,
) -> np.ndarray:
    """A legend of colour swatches and names on a dark, slightly transparent panel in a corner
    of the image: the corner where it hides the fewest ``avoid`` pixels (``(H, W)`` bool; ties
    and None: top left). Entries that do not fit the image's height end in ``"+N more"``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        entries: ``(name, RGB colour)`` pairs, top to bottom.
        avoid: what the legend should not cover (e.g. the painted pixels).
    """
    out = np.ascontiguousarray(image).copy()
    if not entries:
        return out
    h, w = out.shape[:2]
    scale = float(np.clip(min(h, w) / 900, 0.3, 1.2))
    (_, th), base = cv2.getTextSize("Ag", FONT, scale, 1)
    row, pad = th + base + 3, 3
    fit = max(1, (h - 2 * pad) // row)
    if len(entries) > fit:  # the last row that fits says how many are left out
        entries = [*entries[: fit - 1], (f"+{len(entries) - fit + 1} more", None)]
    width = max(cv2.getTextSize(name, FONT, scale, 1)[0][0] for name, _ in entries)
    pw, ph = min(w, pad * 3 + th + width), min(h, pad * 2 + row * len(entries))
    corners = [(0, 0), (w - pw, 0), (0, h - ph), (w - pw, h - ph)]
    x0, y0 = corners[0]
    if avoid is not None:
        x0, y0 = min(corners, key=lambda c: int(avoid[c[1] : c[1] + ph, c[0] : c[0] + pw].sum()))
    panel = out[y0 : y0 + ph, x0 : x0 + pw]
    panel[:] = cv2.addWeighted(
        panel, 1 - LEGEND_ALPHA, np.full_like(panel, LEGEND_PANEL), LEGEND_ALPHA, 0.0
    )
    for k, (name, color) in enumerate(entries):
        top = y0 + pad + k * row
        if color is not None:
            swatch = tuple(int(c) for c in color)
            cv2.rectangle(out, (x0 + pad, top + 1), (x0 + pad + th, top + th + 1), swatch, -1)
        cv2.putText(out, name, (x0 + 2 * pad + th, top + th + 1), FONT, scale, (255, 255, 255),
                    1, cv2.LINE_AA)  # fmt: skip
    return out


def draw_segmentation(
    image: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    colors: np.ndarray,
    background: int | None = 0,
    alpha: float = 0.5,
    no_outline: Sequence[int] = (),
) -> np.ndarray:
    """A label map drawn on a copy of the image: each class's colour blended in
    (:func:`overlay_segmentation`), each class region outlined in it
    (:func:`draw_label_outlines`) and a legend of the class colours (:func:`draw_legend`;
    every class when there are at most ``LEGEND_ALL``, else those present), the background
    (``background``: neither painted, outlined nor in the legend) excepted.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        labels: ``(H, W)`` integer labels in ``0..C-1``, the image's size.
        names: ``C`` class names.
        colors: ``(C, 3)`` uint8 RGB (:func:`class_colors`).
        background: the label left as the image is (None: paint every label).
        alpha: the colours' weight in the blend.
        no_outline: labels painted and in the legend but not outlined (regions that are
            themselves thin lines, such as ignored boundary pixels).
    """
    unpainted = () if background is None else (background,)
    out = overlay_segmentation(image, labels, colors, alpha, background)
    out = draw_label_outlines(out, labels, colors, [*unpainted, *no_outline])
    present = set(np.unique(labels).tolist())
    shown = [
        c for c in range(len(names))
        if c not in unpainted and (len(names) <= LEGEND_ALL or c in present)
    ]  # fmt: skip
    painted = labels != background if background is not None else None
    return draw_legend(out, [(names[c], tuple(colors[c])) for c in shown], painted)


def draw_instance_masks(
    image: np.ndarray,
    masks: Tensor | np.ndarray,
    labels: Tensor | np.ndarray | Sequence[int],
    colors: np.ndarray,
    alpha: float = 0.5,
) -> np.ndarray:
    """Instance masks drawn on a copy of the image: each object's pixels blended with its
    class's colour (weight ``alpha``) and outlined in it (:func:`draw_label_outlines` of the map
    of which object each pixel shows, so objects that touch or overlap are outlined on each
    side). Masks are drawn in order: where they overlap, the later one is shown.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(N, H, W)`` bool, the image's size (``Result.masks``).
        labels: ``(N,)`` class of each mask, in ``0..C-1``.
        colors: ``(C, 3)`` uint8 RGB (:func:`class_colors`).
        alpha: the colours' weight in the blend.
    """
    masks = np.asarray(masks, dtype=bool)
    n = len(masks)
    if n == 0:
        return np.ascontiguousarray(image).copy()
    # which object each pixel shows: the last mask covering it (0: none, i + 1: mask i)
    last = n - 1 - np.argmax(masks[::-1], axis=0)
    shown = np.where(masks.any(0), last + 1, 0)
    instance_colors = np.concatenate(
        [np.zeros((1, 3), np.uint8), colors[np.asarray(labels, np.int64).reshape(-1)]]
    )
    out = overlay_segmentation(np.ascontiguousarray(image), shown, instance_colors, alpha, 0)
    return draw_label_outlines(out, shown, instance_colors, skip=[0])


def draw_prediction(
    image: np.ndarray,
    prediction: dict[str, Tensor],
    class_names: Sequence[str],
    colors: np.ndarray,
) -> np.ndarray:
    """One image's prediction drawn on a copy of it: :func:`draw_detections` for ``boxes``,
    ``scores``, ``labels``, over :func:`draw_instance_masks` of ``masks`` (``(N, H, W)`` bool,
    the best-scoring drawn last, as its box) when the prediction has them;
    :func:`draw_segmentation` (half-transparent colours, outlines and a legend; ``background``
    left unpainted when class 0 is named so) for ``sem_seg`` (``(H, W)`` int64)."""
    if "sem_seg" in prediction:
        background = 0 if class_names[0] == "background" else None
        labels = prediction["sem_seg"].numpy()
        return draw_segmentation(image, labels, class_names, colors, background)
    boxes, scores, labels = prediction["boxes"], prediction["scores"], prediction["labels"]
    if prediction.get("masks") is not None:
        order = scores.argsort()
        image = draw_instance_masks(image, prediction["masks"][order], labels[order], colors)
    return draw_detections(image, boxes, scores, labels, class_names, colors)
