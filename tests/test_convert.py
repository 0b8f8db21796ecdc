"""``visionkit convert``: datasets written as COCO, VOC and YOLO read back to the same boxes,
labels and image files; the same COCO numbers on a conversion; crowd and difficult objects as
documented; the output rule; a tiny training on a converted set."""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_tools_e2e import tiny_overrides
from test_yolo_dataset import GOOD_LABELS, _image, make_dataset

from visionkit.cli.convert import main
from visionkit.config import load_config
from visionkit.config.schema import DatasetConfig
from visionkit.data.build import detection_reader
from visionkit.data.voc import VOCDetection
from visionkit.data.writers import convert_datasets
from visionkit.data.writers.common import Namer
from visionkit.errors import ConfigError, DataError, VisionkitError
from visionkit.evaluation.build import build_evaluator
from visionkit.evaluation.coco_backends import COCO_BACKENDS

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")
# YOLO's 6 decimals put a coordinate within 5e-7 of the side (a corner, cx - w / 2, within
# 7.5e-7: 7e-5 px at 96 px); float32 adds ~1e-5 px at 96 px; VOC's 3 decimals 5e-4 px
TOLERANCE_PX = 1e-3


def shapes_overrides(cache: Path) -> list[str]:
    """The shapes dataset small: 16 training and 8 validation images of 96 px."""
    return [f"data.train.root={cache}", f"data.val.root={cache}", "data.train.num_images=16",
            "data.val.num_images=8", "data.train.image_size=96", "data.val.image_size=96"]  # fmt: skip


def readers(overrides: list[str]) -> dict:
    cfg = load_config(CONFIG, overrides)
    return {s: detection_reader(getattr(cfg.data, s)) for s in ("train", "val")}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The tiny shapes splits, their conversions to the three formats and the reports."""
    tmp = tmp_path_factory.mktemp("convert")
    base = shapes_overrides(tmp / "cache")
    source = readers(base)
    reports = {fmt: convert_datasets(source, fmt, tmp / fmt) for fmt in ("yolo", "coco", "voc")}
    return tmp, base, source, reports


def by_name(dataset) -> dict[str, tuple]:
    """File name -> (boxes, labels, file bytes) of every sample's training target."""
    out = {}
    for i in range(len(dataset)):
        r = dataset.record(i)
        out[r.path.name] = (r.boxes, r.labels, r.path.read_bytes())
    return out


def assert_same_samples(a, b) -> None:
    left, right = by_name(a), by_name(b)
    assert left.keys() == right.keys()
    for name, (boxes, labels, data) in left.items():
        np.testing.assert_allclose(right[name][0], boxes, atol=TOLERANCE_PX, rtol=0)
        np.testing.assert_array_equal(right[name][1], labels)
        assert right[name][2] == data, f"{name}: the image file differs"


@pytest.mark.parametrize("fmt", ["yolo", "coco", "voc"])
def test_conversion_reads_back_to_the_same_boxes_labels_and_files(shapes, fmt):
    _, base, source, reports = shapes
    report = reports[fmt]
    assert report.images == {"train": 16, "val": 8} and not report.dropped
    assert report.objects == {s: len(ds.coco.getAnnIds()) for s, ds in source.items()}
    converted = readers(base + report.overrides)
    for split in ("train", "val"):
        assert converted[split].class_names == source[split].class_names
        assert_same_samples(source[split], converted[split])


def test_round_trip_through_yolo_back_to_coco(shapes):
    tmp, base, source, reports = shapes
    via_yolo = readers(base + reports["yolo"].overrides)
    back = convert_datasets(via_yolo, "coco", tmp / "yolo_coco")
    round_trip = readers(base + back.overrides)
    for split in ("train", "val"):
        assert_same_samples(source[split], round_trip[split])
        assert round_trip[split].cat_ids == source[split].cat_ids == [1, 2, 3, 4, 5]


def test_yolo_files_as_documented(shapes):
    tmp, *_ = shapes
    data_yaml = (tmp / "yolo" / "data.yaml").read_text()
    assert data_yaml.startswith("train: images/train\nval: images/val\nnc: 5\nnames:\n  0: circle")
    line = (tmp / "yolo" / "labels" / "train" / "train_000000.txt").read_text().splitlines()[0]
    label, *coords = line.split()
    assert label.isdigit() and all(len(c.split(".")[1]) == 6 for c in coords)


