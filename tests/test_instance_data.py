"""Instance masks (task "instance"): read from COCO polygons, RLE and crowd RLE, from the shapes
dataset and from YOLO segment lines, kept as written in the packed index (never as bitmaps),
moved and dropped with their boxes by the transforms; hostile mask annotations refused in one
line; the browser's ground-truth masks. The segm evaluation: tests/test_instance_eval.py."""

import dataclasses
import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fuzz_strategies import values
from fuzz_support import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from visionkit.analysis.browse import draw_detection_sample
from visionkit.config.schema import AugmentConfig, DatasetConfig, ProposalConfig
from visionkit.data import build_dataset
from visionkit.data.coco import CocoDetection
from visionkit.data.coco_checks import check_segmentation
from visionkit.data.instance_masks import (
    instance_masks,
    mask_shapes,
    to_bitmaps,
    unpack_segmentations,
)
from visionkit.data.shapes import ensure_shapes
from visionkit.data.transforms import build_transforms
from visionkit.data.yolo import YoloDetection
from visionkit.errors import ConfigError, DataError
from visionkit.structures.masks import InstanceMasks

H, W = 48, 64
STILL = {"hflip": 0.0, "scale": 0.0, "translate": 0.0, "exposure": 1.0, "saturation": 1.0}


def _rle(rows: slice, cols: slice, compressed: bool = True) -> dict:
    mask = np.zeros((H, W), np.uint8, order="F")
    mask[rows, cols] = 1
    if not compressed:  # column-major runs, starting with 0s
        flat = mask.flatten(order="F").astype(int)
        changes = np.flatnonzero(np.diff(flat)) + 1
        return {"size": [H, W], "counts": np.diff(np.r_[0, changes, flat.size]).tolist()}
    return {"size": [H, W], "counts": mask_utils.encode(mask)["counts"].decode()}


def _ann(k: int, image_id: int, cat: int, seg, crowd: int = 0, bbox=None) -> dict:
    if bbox is None:
        compressed = isinstance(seg, dict) and isinstance(seg["counts"], str)
        rle = seg if compressed else mask_utils.frPyObjects(seg, H, W)
        rle = mask_utils.merge(rle) if isinstance(rle, list) else rle
        bbox = [float(v) for v in mask_utils.toBbox(rle)]
    return {"id": k, "image_id": image_id, "category_id": cat, "bbox": bbox, "iscrowd": crowd,
            "segmentation": seg}  # fmt: skip


def coco_data() -> dict:
    """Image 1: a polygon, a two-part polygon, a crowd RLE; image 2: a non-crowd uncompressed
    RLE, a triangle, a degenerate box (dropped with its mask); image 3: no objects."""
    anns = [
        _ann(1, 1, 7, [[4, 5, 30, 5, 30, 25, 4, 25]]),
        _ann(2, 1, 9, [[35, 10, 50, 10, 50, 20], [40, 30, 60, 30, 60, 44, 40, 44]]),
        _ann(3, 1, 7, _rle(slice(30, 46), slice(2, 20)), crowd=1),
        _ann(4, 2, 9, _rle(slice(8, 30), slice(20, 41), compressed=False)),
        _ann(5, 2, 7, [[5, 40, 25, 40, 15, 30.5]]),
        _ann(6, 2, 7, [[10, 10, 10.5, 10, 10.5, 15]], bbox=[10, 10, 0.5, 5]),
    ]
    images = [{"id": i, "file_name": f"{i}.png", "width": W, "height": H} for i in (1, 2, 3)]
    return {"images": images, "annotations": anns,
            "categories": [{"id": 7, "name": "a"}, {"id": 9, "name": "b"}]}  # fmt: skip


def coco_folder(tmp_path: Path, data: dict | None = None) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir(exist_ok=True)
    for i in (1, 2, 3):
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), rng.integers(0, 255, (H, W, 3), np.uint8))
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(json.dumps(coco_data() if data is None else data))
    return ann_file, tmp_path / "img"


def training_anns(ann_file: Path) -> dict[int, list[dict]]:
    """Per image, its objects to train on in file order: not crowd, box wider and taller than
    1 px."""
    data = json.loads(ann_file.read_text())
    out: dict[int, list[dict]] = {im["id"]: [] for im in data["images"]}
    for a in data["annotations"]:
        if not a["iscrowd"] and a["bbox"][2] > 1 and a["bbox"][3] > 1:
            out[a["image_id"]].append(a)
    return out


