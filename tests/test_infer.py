"""tools/infer.py on tiny checkpoints trained here: folders, videos, unreadable files, FCN, --show."""

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from script_loader import load_script
from test_fcn_e2e import CONFIG as FCN_CONFIG
from test_fcn_e2e import tiny_fcn_overrides
from test_tools_e2e import ROOT, run_tool, tiny_overrides

from visionkit.checkpoints import load_checkpoint, load_model_weights
from visionkit.config import load_config
from visionkit.data.shapes import CLASSES as SHAPES_CLASSES
from visionkit.engine.trainer import Trainer
from visionkit.errors import ConfigError, DataError
from visionkit.inference import gui_unavailable, read_frames, resolve_sources
from visionkit.models import build_model
from visionkit.utils.cli import run_cli
from visionkit.utils.draw import class_colors, draw_detections, overlay_segmentation

YOLO_CONFIG = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")


INFER = load_script("tools/infer.py")


def train_tiny(tmp: Path, config: str, overrides: list[str]) -> SimpleNamespace:
    """One epoch in this process; the checkpoint, overrides and the val split's folder."""
    Trainer(load_config(config, overrides), tmp / "run", progress=False).train()
    val = next((tmp / "cache" / "shapes").glob("*-val-*"))
    return SimpleNamespace(
        config=config, weights=tmp / "run" / "last.pth", overrides=overrides, val=val
    )


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("yolo")
    return train_tiny(tmp, YOLO_CONFIG, tiny_overrides(tmp / "cache", epochs=1))


