"""Dataset-level hostile input, refused before any training step: label-map sources that would
fail mid-epoch, image files whose size disagrees with the annotation file, training sets with
nothing to learn; and proposals searched on the very pixels the boxes describe."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from test_hostile_annotations import GOOD, with_exif_orientation

from visionkit.config.schema import AugmentConfig, DatasetConfig, ProposalConfig
from visionkit.data import build_dataset
from visionkit.data.coco import CocoDetection
from visionkit.data.coco_checks import check_segmentation, rle_string_counts
from visionkit.data.proposal_cache import cache_path, compute_proposals
from visionkit.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def _rle(h: int, w: int) -> dict:
    mask = np.zeros((h, w), np.uint8, order="F")
    mask[5:20, 3:30] = 1
    rle = mask_utils.encode(mask)
    return {"size": [h, w], "counts": rle["counts"].decode()}


def _seg_data(segmentation) -> dict:
    data = copy.deepcopy(GOOD)
    data["annotations"][0]["segmentation"] = segmentation
    if segmentation is ...:
        del data["annotations"][0]["segmentation"]
    return data


SEG_CASES = [
    (..., "is missing"),
    (None, "is missing"),
    ([], "is an empty list of polygons"),
    ([[1, 2, 3]], "holds a polygon that is not a list of x, y pairs"),
    ([[1, 2, 3, "x", 5, 6]], "holds a polygon whose coordinates are not all finite"),
    ([[1, 2, 3, float("nan"), 5, 6]], "holds a polygon whose coordinates are not all finite"),
    ("polygon", "is a str, not polygons or an RLE"),
    ({"size": [30, 41], "counts": "PQ1"}, r"is an RLE of size \[30, 41\], not the image's"),
    ({"size": [30, 40], "counts": "abc"}, "is an RLE whose 'counts' are not run lengths"),
    ({"size": [30, 40], "counts": [5, -1, 1196]}, "is an RLE whose 'counts' are not run"),
    ({"size": [30, 40], "counts": [5, 200]}, "is an RLE covering 205 pixels, not the image's 1200"),
    ({"size": [30, 40], "counts": "0"}, "is an RLE covering 0 pixels"),
]


@pytest.mark.parametrize(("segmentation", "message"), SEG_CASES)
def test_bad_segmentation_refused_in_one_line(segmentation, message):
    with pytest.raises(DataError, match=rf"^f\.json: annotations\[0\] \(image id 1\): "
                                        rf"'segmentation' {message}") as e:  # fmt: skip
        check_segmentation(_seg_data(segmentation), Path("f.json"))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "segmentation",
    [[[1, 2, 10, 2, 10, 12, 1, 12]], [[1, 2, 10, 2]], _rle(30, 40),
     {"size": [30, 40], "counts": [100, 50, 1050]}],
)  # fmt: skip
def test_good_segmentation_accepted(segmentation):
    check_segmentation(_seg_data(segmentation), Path("f.json"))


def test_rle_string_counts_match_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        mask = np.asfortranarray(rng.random((h, w)) < rng.random()).astype(np.uint8)
        counts = rle_string_counts(mask_utils.encode(mask)["counts"].decode())
        # the runs alternate 0s and 1s in column-major order, starting with 0s
        flat = mask.flatten(order="F").astype(int)
        changes = np.flatnonzero(np.diff(flat)) + 1
        runs = np.diff(np.r_[0, changes, flat.size])
        expected = ([0] if flat[0] == 1 else []) + runs.tolist()
        assert counts == expected


def _coco_folder(tmp_path: Path, data: dict, images: dict[str, np.ndarray | bytes]) -> Path:
    (tmp_path / "images").mkdir()
    for name, image in images.items():
        raw = image if isinstance(image, bytes) else cv2.imencode(".png", image)[1].tobytes()
        (tmp_path / "images" / name).write_bytes(raw)
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return tmp_path


def _images(h: int = 30, w: int = 40) -> dict[str, np.ndarray]:
    return {"a.jpg": np.full((h, w, 3), 90, np.uint8), "b.jpg": np.full((30, 40, 3), 90, np.uint8)}


def test_image_size_differing_from_the_file_refused_before_training(tmp_path):
    folder = _coco_folder(tmp_path, copy.deepcopy(GOOD), _images(h=31))
    with pytest.raises(DataError, match=r"ann\.json: 1 image\(s\) differ from their 'width'/"
                                        r"'height' \(first: image id 1, a\.jpg, is 40x31 px, the "
                                        r"file says 40x30\)"):  # fmt: skip
        CocoDetection(folder / "ann.json", folder / "images")


def _rotated_jpeg() -> bytes:
    stored = np.zeros((30, 40, 3), np.uint8)
    stored[:, :10] = 255  # a white band on the left of the stored pixels
    return with_exif_orientation(cv2.imencode(".jpg", stored)[1].tobytes(), 6)


@pytest.mark.parametrize(("width", "height", "orientation"), [(40, 30, False), (30, 40, True)])
def test_proposals_see_the_pixels_the_boxes_describe(tmp_path, width, height, orientation):
    data = copy.deepcopy(GOOD)
    data["images"][0].update(width=width, height=height)
    folder = _coco_folder(tmp_path, data, {"a.jpg": _rotated_jpeg(), "b.jpg": _images()["b.jpg"]})
    dataset = CocoDetection(folder / "ann.json", folder / "images")
    assert dataset.orientation(0) is orientation and dataset.orientation(1) is True
    found, failed = compute_proposals(dataset, "fast", workers=1, progress=False, indices=[0])
    assert not failed
    boxes = found[1]
    assert boxes[:, 2].max() <= width and boxes[:, 3].max() <= height
    assert dataset.read(1).shape[:2] == (height, width)
    # the two readings are cached apart: a cache of the rotated view never serves the stored one
    keys = {cache_path(dataset, ProposalConfig(method="selective_search")).name}
    dataset._table.stored[0] ^= True  # image id 1
    keys.add(cache_path(dataset, ProposalConfig(method="selective_search")).name)
    assert len(keys) == 2


def test_sizes_checked_for_the_file_exif_rule(tmp_path):
    data = copy.deepcopy(GOOD)
    data["images"][0].update(width=30, height=50)  # neither the stored nor the rotated size
    folder = _coco_folder(tmp_path, data, {"a.jpg": _rotated_jpeg(), "b.jpg": _images()["b.jpg"]})
    with pytest.raises(DataError, match=r"image id 1, a\.jpg, is 40x30 px, the file says 30x50"):
        CocoDetection(folder / "ann.json", folder / "images")


def _train_set(tmp_path: Path, annotations: list[dict]) -> DatasetConfig:
    data = copy.deepcopy(GOOD)
    data["annotations"] = annotations
    folder = _coco_folder(tmp_path, data, _images())
    return DatasetConfig(
        type="coco", root=str(folder / "images"), ann_file=str(folder / "ann.json")
    )


NOTHING_TO_LEARN = [
    [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 12], "iscrowd": 1}],
    # at the edge of the 40x30 image: 0.5 px wide once clipped (further out is refused)
    [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [39.5, 2, 1.2, 12]}],
    [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 0.5, 12]}],  # degenerate
    [],
]


@pytest.mark.parametrize("annotations", NOTHING_TO_LEARN)
def test_training_set_with_nothing_to_learn_refused(tmp_path, annotations):
    cfg = _train_set(tmp_path, annotations)
    with pytest.raises(DataError, match=r"ann\.json: no object to train on: every box is crowd"):
        build_dataset(cfg, AugmentConfig(), [64, 64], train=True)
    assert len(build_dataset(cfg, AugmentConfig(), [64, 64], train=False)) == 2  # scoring is fine


@pytest.mark.slow
def test_train_tool_exits_2_on_a_set_with_nothing_to_learn(tmp_path):
    cfg = _train_set(tmp_path, NOTHING_TO_LEARN[0])
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools/train.py"), "--config",
         str(ROOT / "visionkit/configs/yolo_v1_shapes.yaml"), "--output-dir", str(tmp_path / "run"),
         "data.train.type=coco", f"data.train.root={cfg.root}", f"data.train.ann_file={cfg.ann_file}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"error: {cfg.ann_file}: no object to train on: every box is crowd, difficult, "
        "degenerate or outside its image"
    ]


@pytest.mark.slow
def test_warnings_are_one_line_each_and_counted_in_the_summary(tmp_path):
    from test_tools_e2e import run_tool, tiny_overrides

    cfg = _train_set(tmp_path, [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 12]},
        {"id": 2, "image_id": 2, "category_id": 3, "bbox": [1, 2, 0.5, 12]},  # degenerate
    ])  # fmt: skip
    proc = run_tool(
        "train.py", "--config", str(ROOT / "visionkit/configs/yolo_v1_shapes.yaml"), "--output-dir",
        str(tmp_path / "run"), "--no-progress", *tiny_overrides(tmp_path / "cache", epochs=1),
        "data.train.type=coco", f"data.train.root={cfg.root}",
        f"data.train.ann_file={cfg.ann_file}", "model.num_classes=1",
    )  # fmt: skip
    warnings = [ln for ln in proc.stderr.splitlines() if "warning" in ln.lower()]
    assert warnings == [f"warning: {cfg.ann_file}: dropped 1 degenerate boxes (width or height "
                        "<= 1 px)"]  # fmt: skip
    done = proc.stdout.strip().splitlines()[-1]
    assert done.startswith("done: 1 epochs in ") and done.endswith("; 1 warning (above)")


@pytest.mark.parametrize("labels", ["", "0 0.5 0.5 0.001 0.5\n"])  # none; only a degenerate box
def test_yolo_training_set_with_nothing_to_learn_refused(tmp_path, labels):
    from test_yolo_dataset import make_dataset

    path = make_dataset(tmp_path, {"a": labels, "b": "", "c": "", "v": ""})
    cfg = DatasetConfig(type="yolo", root=str(path), splits=["train"])
    with pytest.raises(DataError, match=r"data\.yaml \['train'\]: no object to train on"):
        build_dataset(cfg, AugmentConfig(), [64, 64], train=True)
    assert len(build_dataset(cfg, AugmentConfig(), [64, 64], train=False)) == 3