def test_coco_polygons_rle_and_crowd_become_the_targets_masks(tmp_path):
    ann_file, images = coco_folder(tmp_path)
    with pytest.warns(UserWarning, match="dropped 1 degenerate"):
        ds = CocoDetection(ann_file, images, masks=True)
    truth, expected = COCO(str(ann_file)), training_anns(ann_file)
    kinds = []
    for i, image_id in enumerate(ds.ids):
        _, target = ds[i]
        masks = target["masks"]
        assert isinstance(masks, InstanceMasks) and (masks.height, masks.width) == (H, W)
        assert len(masks) == len(target["boxes"]) == len(expected[image_id])
        want = [truth.annToMask(a).astype(bool) for a in expected[image_id]]
        want = torch.from_numpy(np.stack(want)) if want else torch.zeros(0, H, W, dtype=bool)
        assert torch.equal(masks.to_bitmaps(), want)
        kinds.append(masks.is_polygons)
    assert kinds == [True, False, True]  # image 2's RLE object: every mask a bitmap
    assert ds.num_objects == 4  # the crowd region and the degenerate box are no targets


def test_the_packed_index_keeps_polygons_and_rle_not_bitmaps(tmp_path):
    ann_file, images = coco_folder(tmp_path)
    with pytest.warns(UserWarning):
        ds = CocoDetection(ann_file, images, masks=True)
    expected = training_anns(ann_file)
    for row, image_id in enumerate(ds.ids):  # every image kept: rows are positions
        stored = unpack_segmentations(ds._segmentations, row)
        assert stored == [a["segmentation"] for a in expected[image_id]]  # as written
    index = ds._segmentations.values.nbytes
    assert index < 1500 < ds.num_objects * H * W  # far from the bitmaps it describes
    copied = pickle.loads(pickle.dumps(ds))
    assert [len(copied[i][1]["masks"]) for i in range(3)] == [2, 2, 0]
    with pytest.warns(UserWarning):
        without = CocoDetection(ann_file, images)  # detection models: nothing of the masks
    assert without._segmentations is None and "masks" not in without[0][1]


def test_shapes_instance_dataset_through_build_dataset(tmp_path):
    cfg = DatasetConfig(type="shapes", root=str(tmp_path), splits=["val"], num_images=4,
                        image_size=64)  # fmt: skip
    ds = build_dataset(cfg, AugmentConfig(), (64, 64), train=False, task="instance")
    truth = ds.coco
    for i, image_id in enumerate(ds.ids):
        _, target = ds[i]
        anns = truth.imgToAnns[image_id]
        assert target["masks"].is_polygons and len(target["masks"]) == len(anns)
        got = target["masks"].to_bitmaps().numpy()
        # the outlines as the model holds them: float32 (a boundary pixel may flip)
        f32 = [[np.float32(p).tolist() for p in a["segmentation"]] for a in anns]
        want = [mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(p, 64, 64))) for p in f32]
        assert np.array_equal(got, np.stack(want).astype(bool))
        raw = np.stack([truth.annToMask(a) for a in anns]).astype(bool)
        assert (got != raw).sum((1, 2)).max() <= 2
    voc = DatasetConfig(type="voc", root=str(tmp_path))
    with pytest.raises(ConfigError, match="voc detection datasets hold boxes, not the instance"):
        build_dataset(voc, AugmentConfig(), (64, 64), train=False, task="instance")
    props = DatasetConfig(type="shapes", root=str(tmp_path), splits=["val"], num_images=4,
                          image_size=64, proposals=ProposalConfig(method="file"))  # fmt: skip
    with pytest.raises(ConfigError, match="proposals applies to detectors"):
        build_dataset(props, AugmentConfig(), (64, 64), train=False, task="instance")


YOLO_LABELS = "0 0.1 0.1 0.5 0.1 0.5 0.6 0.1 0.6\n1 0.6 0.2 0.9 0.5 0.6 0.8\n"


def _yolo(tmp_path: Path, labels: str) -> Path:
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / "train" / "a.png"), np.zeros((50, 100, 3), np.uint8))
    (tmp_path / "labels" / "train" / "a.txt").write_text(labels)
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [cat, dog]\n")
    return tmp_path / "data.yaml"