def test_same_predictions_score_the_same_on_the_original_and_the_conversion(shapes):
    _, base, source, reports = shapes
    rng = np.random.default_rng(0)
    original, converted = source["val"], readers(base + reports["yolo"].overrides)["val"]
    predictions = {}  # file name -> prediction: jittered ground truth, random scores, clutter
    for name, (boxes, labels, _) in by_name(original).items():
        boxes = np.concatenate([boxes + rng.normal(0, 2, boxes.shape), [[5, 5, 30, 30]]])
        predictions[name] = {
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "labels": torch.tensor([*labels.tolist(), 1]),
            "scores": torch.tensor(rng.random(len(boxes)), dtype=torch.float32),
        }
    for backend in COCO_BACKENDS:
        numbers = []
        for ds in (original, converted):
            evaluator = build_evaluator("detection", ds, "coco", coco_backend=backend)
            records = [ds.record(i) for i in range(len(ds))]
            evaluator.process([{"image_id": r.image_id} for r in records],
                              [predictions[r.path.name] for r in records])  # fmt: skip
            numbers.append(evaluator.evaluate()["bbox"])
        assert numbers[0] == pytest.approx(numbers[1], abs=1e-9, nan_ok=True), backend
        assert 5 < numbers[0]["AP50"] < 100


def _coco_with_crowd(tmp_path: Path) -> DatasetConfig:
    for name in ("a.jpg", "b.jpg"):
        _image(tmp_path / "images" / name, 40, 30)
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 40, "height": 30},
                   {"id": 9, "file_name": "b.jpg", "width": 40, "height": 30}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 2, 10, 12]},
            {"id": 2, "image_id": 7, "category_id": 5, "bbox": [20, 2, 10, 12], "iscrowd": 1},
            {"id": 3, "image_id": 9, "category_id": 5, "bbox": [2, 2, 0.5, 12]}],
        "categories": [{"id": 3, "name": "circle"}, {"id": 5, "name": "square"}],
    }  # fmt: skip
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return DatasetConfig(type="coco", root=str(tmp_path / "images"),
                         ann_file=str(tmp_path / "ann.json"))  # fmt: skip


def test_crowd_regions_kept_in_coco_dropped_from_yolo_and_voc(tmp_path):
    source = {"val": detection_reader(_coco_with_crowd(tmp_path / "in"))}
    coco = convert_datasets(source, "coco", tmp_path / "coco")
    doc = json.loads((tmp_path / "coco/annotations/instances_val.json").read_text())
    assert [(a["image_id"], a["category_id"], a["iscrowd"]) for a in doc["annotations"]] == [
        (7, 3, 0), (7, 5, 1), (9, 5, 0)]  # fmt: skip
    assert [c["id"] for c in doc["categories"]] == [3, 5] and not coco.dropped
    yolo = convert_datasets(source, "yolo", tmp_path / "yolo")
    assert yolo.dropped == {"crowd regions (YOLO has no crowd flag)": 1}
    assert (tmp_path / "yolo/labels/val/a.txt").read_text() == (
        "0 0.150000 0.266667 0.250000 0.400000\n")  # fmt: skip
    voc = convert_datasets(source, "voc", tmp_path / "voc")
    assert voc.dropped == {"crowd regions (VOC has no crowd flag)": 1,
                           "boxes under 1 px (VOC's pixel indices cannot hold them)": 1}  # fmt: skip
    xml = (tmp_path / "voc/VOCdata/Annotations/a.xml").read_text()
    assert "<xmin>2</xmin>" in xml and "<xmax>11</xmax>" in xml and xml.count("<object>") == 1


def test_voc_difficult_becomes_coco_crowd_and_leaves_yolo(tmp_path):
    coco = convert_datasets({"val": detection_reader(_coco_with_crowd(tmp_path / "in"))}, "voc",
                            tmp_path / "voc")  # fmt: skip
    xml = tmp_path / "voc/VOCdata/Annotations/a.xml"
    xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>"))
    voc = VOCDetection(tmp_path / "voc", ["data/val"], class_names=["circle", "square"])
    assert coco.overrides[-2] == "data.val.class_names=[circle, square]"
    to_coco = convert_datasets({"val": voc}, "coco", tmp_path / "coco")
    assert to_coco.changed == {"difficult objects written as iscrowd 1": 1}
    to_yolo = convert_datasets({"val": voc}, "yolo", tmp_path / "yolo")
    assert to_yolo.dropped == {"difficult objects (YOLO has no difficult flag)": 1}


