"""The YOLO (Ultralytics) dataset reader: hand-made datasets read to hand-computed xyxy boxes,
COCO evaluation on them with both backends, and hostile files refused in one line naming the
file and the line."""

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from test_hostile_annotations import with_exif_orientation

from visionkit.config.schema import AugmentConfig, DatasetConfig
from visionkit.data import YoloDetection, build_dataset
from visionkit.data.yolo_format import label_path, parse_labels, read_data_yaml
from visionkit.errors import ConfigError, DataError, UnreadableImageError
from visionkit.evaluation.build import build_evaluator
from visionkit.evaluation.coco_backends import COCO_BACKENDS

DATA_YAML = "path: .\ntrain: images/train\nval: images/val\nnames: [cat, dog]\n"


def _image(path: Path, width: int, height: int, exif: int | None = None) -> None:
    """A PIL drawing of ``width`` x ``height`` px (JPEG or PNG by suffix)."""
    image = Image.new("RGB", (width, height), (30, 60, 90))
    ImageDraw.Draw(image).rectangle((2, 2, width // 2, height // 2), fill=(200, 40, 40))
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, "PNG" if path.suffix == ".png" else "JPEG", quality=95)
    data = buffer.getvalue()
    path.write_bytes(data if exif is None else with_exif_orientation(data, exif))


def make_dataset(root: Path, labels: dict[str, str], yaml: str = DATA_YAML) -> Path:
    """``root/data.yaml`` and images ``a.jpg`` (100x50), ``b.png`` (60x80), ``c.jpg`` (40x40)
    in ``images/train`` (``images/val``: ``v.jpg``, 64x32), with the label files ``labels``
    (stem -> text; a stem left out has no label file)."""
    sizes = {"train/a.jpg": (100, 50), "train/b.png": (60, 80), "train/c.jpg": (40, 40),
             "val/v.jpg": (64, 32)}  # fmt: skip
    for name, (w, h) in sizes.items():
        _image(root / "images" / name, w, h)
    for stem, text in labels.items():
        split = "val" if stem == "v" else "train"
        path = root / "labels" / split / f"{stem}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "data.yaml").write_text(yaml)
    return root / "data.yaml"


GOOD_LABELS = {
    "a": "0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.3 0.1 0.3 0.3\n",  # a box, a triangle
    "b": "",  # no objects
    "c": "\n1 0.25 0.75 0.5 0.5\n\n",  # blank lines are skipped
    "v": "1 0.5 0.5 1 1\n",
}


def test_boxes_read_to_hand_computed_xyxy_pixels(tmp_path):
    ds = YoloDetection(make_dataset(tmp_path, GOOD_LABELS), ["train"])
    assert ds.class_names == ["cat", "dog"] and ds.cat_ids == [1, 2] and ds.ids == [1, 2, 3]
    a, b, c = (ds.record(i) for i in range(3))
    assert [r.path.name for r in (a, b, c)] == ["a.jpg", "b.png", "c.jpg"]  # sorted by path
    assert a.size == (50, 100) and b.size == (80, 60) and c.size == (40, 40)
    # a: centre (50, 25), 20 x 20 px; the triangle (10, 5), (30, 5), (30, 15) -> its box
    np.testing.assert_array_equal(a.boxes, [[40, 15, 60, 35], [10, 5, 30, 15]])
    np.testing.assert_array_equal(a.labels, [0, 1])
    assert a.boxes.dtype == np.float32 and a.labels.dtype == np.int64
    assert b.boxes.shape == (0, 4)
    np.testing.assert_array_equal(c.boxes, [[0, 20, 20, 40]])
    image, target = ds[0]
    assert image.shape == (3, 50, 100) and image.dtype == torch.float32
    assert target["image_id"] == 1 and target["orig_size"] == (50, 100)
    assert ds.num_objects == 3


def test_names_as_a_dict_a_txt_list_and_concatenated_splits(tmp_path):
    yaml = "train: train.txt\nval: [images/val]\nnc: 2\nnames: {0: cat, 1: dog}\n"
    path = make_dataset(tmp_path, GOOD_LABELS, yaml)
    (tmp_path / "train.txt").write_text("./images/train/c.jpg\nimages/train/a.jpg\nnotes.md\n")
    ds = YoloDetection(tmp_path, ["train", "val"])  # the folder holding data.yaml
    assert ds.root == path
    assert [ds.record(i).path.name for i in range(len(ds))] == ["a.jpg", "c.jpg", "v.jpg"]
    np.testing.assert_array_equal(ds.record(2).boxes, [[0, 0, 64, 32]])


def test_yaml_path_is_relative_to_the_yaml(tmp_path):
    make_dataset(tmp_path / "data", GOOD_LABELS)
    (tmp_path / "conf").mkdir()
    yaml = tmp_path / "conf" / "set.yaml"
    yaml.write_text(DATA_YAML.replace("path: .", "path: ../data"))
    assert len(YoloDetection(yaml, ["val"])) == 1


def test_label_path_replaces_the_last_images_folder(tmp_path):
    assert label_path(Path("/d/images/x/images/train/a.b.jpg")) == Path(
        "/d/images/x/labels/train/a.b.txt"
    )
    assert label_path(Path("/d/pics/a.png")) == Path("/d/pics/a.txt")  # beside the image


def test_missing_label_file_is_an_image_without_objects(tmp_path):
    labels = {k: v for k, v in GOOD_LABELS.items() if k != "c"}
    with pytest.warns(UserWarning, match=r"1 images have no label file, read as images without"):
        ds = YoloDetection(make_dataset(tmp_path, labels), ["train"])
    assert len(ds) == 3 and ds.record(2).boxes.shape == (0, 4)
    filtered = YoloDetection(tmp_path / "data.yaml", ["train"], filter_empty=True)
    assert [filtered.record(i).path.name for i in range(len(filtered))] == ["a.jpg"]


def test_a_split_without_any_label_file_is_refused(tmp_path):
    path = make_dataset(tmp_path, {"v": ""})
    with pytest.raises(DataError, match=r"data\.yaml: no label file for any of the 3 images of "
                                        r"\['train'\] \(the first would be .*labels/train/a\.txt"):  # fmt: skip
        YoloDetection(path, ["train"])


def test_exif_orientation_gives_the_size_as_shown(tmp_path):
    make_dataset(tmp_path, GOOD_LABELS)
    _image(tmp_path / "images/val/v.jpg", 64, 32, exif=6)  # shown turned: 32 x 64
    ds = YoloDetection(tmp_path / "data.yaml", ["val"])
    assert ds.record(0).size == (64, 32) and ds.orientation(0)
    np.testing.assert_array_equal(ds.record(0).boxes, [[0, 0, 32, 64]])
    assert ds[0][0].shape == (3, 64, 32)


def test_unreadable_images_left_out_or_stop(tmp_path):
    make_dataset(tmp_path, GOOD_LABELS)
    (tmp_path / "images/train/b.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match=r"left out 1 unreadable images \(first: .*b\.png\)"):
        assert len(YoloDetection(tmp_path / "data.yaml", ["train"])) == 2
    with pytest.raises(UnreadableImageError, match=r"cannot read image .*b\.png"):
        YoloDetection(tmp_path / "data.yaml", ["train"], on_bad_image="stop")


def test_duplicate_lines_and_degenerate_boxes(tmp_path):
    labels = {**GOOD_LABELS, "a": "0 0.5 0.5 0.2 0.4\n0 0.5 0.5 0.2 0.4\n1 0.5 0.5 0.001 0.5\n"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = YoloDetection(make_dataset(tmp_path, labels), ["train"])
    messages = [str(w.message) for w in caught]
    assert any("left out 1 duplicate label lines" in m for m in messages)
    assert any("dropped 1 degenerate boxes (width or height <= 1 px)" in m for m in messages)
    np.testing.assert_array_equal(ds.record(0).labels, [0])  # training targets
    assert len(ds.coco.imgToAnns[1]) == 2  # the ground truth keeps the degenerate box


def test_build_dataset_and_coco_evaluation_with_both_backends(tmp_path):
    make_dataset(tmp_path, GOOD_LABELS)
    cfg = DatasetConfig(type="yolo", root=str(tmp_path / "data.yaml"), splits=["train"])
    ds = build_dataset(cfg, AugmentConfig(), None, train=False)
    assert ds.coco.getCatIds() == [1, 2]
    targets = [ds[i][1] for i in range(len(ds))]
    perfect = [{"boxes": t["boxes"], "labels": t["labels"],
                "scores": torch.ones(len(t["labels"]))} for t in targets]  # fmt: skip
    for backend in COCO_BACKENDS:
        evaluator = build_evaluator("detection", ds, "coco", coco_backend=backend)
        evaluator.process(targets, perfect)
        assert evaluator.evaluate()["bbox"]["AP50"] == pytest.approx(100.0)


def test_yolo_holds_no_label_maps_nor_class_names(tmp_path):
    make_dataset(tmp_path, GOOD_LABELS)
    cfg = DatasetConfig(type="yolo", root=str(tmp_path / "data.yaml"))
    with pytest.raises(ConfigError, match="yolo datasets hold boxes, not the label maps"):
        build_dataset(cfg, AugmentConfig(), None, train=False, task="sem_seg")
    cfg.class_names = ["cat", "dog"]
    with pytest.raises(ConfigError, match=r"class_names applies to voc datasets"):
        build_dataset(cfg, AugmentConfig(), None, train=False)


YAML_CASES = [
    ("train: images/train\n", r"data\.yaml: no 'names' \(the class names"),
    ("names: []\n", r"no 'names'"),
    ("names: {1: cat, 2: dog}\n", r"the keys of 'names' must be the class indices 0\.\.C-1"),
    ("names: [cat, cat]\n", r"data\.yaml: names: class 'cat' appears twice"),
    ("names: [cat, [x]]\n", r"names\[1\] must be a class name, got \['x'\]"),
    ("names: [cat, dog]\nnc: 3\n", r"'nc' is 3 but 'names' holds 2"),
    ("- a\n- b\n", r"not a YOLO data\.yaml"),
    ("names: [a, b]\ntrain: 7\n", r"'train' must be a folder or a \.txt list of images"),
    ("names: [a, b]\npath: [x]\n", r"'path' must be a folder, got \['x'\]"),
    ("names: [a: b\n", r"data\.yaml: not valid YAML at line 2, column 1"),
]


@pytest.mark.parametrize(("text", "message"), YAML_CASES)
def test_bad_data_yaml_refused_in_one_line(tmp_path, text, message):
    (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(DataError, match=message) as e:
        read_data_yaml(tmp_path / "data.yaml")
    assert "\n" not in str(e.value) and str(tmp_path / "data.yaml") in str(e.value)


@pytest.mark.parametrize(
    ("yaml", "splits", "message"),
    [
        (DATA_YAML, ["test"], r"data\.yaml: no 'test' split \(it has: train, val\)"),
        (DATA_YAML.replace("images/val", "images/nope"), ["val"],
         r"data\.yaml: 'val': images/nope is neither a folder nor a \.txt list of images"),
        (DATA_YAML.replace("images/val", "empty"), ["val"], r"'val' holds no images"),
    ],
)  # fmt: skip
def test_bad_split_refused_in_one_line(tmp_path, yaml, splits, message):
    (tmp_path / "empty").mkdir()
    path = make_dataset(tmp_path, GOOD_LABELS, yaml)
    with pytest.raises(DataError, match=message):
        YoloDetection(path, splits)


def test_missing_data_yaml(tmp_path):
    with pytest.raises(DataError, match=r"YOLO data\.yaml not found: .*nope\.yaml"):
        YoloDetection(tmp_path / "nope.yaml", ["train"])
    with pytest.raises(DataError, match=r"a YOLO dataset needs data\.\*\.root"):
        YoloDetection("", ["train"])


LINE_CASES = [
    ("0 0.5 0.5 0.2", r"4 numbers; a box is 'class cx cy w h' \(5\), a polygon"),
    ("0 0.1 0.1 0.2 0.2 0.3", r"6 numbers"),
    ("0 0.1 0.1 0.2 0.2 0.3 0.3 0.4", r"8 numbers"),
    ("0 0.5 half 0.2 0.2", r"'half' is not a number"),
    ("0 0.5 nan 0.2 0.2", r"'nan' is not a finite number"),
    ("0 0.5 inf 0.2 0.2", r"'inf' is not a finite number"),
    ("2 0.5 0.5 0.2 0.2", r"class 2 is not one of the 2 classes of the data\.yaml's names"),
    ("-1 0.5 0.5 0.2 0.2", r"class -1 is not one of the 2 classes"),
    ("0.5 0.5 0.5 0.2 0.2", r"class 0\.5 is not one of the 2 classes"),
    ("0 1.2 0.5 0.2 0.2", r"1\.2 is outside \[0, 1\] \(YOLO coordinates are divided by"),
    ("0 0.5 0.5 -0.1 0.2", r"-0\.1 is outside \[0, 1\]"),
    ("0 0.5 0.5 0.2 1e300", r"1e300 is outside \[0, 1\]"),
    ("0 0.95 0.5 0.5 0.2", r"the box 0\.95 0\.5 0\.5 0\.2 lies beyond its 100x50 image"),
]


@pytest.mark.parametrize(("line", "message"), LINE_CASES)
def test_bad_label_line_refused_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "a.txt"
    path.write_text(f"0 0.5 0.5 0.2 0.2\n\n{line}\n")
    with pytest.raises(DataError, match=rf"^{path}:3: {message}") as e:
        parse_labels(path, (50, 100), 2)
    assert "\n" not in str(e.value)


def test_label_file_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"0 0.5 0.5 0.2 0.2\n\xff\xfe")
    with pytest.raises(DataError, match=rf"^{path}: not UTF-8 text"):
        parse_labels(path, (50, 100), 2)


def test_tolerance_and_the_clip(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("1 0.5 0.5 1.00005 1\n")  # within 1e-4 of [0, 1]
    boxes, labels, _ = parse_labels(path, (50, 100), 2)
    np.testing.assert_allclose(boxes, [[0, 0, 100, 50]])  # clipped to the image


TOKENS = ["0", "1", "2", "-1", "0.5", "1.0", "1.00001", "1.1", "-0.0", "1e-3", "nan", "inf", "x",
          "", "1e300", "0x1", "½", "0.25", "9" * 60]  # fmt: skip
label_lines = st.lists(st.lists(st.sampled_from(TOKENS) | st.floats(-0.5, 1.5).map(str),
                                max_size=10).map(" ".join), max_size=6)  # fmt: skip


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=label_lines, junk=st.binary(max_size=8))
def test_hostile_label_files_read_or_refused_in_one_line(tmp_path, lines, junk):
    """Whatever a label file holds: boxes inside the image, or one DataError line naming the
    file (and the line, for a line's content); never a traceback; the file unchanged."""
    path = tmp_path / "labels" / "a.txt"
    path.parent.mkdir(exist_ok=True)
    data = "\n".join(lines).encode() + junk
    path.write_bytes(data)
    try:
        boxes, labels, _ = parse_labels(path, (50, 100), 2)
    except DataError as e:
        assert "\n" not in str(e) and str(e).startswith(f"{path}")
    else:
        assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
        assert ((boxes >= 0) & (boxes <= [100, 50, 100, 50])).all()
        assert set(labels.tolist()) <= {0, 1}
    assert path.read_bytes() == data