def test_yolo_segment_lines_become_masks_and_box_lines_are_refused(tmp_path):
    ds = YoloDetection(_yolo(tmp_path / "ok", YOLO_LABELS), ["train"], masks=True)
    _, target = ds[0]
    polygons = [np.array([[10, 5], [50, 5], [50, 30], [10, 30]], np.float32),
                np.array([[60, 10], [90, 25], [60, 40]], np.float32)]  # fmt: skip
    assert target["masks"].is_polygons
    for got, want in zip(target["masks"].polygons, polygons, strict=True):
        np.testing.assert_allclose(got[0], want, atol=1e-4)
    assert target["boxes"].tolist() == [[10, 5, 50, 30], [60, 10, 90, 40]]
    anns = ds.coco.imgToAnns[1]  # the evaluation's ground truth holds the polygons too
    assert [len(a["segmentation"][0]) for a in anns] == [8, 6]
    assert np.array_equal(ds.coco.annToMask(anns[0]).astype(bool),
                          target["masks"].to_bitmaps()[0].numpy())  # fmt: skip
    boxes = _yolo(tmp_path / "box", YOLO_LABELS + "1 0.5 0.5 0.2 0.2\n")
    assert "masks" not in YoloDetection(boxes, ["train"])[0][1]  # a detector reads them all
    with pytest.raises(DataError, match=r"a\.txt:3: a box without an outline; instance") as e:
        YoloDetection(boxes, ["train"], masks=True)
    assert "\n" not in str(e.value)


# --- the transforms move masks with their boxes ---------------------------------------------

PIPELINES = {
    "flip": (AugmentConfig(**{**STILL, "hflip": 1.0}), ()),
    "stretch, jitter, flip": (AugmentConfig(), (96, 80)),
    "letterbox, jitter": (AugmentConfig(letterbox=True, hflip=0.0, translate=0.4), (80, 80)),
    "rescale, pad, crop": (AugmentConfig(scale_range=[0.5, 1.6], crop_size=[56, 72]), ()),
}


@pytest.fixture(scope="module")
def shapes_samples(tmp_path_factory):
    """``(image, boxes, labels, polygons)`` of 6 shapes images (64 px), original pixels."""
    paths = ensure_shapes(tmp_path_factory.mktemp("shapes"), "train", 6, 64, progress=False)
    ds = CocoDetection(paths["ann_file"], paths["images"], masks=True)
    return [(ds.read(ds.ids[i]), ds.record(i).boxes, ds.record(i).labels, ds.instance_shapes(i))
            for i in range(len(ds))]  # fmt: skip