def test_what_cannot_be_copied_as_it_is_is_refused(tmp_path):
    make_dataset(tmp_path / "in", GOOD_LABELS)
    train = detection_reader(
        DatasetConfig(type="yolo", root=str(tmp_path / "in/data.yaml"), splits=["train"])
    )
    with pytest.raises(DataError, match=r"b\.png: not a JPEG file; VOC's layout holds JPEG"):
        convert_datasets({"train": train}, "voc", tmp_path / "voc")
    _image(tmp_path / "in/images/val/v.jpg", 64, 32, exif=3)  # turned 180 degrees: same size
    yolo = detection_reader(DatasetConfig(type="yolo", root=str(tmp_path / "in/data.yaml"),
                                          splits=["val"]))  # fmt: skip
    with pytest.raises(DataError, match=r"v\.jpg \(EXIF orientation 3\): its boxes describe the "
                                        r"image as its orientation turns it"):  # fmt: skip
        convert_datasets({"val": yolo}, "coco", tmp_path / "coco")
    assert convert_datasets({"val": yolo}, "yolo", tmp_path / "yolo").images == {"val": 1}


def test_splits_of_other_classes_are_refused(shapes, tmp_path):
    _, _, source, _ = shapes
    other = detection_reader(_coco_with_crowd(tmp_path / "in"))
    with pytest.raises(DataError, match=r"data\.val has other classes than data\.train"):
        convert_datasets({"train": source["train"], "val": other}, "yolo", tmp_path / "out")


def test_target_names_unique_by_stem():
    namer = Namer()
    pairs = [("x/a.jpg", 1), ("y/a.png", 2), ("z/A.jpg", 3), ("x/a.jpg", 1), ("x/a.jpg", 4),
             ("my pic.jpg", 5)]  # fmt: skip
    names = [namer(Path(p), i) for p, i in pairs]
    assert names == ["a.jpg", "a_2.png", "A_3.jpg", "a.jpg", "a_4.jpg", "my_pic.jpg"]


def run_main(argv: list) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([str(a) for a in argv]) == 0
    return out.getvalue()


def test_cli_prints_the_overrides_and_keeps_the_output_rule(shapes, tmp_path):
    _, base, _, _ = shapes
    out = tmp_path / "out"
    text = run_main([CONFIG, "--to", "yolo", "--output", out, "--splits", "val", *base])
    assert text.startswith(f"converted to yolo in {out}: val 8 images (")
    assert f"data.val.type=yolo data.val.root={out}/data.yaml 'data.val.splits=[val]'" in text
    with pytest.raises(ConfigError, match=r"--output .* is not empty; give a new or empty"):
        main([CONFIG, "--to", "yolo", "--output", str(out), "--splits", "val", *base])
    run_main([CONFIG, "--to", "yolo", "--output", out, "--splits", "val", "--exist-ok", *base])
    yolo = [*base, "data.val.type=yolo", f"data.val.root={out}/data.yaml"]
    with pytest.raises(ConfigError, match=r"--output .*/out/again is inside data\.val\.root's "
                                          r"folder"):  # fmt: skip
        main([CONFIG, "--to", "coco", "--output", str(out / "again"), "--splits", "val", *yolo])
    with pytest.raises(ConfigError, match=r"--output .* is inside the images"):
        shapes_folder = next((tmp_path.parent).glob("convert*/cache/shapes/*val*"))
        main([CONFIG, "--to", "coco", "--output", str(shapes_folder / "JPEGImages" / "x"),
              "--splits", "val", *base])  # fmt: skip


def test_tool_script_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tools/convert.py"), "--help"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.startswith("usage: visionkit convert")


@pytest.mark.slow
def test_tiny_training_on_the_yolo_conversion(shapes, tmp_path):
    from script_loader import load_script

    _, _, _, reports = shapes
    train = load_script("tools/train.py").main
    overrides = [*tiny_overrides(tmp_path / "cache", epochs=1), *reports["yolo"].overrides]
    assert "data.train.type=yolo" in overrides
    with contextlib.redirect_stdout(io.StringIO()) as out:
        train(["--config", CONFIG, "--output-dir", str(tmp_path / "run"), "--no-progress",
               "train.device=cpu", *overrides])  # fmt: skip
    assert "done: 1 epochs" in out.getvalue()
    assert (tmp_path / "run" / "last.pth").is_file()
    with pytest.raises(VisionkitError, match=r"model\.num_classes is 3 but the training data has "
                                             r"5 classes"):  # fmt: skip
        train(["--config", CONFIG, "--output-dir", str(tmp_path / "run3"), "--no-progress",
               "train.device=cpu", *overrides, "model.num_classes=3"])  # fmt: skip
