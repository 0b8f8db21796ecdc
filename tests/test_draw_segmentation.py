"""Segmentation drawings (visionkit/utils/draw.py): class outlines, the legend of class colours,
and the whole overlay that ``visionkit predict`` (Result.plot) and ``visionkit browse`` draw;
detection drawings unchanged."""

import cv2
import numpy as np
import torch

from visionkit.utils.draw import (
    FONT,
    LEGEND_ALL,
    draw_detections,
    draw_label_outlines,
    draw_legend,
    draw_prediction,
    draw_segmentation,
    overlay_segmentation,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def has(image: np.ndarray, color) -> np.ndarray:
    """``(H, W)`` bool: the pixels of exactly ``color``."""
    return (image == np.array(color, np.uint8)).all(-1)


def test_outlines_are_the_region_pixels_next_to_another_label():
    image = np.full((10, 12, 3), 128, np.uint8)
    labels = np.zeros((10, 12), np.int64)
    labels[2:6, 3:8] = 1  # a 4 x 5 rectangle of class 1
    colors = np.array([BLUE, RED], np.uint8)
    out = draw_label_outlines(image, labels, colors, skip=[0])
    ring = np.zeros((10, 12), bool)
    ring[2:6, 3:8] = True
    ring[3:5, 4:7] = False  # the inside of the rectangle is no outline
    np.testing.assert_array_equal(has(out, RED), ring)
    assert (out[~ring] == 128).all() and (image == 128).all()  # a copy; background untouched
    # the image's own border is no outline: one label everywhere draws nothing
    assert (draw_label_outlines(image, np.ones((10, 12), np.int64), colors) == 128).all()
    # two classes side by side: each outlined on its own side, in its own colour
    labels = np.zeros((10, 12), np.int64)
    labels[:, 5:] = 1
    out = draw_label_outlines(image, labels, colors)
    assert has(out, BLUE)[:, 4].all() and has(out, RED)[:, 5].all()
    assert (out[:, :4] == 128).all() and (out[:, 6:] == 128).all()


def test_legend_takes_the_emptiest_corner_and_says_what_does_not_fit():
    image = np.full((200, 300, 3), 128, np.uint8)
    avoid = np.zeros((200, 300), bool)
    avoid[:100, :150] = True  # painted top left: the legend goes top right
    out = draw_legend(image, [("a", RED), ("b", GREEN)], avoid)
    red, green = np.nonzero(has(out, RED)), np.nonzero(has(out, GREEN))
    assert len(red[0]) and len(green[0])
    assert red[1].min() > 150 and red[0].max() < 100  # the swatches: top right
    assert green[0].min() > red[0].max()  # one under the other
    assert (out[150:, :] == 128).all() and (out[:, :150] == 128).all()
    # no avoid mask: top left
    assert np.nonzero(has(draw_legend(image, [("a", RED)]), RED))[1].max() < 150
    # a 40 px image has room for a few rows: the last says "+N more", every row on the image
    (_, th), base = cv2.getTextSize("Ag", FONT, 0.3, 1)
    fit = (40 - 6) // (th + base + 3)
    colors = [(10 * k, 0, 200) for k in range(10)]
    out = draw_legend(np.full((40, 60, 3), 128, np.uint8), [(str(k), c) for k, c in
                                                           enumerate(colors)])  # fmt: skip
    assert [bool(has(out, c).any()) for c in colors] == [k < fit - 1 for k in range(10)]
    assert (draw_legend(image, []) == image).all()


def test_a_few_classes_all_in_the_legend_many_only_those_present():
    image = np.full((120, 160, 3), 128, np.uint8)
    labels = np.zeros((120, 160), np.int64)
    labels[60:100, 100:150] = 1
    few = np.array([BLUE, RED, GREEN], np.uint8)
    out = draw_segmentation(image, labels, ["background", "cat", "dog"], few)
    # the swatch of the absent dog too; the background (unpainted) neither drawn nor listed
    assert has(out, GREEN).any() and has(out, RED).any() and not has(out, BLUE).any()
    assert (out[:40, 60:100] == 128).all()  # far from the cat and the legend: as it was
    many = np.array([[20 * k, 255 - 20 * k, 7] for k in range(LEGEND_ALL + 2)], np.uint8)
    names = [f"c{k}" for k in range(LEGEND_ALL + 2)]
    names[0] = "background"
    labels[10:30, 10:30] = 4
    out = draw_segmentation(image, labels, names, many)
    listed = [k for k in range(len(names)) if has(out, many[k]).any()]
    assert listed == [1, 4]  # outlines and swatches of the classes present only
    # the blend inside a region is overlay_segmentation's
    blended = overlay_segmentation(image, labels, many, 0.5, 0)
    assert (out[70:90, 110:140] == blended[70:90, 110:140]).all()


def test_draw_prediction_outlines_label_maps_and_leaves_boxes_as_they_were():
    image = np.full((60, 80, 3), 128, np.uint8)
    colors = np.array([BLUE, RED], np.uint8)
    labels = torch.zeros(60, 80, dtype=torch.int64)
    labels[20:40, 30:60] = 1
    out = draw_prediction(image, {"sem_seg": labels}, ["background", "cat"], colors)
    assert (out == draw_segmentation(image, labels.numpy(), ["background", "cat"], colors)).all()
    assert has(out, RED)[20, 30:60].all()  # the cat's outline
    boxes = {"boxes": torch.tensor([[10.0, 20.0, 50.0, 55.0]]), "scores": torch.tensor([0.9]),
             "labels": torch.tensor([1])}  # fmt: skip
    expected = draw_detections(image, boxes["boxes"], boxes["scores"], boxes["labels"],
                               ["a", "b"], colors)  # fmt: skip
    assert (draw_prediction(image, boxes, ["a", "b"], colors) == expected).all()