def _bounds(mask: np.ndarray) -> np.ndarray:
    """xyxy of a bitmap's pixels (continuous: the last column's right edge)."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_transforms_move_masks_with_their_boxes(pipeline, shapes_samples):
    """Polygons (as keypoints) and bitmaps (as pixels) under the same draw: one mask per kept
    box, in its order; each outline's vertices span its box (clipped; to 0.02 px, the file's
    rounding); each mask's pixels lie inside its box (1 px; a bitmap scaled up by nearest
    neighbour 1.5) and, unless the border cuts it, reach within 3 px of each side (a star's tip
    is thinner than a pixel for a while)."""
    aug, size = PIPELINES[pipeline]
    transform = build_transforms(aug, size, train=True)
    kept = dropped = 0
    for seed in range(4):
        for image, boxes, labels, polygons in shapes_samples:
            bitmaps = to_bitmaps(polygons, image.shape[:2])
            out = []
            for shapes in (polygons, bitmaps):
                transform.set_seed(seed)
                out.append(transform.apply_instances(image, boxes, labels, shapes))
            (img, b, lb, polys), (img2, b2, lb2, bits) = out
            assert np.array_equal(img, img2) and np.array_equal(b, b2)
            assert np.array_equal(lb, lb2) and len(polys) == len(bits) == len(b)
            raster = to_bitmaps(polys, img.shape[:2]).astype(bool)
            assert bits.shape == raster.shape
            for k in range(len(b)):
                if (b[k, 2:] - b[k, :2]).min() < 4:
                    continue  # a sliver at the border
                h, w = img.shape[:2]
                points = np.concatenate(polys[k])
                span = np.concatenate([points.min(0), points.max(0)]).clip(0, [w, h, w, h])
                np.testing.assert_allclose(span, b[k], atol=0.02)
                # a box cut by the border is the visible part of the whole object's box
                cut = b[k, 0] <= 0 or b[k, 1] <= 0 or b[k, 2] >= w or b[k, 3] >= h
                for mask, slack in ((raster[k], 1.0), (bits[k], 1.5)):  # bitmaps: scaled up
                    inward = (_bounds(mask) - b[k]) * np.array([1, 1, -1, -1])
                    assert (inward >= -slack).all() and (cut or (inward <= 3).all())
            kept += len(b)
            dropped += len(boxes) - len(b)
    assert kept > 30
    if pipeline in ("letterbox, jitter", "rescale, pad, crop"):
        assert dropped > 0  # some boxes (and their masks) left the image


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_masks_land_on_the_pixels_they_outline(pipeline):
    """A white rectangle's outline, as a polygon and as a bitmap, against the rectangle the
    transformed image shows: the polygon's pixels are the image's (a pixel cut in half by an
    edge may go either way); the bitmap, resized by nearest neighbour as albumentations resizes
    masks, within 1 px."""
    aug, size = PIPELINES[pipeline]
    aug = dataclasses.replace(aug, exposure=1.0, saturation=1.0)  # the pixels keep their values
    transform = build_transforms(aug, size, train=True)
    image = np.zeros((H, W, 3), np.uint8)
    image[10:30, 20:44] = 255
    box = np.array([[20, 10, 44, 30]], np.float32)
    polygon = [[np.array([[20, 10], [44, 10], [44, 30], [20, 30]], np.float32)]]
    seen = 0
    for seed in range(12):
        out = []
        for shapes in (polygon, to_bitmaps(polygon, (H, W))):
            transform.set_seed(seed)
            out.append(transform.apply_instances(image, box, np.zeros(1), shapes))
        (img, b, _, polys), (_, _, _, bits) = out
        shown = img[..., 0] > 127  # the rectangle as the image shows it (grey padding: 114)
        if not len(b) or shown.sum() < 50:
            continue
        raster = to_bitmaps(polys, img.shape[:2])[0].astype(bool)
        np.testing.assert_allclose(_bounds(raster), _bounds(shown), atol=1)
        assert (raster != shown).sum() <= shown.sum() * 0.1
        np.testing.assert_allclose(_bounds(bits[0]), _bounds(shown), atol=1)
        seen += 1
    assert seen >= 6


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_rectangle_outlines_land_exactly_on_their_boxes(pipeline):
    """An axis-aligned rectangle's outline and its box go through the same geometry: the
    outline's bounds (clipped to the image) equal the box to 1e-3 px."""
    aug, size = PIPELINES[pipeline]
    transform = build_transforms(aug, size, train=True)
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (H, W, 3), np.uint8)
    x0, y0 = rng.uniform(0, [W - 20, H - 20], (12, 2)).T
    x1, y1 = x0 + rng.uniform(8, 20, 12), y0 + rng.uniform(8, 20, 12)
    boxes = np.stack([x0, y0, x1, y1], 1).astype(np.float32)
    polys = [[np.array([[a, b], [c, b], [c, d], [a, d]], np.float32)] for a, b, c, d in boxes]
    tol = 1e-3
    for seed in range(6):
        transform.set_seed(seed)
        img, b, _, moved = transform.apply_instances(image, boxes, np.arange(12), polys)
        h, w = img.shape[:2]
        for box, (p,) in zip(b, moved, strict=True):
            got = np.concatenate([p.min(0), p.max(0)]).clip(0, [w, h, w, h])
            np.testing.assert_allclose(got, box, atol=tol)


def test_flip_and_resize_move_polygons_exactly():
    transform = build_transforms(AugmentConfig(**{**STILL, "hflip": 1.0}), (96, 80), train=True)
    poly = np.array([[3.25, 4.5], [40, 7], [20.5, 30]], np.float32)
    image = np.zeros((H, W, 3), np.uint8)
    _, _, _, (moved,) = transform.apply_instances(
        image, np.array([[3.25, 4.5, 40, 30]]), np.array([0]), [[poly]]
    )
    want = np.stack([(W - poly[:, 0]) * 80 / W, poly[:, 1] * 96 / H], 1)
    np.testing.assert_allclose(moved[0], want, atol=1e-4)


def test_images_without_objects_keep_empty_masks(tmp_path):
    ann_file, images = coco_folder(tmp_path)
    with pytest.warns(UserWarning):
        ds = CocoDetection(ann_file, images, build_transforms(AugmentConfig(), (32, 40), True),
                           masks=True)  # fmt: skip
    _, target = ds[2]
    masks = target["masks"]
    assert len(masks) == 0 and (masks.height, masks.width) == (32, 40)
    for shapes in ([], np.zeros((0, H, W), np.uint8)):
        out = ds.transforms.apply_instances(np.zeros((H, W, 3), np.uint8), [], [], shapes)
        assert len(out[3]) == 0 and out[0].shape == (32, 40, 3)


# --- hostile mask annotations ----------------------------------------------------------------