@pytest.fixture(scope="module")
def fcn(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fcn")
    return train_tiny(tmp, FCN_CONFIG, tiny_fcn_overrides(tmp / "cache"))


def infer(capsys, run, source, output, *extra):
    """tools/infer.py's main in this process: (exit code, stdout, stderr lines)."""
    code = INFER.main(
        ["--config", run.config, "--weights", str(run.weights),
         "--source", str(source), "--output", str(output), "--no-progress", *extra,
         *run.overrides]
    )  # fmt: skip
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def val_images(run, n: int) -> list[Path]:
    return sorted((run.val / "JPEGImages").glob("*.jpg"))[:n]


def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_folder_gives_annotated_images_and_coco_results(yolo, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in val_images(yolo, 3):
        shutil.copy(p, photos)
    wide = photos / "wide.png"  # another size and format: boxes must come back in its pixels
    cv2.imwrite(str(wide), cv2.resize(cv2.imread(str(val_images(yolo, 1)[0])), (120, 72)))
    # float32: the model's own float32 predict below is the reference (default auto: bf16 on a
    # CPU with native bfloat16)
    code, out, err = infer(
        capsys, yolo, photos, tmp_path / "out", "--score-thresh", "0", "--precision", "float32"
    )
    assert code == 0 and err == []
    assert out.strip().startswith("done: 4 images") and str(tmp_path / "out") in out
    for src in photos.iterdir():
        annotated = cv2.imread(str(tmp_path / "out" / f"{src.stem}.jpg"))
        original = cv2.imread(str(src))
        assert annotated.shape == original.shape
        assert np.abs(annotated.astype(int) - original).mean() > 2  # boxes drawn
    preds = json.loads((tmp_path / "out" / "predictions.json").read_text())
    info = json.loads((tmp_path / "out" / "images.json").read_text())
    dataset = json.loads(next(yolo.val.rglob("instances_val.json")).read_text())
    categories = sorted(dataset["categories"], key=lambda c: c["id"])  # label order
    assert info["categories"] == [{"id": c["id"], "name": c["name"]} for c in categories]
    by_name = {Path(im["file_name"]).name: im for im in info["images"]}
    assert set(by_name) == {p.name for p in photos.iterdir()}
    assert by_name["wide.png"]["width"] == 120 and by_name["wide.png"]["height"] == 72
    gt = COCO()
    gt.dataset = {"images": info["images"], "annotations": [], "categories": dataset["categories"]}
    gt.createIndex()
    dt = gt.loadRes(preds)
    assert preds and len(dt.getAnnIds()) == len(preds)
    # the same boxes as the model's own predict() on the image, as xywh in its pixels
    model = build_model(load_config(YOLO_CONFIG, yolo.overrides).model).eval()
    load_model_weights(model, load_checkpoint(yolo.weights), "yolo_v1", str(yolo.weights))
    image = torch.from_numpy(rgb(wide)).permute(2, 0, 1).float() / 255
    direct = model.predict([image])[0]
    mine = [p for p in preds if p["image_id"] == by_name["wide.png"]["id"]]
    assert len(mine) == len(direct["scores"]) > 0
    best = max(mine, key=lambda p: p["score"])
    top = int(direct["scores"].argmax())
    x1, y1, x2, y2 = direct["boxes"][top].tolist()
    assert best["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-3)
    assert best["category_id"] == categories[int(direct["labels"][top])]["id"]


def write_clip(path: Path, frame: Path, count: int = 12, fps: int = 10) -> None:
    """An mp4v video of ``count`` 96 x 80 frames: ``frame`` rolled 4 px further each time."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (96, 80))
    base = cv2.resize(cv2.imread(str(frame)), (96, 80))
    for i in range(count):
        writer.write(np.roll(base, 4 * i, axis=1))
    writer.release()


def read_back(path: Path) -> tuple[list[int], float, int]:
    """(frame count, width, height as the container says), fps, frames actually decoded."""
    cap = cv2.VideoCapture(str(path))
    props = [cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT]
    header, fps = [int(cap.get(p)) for p in props], cap.get(cv2.CAP_PROP_FPS)
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    cap.release()
    return header, fps, decoded


@pytest.mark.parametrize("name", ["fcn", "faster_rcnn_shapes"])
def test_video_from_the_other_families(name, yolo, fcn, tmp_path, capsys):
    """FCN (overlay video) and an untrained Faster R-CNN keep the video's frames, size, fps."""
    if name == "fcn":
        run = fcn
    else:
        overrides = [o for o in yolo.overrides if o.startswith("data.val.")]
        overrides += ["model.backbone.name=lenet", "model.backbone.out_features=[]",
                      *TWO_STAGE[name]]  # fmt: skip
        config = str(ROOT / "visionkit" / "configs" / f"{name}.yaml")
        torch.manual_seed(0)
        model = build_model(load_config(config, overrides).model)
        torch.save(model.state_dict(), tmp_path / "w.pth")
        run = SimpleNamespace(config=config, weights=tmp_path / "w.pth", overrides=overrides)
    video = tmp_path / "clip.mp4"
    write_clip(video, val_images(yolo, 1)[0])
    code, out, err = infer(capsys, run, video, tmp_path / "out", "--batch-size", "5")
    # the untrained Faster R-CNN scores every box below --score-thresh 0.3: said once, at the end
    hint = r"warning: no detection scored >= 0\.3 on 12 of 12 images; .* --score-thresh 0\.\d+\)$"
    assert code == 0 and len(err) == (name != "fcn") and all(re.match(hint, ln) for ln in err)
    assert "12 frames of 1 video " in out
    header, fps, decoded = read_back(tmp_path / "out" / "clip.mp4")
    assert header == [12, 96, 80] and fps == pytest.approx(10) and decoded == 12


def test_video_keeps_frame_rate_size_and_frame_count(yolo, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    write_clip(video, val_images(yolo, 1)[0])
    code, out, err = infer(
        capsys, yolo, video, tmp_path / "out", "--batch-size", "5", "--score-thresh", "0.05"
    )
    assert code == 0 and err == [] and "12 frames of 1 video " in out
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    props = [cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT]
    assert [int(cap.get(p)) for p in props] == [12, 96, 80]
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10)
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    cap.release()
    assert decoded == 12
    images = json.loads((tmp_path / "out" / "images.json").read_text())["images"]
    assert [im["frame"] for im in images] == list(range(12))
    assert {im["file_name"] for im in images} == {str(video)}
    preds = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert {p["image_id"] for p in preds} <= {im["id"] for im in images}


def test_unreadable_files_are_reported_and_skipped(yolo, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    good = val_images(yolo, 2)
    for p in good:
        shutil.copy(p, photos)
    data = good[0].read_bytes()
    (photos / "cut.jpg").write_bytes(data[: len(data) // 2])
    (photos / "notes.jpg").write_text("not an image, a text file\n")
    args = ["--config", YOLO_CONFIG, "--weights", str(yolo.weights), "--source", str(photos),
            "--output", str(tmp_path / "out"), "--no-progress", "--score-thresh", "0",
            *yolo.overrides]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        run_cli(INFER.main, args)
    assert exit_info.value.code == 3
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("skipped: ") for line in err)
    assert "cut.jpg" in err[0] and "notes.jpg" in err[1]
    assert "2 images" in captured.out and "2 skipped" in captured.out
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == [p.name for p in good]
    images = json.loads((tmp_path / "out" / "images.json").read_text())["images"]
    assert [Path(im["file_name"]).name for im in images] == [p.name for p in good]


def test_segmentation_writes_overlay_and_label_png(fcn, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(val_images(fcn, 1)[0], photos)
    cv2.imwrite(
        str(photos / "wide.png"), cv2.resize(cv2.imread(str(val_images(fcn, 1)[0])), (90, 40))
    )
    code, _, err = infer(capsys, fcn, photos, tmp_path / "out")
    assert code == 0 and err == []
    model = build_model(load_config(FCN_CONFIG, fcn.overrides).model).eval()
    load_model_weights(model, load_checkpoint(fcn.weights), "fcn", str(fcn.weights))
    for src in photos.iterdir():
        h, w = cv2.imread(str(src)).shape[:2]
        assert cv2.imread(str(tmp_path / "out" / f"{src.stem}.jpg")).shape == (h, w, 3)
        labels = cv2.imread(str(tmp_path / "out" / f"{src.stem}_label.png"), cv2.IMREAD_UNCHANGED)
        assert labels.shape == (h, w) and labels.dtype == np.uint8
        image = torch.from_numpy(rgb(src)).permute(2, 0, 1).float() / 255
        assert (labels == model.predict([image])[0]["sem_seg"].numpy()).all()
    assert not (tmp_path / "out" / "predictions.json").exists()
    info = json.loads((tmp_path / "out" / "images.json").read_text())
    assert info["categories"][0] == {"id": 0, "name": "background"} and len(info["images"]) == 2


@pytest.mark.skipif(gui_unavailable() is None, reason="this OpenCV can open windows here")
def test_show_without_gui_says_so_in_one_line(yolo, tmp_path, capsys):
    code, out, err = infer(
        capsys, yolo, val_images(yolo, 1)[0], tmp_path / "out", "--show", "--score-thresh", "0"
    )
    assert code == 0 and len(err) == 1
    assert err[0].startswith("warning: --show:") and "GUI" in err[0]
    assert "done: 1 image " in out and (tmp_path / "out" / "images.json").is_file()


def test_half_on_cpu_and_bad_batch_size_are_one_line_errors(yolo, tmp_path, capsys):
    src = val_images(yolo, 1)[0]
    with pytest.raises(
        ConfigError, match=r"^precision fp16 \(--half\) runs on CUDA only; the device is cpu"
    ):
        infer(capsys, yolo, src, tmp_path / "out", "--half", "--device", "cpu")
    with pytest.raises(ConfigError, match="--batch-size must be at least 1"):
        infer(capsys, yolo, src, tmp_path / "out", "--batch-size", "0")
    with pytest.raises(SystemExit):
        INFER.parse_args(["--help"])
    assert "examples:" in capsys.readouterr().out


TWO_STAGE = {
    "faster_rcnn_shapes": ["model.resize.min_size=64", "model.resize.max_size=96",
                           "model.roi_head.fc_dim=32", "model.rpn.conv_channels=16",
                           "model.anchors.sizes=[[16,32,64]]"],
    "fast_rcnn_shapes": ["model.resize.min_size=64", "model.resize.max_size=96",
                         "model.roi_head.fc_dim=32", "model.selective_search.max_proposals=200"],
    "sppnet_shapes": ["model.resize.min_size=64", "model.resize.max_size=96",
                      "model.roi_head.fc_dim=32", "model.selective_search.max_proposals=200"],
    "rcnn_shapes": ["model.rcnn.warp_size=32", "model.rcnn.fc_dim=32",
                    "model.selective_search.max_proposals=50"],
}  # fmt: skip


@pytest.mark.parametrize("name", list(TWO_STAGE))
def test_two_stage_detectors_find_classes_in_the_config(name, yolo, tmp_path, capsys):
    """A bare state_dict (no class names in it) of each untrained R-CNN-family detector on a
    folder: class names come from data.val; Fast R-CNN, SPPNet and R-CNN run selective search
    on each image themselves; the results load into pycocotools."""
    data = [o for o in yolo.overrides if o.startswith("data.val.")]
    overrides = [*data, "model.backbone.name=lenet", "model.backbone.out_features=[]",
                 *TWO_STAGE[name]]  # fmt: skip
    config = str(ROOT / "visionkit" / "configs" / f"{name}.yaml")
    torch.manual_seed(0)
    torch.save(build_model(load_config(config, overrides).model).state_dict(), tmp_path / "w.pth")
    run = SimpleNamespace(config=config, weights=tmp_path / "w.pth", overrides=overrides)
    folder = tmp_path / "images"
    folder.mkdir()
    for path in val_images(yolo, 2):
        shutil.copy(path, folder / path.name)
    code, out, err = infer(capsys, run, folder, tmp_path / "out", "--score-thresh", "0")
    assert code == 0 and err == [] and "done: 2 images " in out
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == sorted(
        p.name for p in folder.iterdir()
    )
    info = json.loads((tmp_path / "out" / "images.json").read_text())
    assert [c["name"] for c in info["categories"]] == list(SHAPES_CLASSES)
    preds = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert preds and all(p["image_id"] in (1, 2) and len(p["bbox"]) == 4 for p in preds)
    gt = COCO()
    gt.dataset = {"images": info["images"], "categories": info["categories"], "annotations": []}
    gt.createIndex()
    assert len(gt.loadRes(preds).getAnnIds()) == len(preds)


def test_sources_folders_globs_lists_and_webcams(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("b.jpg", "a.png", "clip.MP4", "readme.txt"):
        (tmp_path / "a" / name).write_bytes(b"x")
    (tmp_path / "a" / "deeper").mkdir()
    (tmp_path / "a" / "deeper" / "c.jpg").write_bytes(b"x")
    folder = resolve_sources(str(tmp_path / "a"))
    assert [(s.kind, Path(s.path).name) for s in folder] == [
        ("image", "a.png"), ("image", "b.jpg"), ("video", "clip.MP4"),
    ]  # fmt: skip
    assert [Path(s.path).name for s in resolve_sources(f"{tmp_path}/a/**/*.jpg")] == [
        "b.jpg",
        "c.jpg",
    ]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# photos\na/b.jpg\n\n{tmp_path}/a/deeper/c.jpg\nmissing.jpg\nrun.avi\n")
    listed = resolve_sources(str(listing))
    assert [s.path for s in listed] == [
        str(tmp_path / "a/b.jpg"), str(tmp_path / "a/deeper/c.jpg"), str(tmp_path / "missing.jpg"),
        str(tmp_path / "run.avi"),
    ]  # fmt: skip
    assert [s.kind for s in listed] == ["image", "image", "image", "video"]
    assert [(s.kind, s.name) for s in resolve_sources("1")] == [("webcam", "webcam 1")]
    reasons = [r.reason for r in read_frames(listed[2:])]
    assert reasons == [
        f"cannot read image {tmp_path / 'missing.jpg'}: missing",
        f"cannot read video {tmp_path / 'run.avi'}: missing",
    ]
    for bad in (
        str(tmp_path / "nowhere.jpg"),
        f"{tmp_path}/*.png",
        str(tmp_path / "a" / "deeper" / "x"),
    ):
        with pytest.raises(DataError):
            resolve_sources(bad)


def test_colors_boxes_and_overlays():
    colors = class_colors(6)
    assert colors.shape == (6, 3) and colors.dtype == np.uint8
    assert (class_colors(3) == colors[:3]).all() and len({tuple(c) for c in colors}) == 6
    image = np.full((60, 80, 3), 128, np.uint8)
    boxes = torch.tensor([[10.0, 20.0, 50.0, 55.0]])
    drawn = draw_detections(
        image, boxes, torch.tensor([0.9]), torch.tensor([4]), list("abcde"), colors
    )
    assert (image == 128).all() and drawn.shape == image.shape
    assert (drawn[55, 30] == colors[4]).all() and (drawn[40, 30] == 128).all()  # edge, inside
    labels = np.zeros((60, 80), np.int64)
    labels[:, 40:] = 2
    over = overlay_segmentation(image, labels, colors, alpha=0.5)
    assert (over[:, :40] == 128).all()  # background left as it is
    expected = np.round(0.5 * 128 + 0.5 * colors[2].astype(float))
    assert np.abs(over[0, 50].astype(float) - expected).max() <= 1


def test_command_line_runs_as_a_script(yolo, tmp_path):
    proc = run_tool(
        "infer.py", "--config", YOLO_CONFIG, "--weights", str(yolo.weights), "--source",
        str(val_images(yolo, 1)[0]), "--output", str(tmp_path / "out"), *yolo.overrides,
    )  # fmt: skip
    assert proc.stdout.strip().splitlines()[-1].startswith("done: 1 image in ")
    assert "img/s" not in proc.stderr  # no progress bar: stderr is a pipe, not a terminal
    assert (tmp_path / "out" / "predictions.json").is_file()
