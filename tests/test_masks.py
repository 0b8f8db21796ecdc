"""Instance masks (``visionkit/structures/masks.py``): hand-computed crops of a polygon and of a
bitmap, torchvision's and detectron2's rules, geometry, RLE, and :func:`paste_masks` against
torchvision's ``paste_masks_in_image``."""

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection.roi_heads import paste_masks_in_image, project_masks_on_boxes

from visionkit.structures.masks import InstanceMasks, encode_rles, paste_masks

SQUARE = [[(6.25, 6.25), (9.75, 6.25), (9.75, 9.75), (6.25, 9.75)]]  # one instance, one part


def test_a_square_polygon_rasterized_inside_boxes():
    masks = InstanceMasks.from_polygons([SQUARE], 20, 20)
    # box 8 px wide at 4 x 4: half a pixel per box pixel; the square spans 1.125..2.875 there,
    # so it covers 7/8 of pixels 1 and 2 (their centres) and nothing of 0 and 3
    out = masks.crop_and_resize(torch.tensor([[4.0, 4.0, 12.0, 12.0]]), 4)
    expected = torch.zeros(4, 4)
    expected[1:3, 1:3] = 1
    assert out.shape == (1, 4, 4) and out.dtype == torch.float32
    assert torch.equal(out[0], expected)
    # the square's own box: all of it; a box beside it: none
    boxes = torch.tensor([[6.25, 6.25, 9.75, 9.75], [12.0, 12.0, 16.0, 16.0]])
    out = masks.crop_and_resize(boxes, 4, indices=torch.tensor([0, 0]))
    assert torch.equal(out[0], torch.ones(4, 4)) and torch.equal(out[1], torch.zeros(4, 4))


def test_polygons_follow_detectron2s_rasterization():
    # detectron2's rasterize_polygons_within_box: shift, scale by size / max(side, 0.1), pycocotools
    poly = np.array([[3.2, 1.1], [17.9, 4.4], [12.3, 15.8], [2.4, 11.0]], dtype=np.float32)
    box = np.array([2.0, 1.0, 18.5, 16.25])
    flat = poly.reshape(-1).astype(np.float64)
    flat[0::2] = (flat[0::2] - box[0]) * 28 / (box[2] - box[0])
    flat[1::2] = (flat[1::2] - box[1]) * 28 / (box[3] - box[1])
    rle = mask_util.merge(mask_util.frPyObjects([flat], 28, 28))
    expected = torch.from_numpy(mask_util.decode(rle).astype(np.float32))
    boxes = torch.from_numpy(box[None]).float()
    ours = InstanceMasks.from_polygons([[poly]], 20, 20).crop_and_resize(boxes)
    assert torch.equal(ours[0], expected) and 0 < expected.sum() < 28 * 28


def test_a_bitmap_cropped_by_roi_align_as_torchvision():
    bitmap = torch.zeros(1, 8, 8, dtype=torch.uint8)
    bitmap[0, :, :4] = 1  # the left half
    box = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    out = InstanceMasks.from_bitmaps(bitmap).crop_and_resize(box, 4)
    # bins of 2 px, 2 samples each at x = 0.5, 1.5 | 2.5, 3.5 | ...: the sample at 3.5 is half
    # in the ones; samples beyond the last pixel take its value (0)
    assert torch.allclose(out[0], torch.tensor([[1.0, 0.75, 0.0, 0.0]]).expand(4, 4))
    # several instances, boxes in any order: torchvision's project_masks_on_boxes
    g = torch.Generator().manual_seed(0)
    bitmaps = torch.rand(3, 30, 40, generator=g) > 0.5
    boxes = torch.tensor([[1.0, 2.0, 20.0, 25.0], [5.5, 0.0, 39.0, 12.3], [0.0, 0.0, 40.0, 30.0]])
    index = torch.tensor([2, 0, 2])
    theirs = project_masks_on_boxes(bitmaps.to(torch.uint8), boxes, index, 28)
    ours = InstanceMasks.from_bitmaps(bitmaps).crop_and_resize(boxes, 28, index)
    assert torch.equal(ours, theirs)


def test_paste_masks_by_hand():
    # a 2 x 2 mask of ones in box [2, 6]^2: padded to 4 x 4, the box widened by 4 / 2 to
    # [0, 8]^2 (9 x 9 pixels); the profile along a side is 0, .17, .61, 1, 1, 1, .61, .17, 0,
    # and a pixel is in where the product of its two profiles exceeds 0.5
    out = paste_masks(torch.ones(1, 1, 2, 2), torch.tensor([[2.0, 2.0, 6.0, 6.0]]), 10, 10)
    expected = torch.zeros(10, 10, dtype=torch.bool)
    expected[2:7, 3:6] = expected[3:6, 2:7] = True
    assert out.shape == (1, 10, 10) and torch.equal(out[0], expected)
    assert paste_masks(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), 5, 7).shape == (0, 5, 7)


def test_paste_masks_equal_torchvisions():
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(7, 1, 28, 28, generator=g)
    boxes = torch.tensor([
        [10.0, 20.0, 90.0, 60.0], [0.0, 0.0, 119.9, 79.9], [50.3, 40.7, 51.1, 41.2],
        [100.0, 70.0, 120.0, 80.0], [0.0, 33.3, 12.6, 80.0], [33.3, 0.0, 66.6, 5.5],
        [7.0, 7.0, 7.0, 7.0],
    ])  # fmt: skip
    theirs = paste_masks_in_image(masks, boxes, (80, 120))[:, 0] > 0.5
    assert torch.equal(paste_masks(masks, boxes, 80, 120), theirs)
    assert torch.equal(paste_masks(masks, boxes, 80, 120, 0.3), paste_masks_in_image(
        masks, boxes, (80, 120))[:, 0] > 0.3)  # fmt: skip