HOSTILE = [
    ([[1, 2, 10, 2]], r"holds a polygon of 2 points \(an outline needs 3\)"),
    ([[1, 2, 10, "x", 5, 9]], "holds a polygon whose coordinates are not all finite"),
    ({"size": [H, W + 1], "counts": [H * (W + 1)]}, r"is an RLE of size \[48, 65\], not the"),
    ({"size": [H, W], "counts": [5, 200]}, "is an RLE covering 205 pixels, not the image's 3072"),
    ({"size": [H, W], "counts": "PQ1"}, "is an RLE covering"),
    ({"size": [H, W], "counts": "\x7f"}, "is an RLE whose 'counts' are not run lengths"),
    (None, r"is missing \(instance masks are drawn from it\)"),
]


@pytest.mark.parametrize(("segmentation", "message"), HOSTILE)
def test_hostile_mask_annotations_refused_in_one_line(tmp_path, segmentation, message):
    data = coco_data()
    data["annotations"][4]["segmentation"] = segmentation
    ann_file, images = coco_folder(tmp_path, data)
    where = rf"{ann_file}: annotations\[4\] \(image id 2\): 'segmentation' {message}"
    with pytest.raises(DataError, match=where) as e:
        CocoDetection(ann_file, images, masks=True)
    assert "\n" not in str(e.value)
    cfg = DatasetConfig(type="coco", root=str(images), ann_file=str(ann_file))
    with pytest.raises(DataError, match=where):
        build_dataset(cfg, AugmentConfig(), (H, W), train=True, task="instance")
    with pytest.warns(UserWarning, match="degenerate"):  # a detector reads the boxes alone
        assert len(CocoDetection(ann_file, images)) == 3


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1e300, "x"])
def test_non_finite_polygon_coordinates_refused(bad):
    data = _one_image([[1, 2, 10, 2, bad, 9]])
    with pytest.raises(DataError, match=r"^f\.json: annotations\[0\] \(image id 5\): 'segm"):
        check_segmentation(data, Path("f.json"), "instance masks", min_points=3)


def _one_image(segmentation) -> dict:
    return {"images": [{"id": 5, "file_name": "a.png", "width": W, "height": H}],
            "annotations": [{"id": 1, "image_id": 5, "category_id": 1, "bbox": [1, 1, 9, 9],
                             "iscrowd": 0, "segmentation": segmentation}],
            "categories": [{"id": 1, "name": "x"}]}  # fmt: skip


polygon_numbers = st.one_of(
    st.floats(-2 * W, 2 * W), st.integers(-100, 100), st.sampled_from([float("nan"), 1e300])
)
segmentations = st.one_of(
    values,
    st.lists(st.lists(polygon_numbers, max_size=12), max_size=3),
    st.fixed_dictionaries(
        {
            "size": st.one_of(st.just([H, W]), st.lists(values, max_size=3)),
            "counts": st.one_of(
                st.lists(st.integers(-5, H * W), max_size=6), st.text(max_size=12), values
            ),
        }
    ),  # fmt: skip
)


@fuzz_settings(share=20)
@given(segmentation=segmentations)
def test_generated_hostile_segmentations_one_line_or_readable(segmentation):
    """Whatever the segmentation: refused in one line naming the file and the record, or read
    into one mask of the image; the loaded data never changed by the check."""
    data = _one_image(segmentation)
    before = repr(data)
    try:
        check_segmentation(data, Path("f.json"), "instance masks", min_points=3)
    except DataError as e:
        assert str(e).startswith("f.json: annotations[0] (image id 5): 'segmentation' ")
        assert "\n" not in str(e)
    else:
        masks = instance_masks(mask_shapes([segmentation], (H, W)), H, W)
        assert len(masks) == 1 and masks.to_bitmaps().shape == (1, H, W)
    assert repr(data) == before


# --- the browser ---------------------------------------------------------------------------


def test_browse_draws_instance_masks_in_class_colours_and_crowd_in_grey(tmp_path):
    ann_file, images = coco_folder(tmp_path)
    with pytest.warns(UserWarning):
        boxes_only = CocoDetection(ann_file, images)
        with_masks = CocoDetection(ann_file, images, masks=True)
    plain, _ = draw_detection_sample(boxes_only, 0)
    drawn, image_id = draw_detection_sample(with_masks, 0)
    assert image_id == 1 and drawn.shape == plain.shape == (H, W, 3)
    changed = np.any(drawn != plain, -1)
    assert changed[12, 15] and changed[40, 50]  # inside the polygon, the 2nd part of object 2
    assert changed[38, 10]  # inside the crowd region
    assert not changed[1, 62] and not changed[46, 30]  # outside every mask and box
    image = with_masks.read(1).astype(int)
    grey = np.array([150, 150, 150])
    np.testing.assert_allclose(drawn[38, 10], (image[38, 10] + grey) / 2, atol=1.01)