def test_geometry_of_polygons_by_hand():
    tri = np.array([[2.0, 1.0], [8.0, 1.0], [2.0, 7.0]], dtype=np.float32)
    m = InstanceMasks.from_polygons([[tri]], 10, 12)
    np.testing.assert_array_equal(m.flip_horizontal().polygons[0][0], [[10, 1], [4, 1], [10, 7]])
    r = m.resize(20, 6)
    assert (r.height, r.width) == (20, 6)
    np.testing.assert_allclose(r.polygons[0][0], [[1, 2], [4, 2], [1, 14]])
    # the window [4, 12) x [0, 4): the triangle's corner right of x = 4 below y = 4
    c = m.crop(4, 0, 12, 4)
    assert (c.height, c.width) == (4, 8)
    got = {tuple(np.round(p, 4)) for p in c.polygons[0][0]}
    assert got == {(0.0, 1.0), (4.0, 1.0), (1.0, 4.0), (0.0, 4.0)}
    assert m.crop(20, 20, 30, 30).polygons == [[]]  # nothing left: no part
    # a 90-degree rotation about the image's centre as cv2 takes it (pixel centres at integers)
    rot = np.array([[0.0, -1.0, 11.0], [1.0, 0.0, 0.0]])
    a = InstanceMasks.from_polygons([[np.array([[0, 0], [3, 0], [3, 2], [0, 2]])]], 12, 12)
    warped = a.affine(rot, 12, 12)
    expected = cv2.warpAffine(a.to_bitmaps()[0].numpy().astype(np.uint8), rot, (12, 12))
    assert torch.equal(warped.to_bitmaps()[0], torch.from_numpy(expected).bool())
    assert torch.equal(a.to_bitmaps()[0, :2, :3], torch.ones(2, 3, dtype=torch.bool))


def test_geometry_of_bitmaps_and_indexing():
    b = torch.zeros(2, 4, 6, dtype=torch.bool)
    b[0, 1, 0] = b[1, 3, 5] = True
    m = InstanceMasks.from_bitmaps(b)
    assert len(m) == 2 and (m.height, m.width) == (4, 6) and not m.is_polygons
    assert m.flip_horizontal().to_bitmaps()[0, 1, 5]
    assert torch.equal(m.resize(8, 12).to_bitmaps()[0, 2:4, 0:2], torch.ones(2, 2, dtype=bool))
    c = m.crop(-1, 1, 5, 4)  # one column of padding on the left
    assert c.to_bitmaps().shape == (2, 3, 6) and c.to_bitmaps()[0, 0, 1]
    assert len(m[torch.tensor([True, False])]) == 1 and m[torch.tensor([1])].to_bitmaps()[0, 3, 5]
    p = InstanceMasks.from_polygons([SQUARE, [], SQUARE], 20, 20)
    assert len(p[1:]) == 2 and len(p[np.array([0, 2])]) == 2 and p[1].polygons == [[]]
    assert p[1].to_bitmaps().sum() == 0


def test_rle_round_trip_and_bad_rles():
    p = InstanceMasks.from_polygons([SQUARE, []], 20, 20)
    rles = p.to_rles()
    assert all(isinstance(r["counts"], str) and r["size"] == [20, 20] for r in rles)
    back = InstanceMasks.from_rles(rles, 20, 20)
    assert torch.equal(back.to_bitmaps(), p.to_bitmaps()) and back.to_bitmaps()[0].sum() == 16
    assert encode_rles(p.to_bitmaps()) == rles
    uncompressed = {"size": [2, 3], "counts": [1, 2, 3]}
    assert InstanceMasks.from_rles([uncompressed], 2, 3).to_bitmaps()[0].sum() == 2
    with pytest.raises(ValueError, match="size"):
        InstanceMasks.from_rles(rles, 20, 21)
    with pytest.raises(ValueError, match="sum to 5"):
        InstanceMasks.from_rles([{"size": [2, 3], "counts": [1, 4]}], 2, 3)
    with pytest.raises(ValueError, match="polygon"):
        InstanceMasks.from_polygons([[[1.0, 2.0, 3.0]]], 5, 5)
    with pytest.raises(ValueError, match="polygon"):
        InstanceMasks.from_polygons([[[(1.0, float("nan")), (2, 2), (3, 1)]]], 5, 5)


coordinate = st.floats(-50, 150, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(coordinate, coordinate), min_size=0, max_size=8),
    st.tuples(coordinate, coordinate, coordinate, coordinate),
)
def test_any_polygon_crops_into_the_frame_and_rasterizes_in_any_box(points, box):
    m = InstanceMasks.from_polygons([[np.array(points, dtype=np.float32).reshape(-1, 2)]], 60, 80)
    cropped = m.crop(10, 5, 70, 45)
    for part in cropped.polygons[0]:
        assert len(part) >= 3
        assert (part >= 0).all() and (part[:, 0] <= 60).all() and (part[:, 1] <= 40).all()
    assert cropped.to_bitmaps().shape == (1, 40, 60)
    out = m.crop_and_resize(torch.tensor([box]), 7)
    assert out.shape == (1, 7, 7) and set(out.unique().tolist()) <= {0.0, 1.0}
