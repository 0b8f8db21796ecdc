"""visionkit.load and VisionModel on a tiny run trained here: the README's snippet, every source
kind, arrays against files, runs / checkpoints / state_dicts, results, evaluate, streaming."""

import inspect
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from script_loader import load_script
from test_fcn_e2e import CONFIG as FCN_CONFIG
from test_fcn_e2e import tiny_fcn_overrides
from test_tools_e2e import ROOT, tiny_overrides

import visionkit
from visionkit.config import load_config
from visionkit.engine.trainer import Trainer
from visionkit.errors import CheckpointError, ConfigError, DataError
from visionkit.inference.results import Result
from visionkit.models import build_model

YOLO_CONFIG = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A one-epoch YOLOv1 run at ``<tmp>/runs/yolo_v1_shapes`` and two of its val images."""
    tmp = tmp_path_factory.mktemp("api")
    overrides = tiny_overrides(tmp / "cache", epochs=1)
    folder = tmp / "runs" / "yolo_v1_shapes"
    Trainer(load_config(YOLO_CONFIG, overrides), folder, progress=False).train()
    val = next((tmp / "cache" / "shapes").glob("*-val-*"))
    images = sorted((val / "JPEGImages").glob("*.jpg"))[:2]
    return tmp, folder, overrides, images


@pytest.fixture(scope="module")
def model(run):
    return visionkit.load(run[1], score_thresh=0.0)


def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def same(a: Result, b: Result) -> bool:
    """Identical detections (bit for bit)."""
    return (
        np.array_equal(a.boxes, b.boxes)
        and np.array_equal(a.scores, b.scores)
        and np.array_equal(a.labels, b.labels)
    )


def own_predict(model, image: np.ndarray) -> dict[str, torch.Tensor]:
    """The nn.Module's own predict on an RGB array (no score threshold beyond the model's), at
    the precision ``load`` resolved (its default ``auto``: bfloat16 autocast on a CPU with native
    bfloat16, else float32)."""
    dtype = model.dtype or torch.bfloat16
    with torch.inference_mode(), torch.autocast("cpu", dtype, enabled=model.dtype is not None):
        return model.model.predict([torch.from_numpy(image).permute(2, 0, 1).float() / 255])[0]


def test_readme_snippet_runs_and_gives_the_models_own_boxes(run, monkeypatch):
    tmp, _, _, images = run
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Python\n", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "visionkit.load(" in snippet and 'predict("photo.jpg")' in snippet
    shutil.copy(images[0], tmp / "photo.jpg")
    monkeypatch.chdir(tmp)
    scope: dict = {}
    exec(snippet, scope)
    result = scope["r"]
    assert isinstance(result, Result) and result.source == "photo.jpg" and result.frame is None
    assert result.boxes.dtype == np.float32 and result.boxes.shape == (len(result), 4)
    direct = own_predict(scope["model"], rgb(images[0]))
    keep = direct["scores"] >= 0.3  # load's default threshold
    assert np.array_equal(result.boxes, direct["boxes"][keep].numpy())
    assert np.array_equal(result.labels, direct["labels"][keep].numpy())
    lines = (tmp / "out" / "photo.txt").read_text().splitlines()  # the snippet's save_txt
    assert len(lines) == len(result) and (tmp / "out" / "photo.jpg").is_file()
    assert (result.image == rgb(images[0])).all()


def test_every_source_kind_and_arrays_equal_files(model, run, tmp_path):
    path = run[3][0]
    image = rgb(path)
    (ref,) = model.predict(path)
    direct = own_predict(model, image)
    assert len(ref) > 0 and np.array_equal(ref.boxes, direct["boxes"].numpy())
    assert np.array_equal(ref.scores, direct["scores"].numpy())
    in_memory = {
        "array 0": model.predict(image),
        "array 0 (bgr)": model.predict(image[..., ::-1].copy(), bgr=True),
        "PIL image 0": model.predict(Image.fromarray(image)),
        "tensor 0": model.predict(torch.from_numpy(image).permute(2, 0, 1)),
        "tensor 0 (float)": model.predict(torch.from_numpy(image).permute(2, 0, 1) / 255),
    }
    for name, (result,) in in_memory.items():
        assert result.source == name.split(" (")[0] and same(result, ref), name
        assert (result.image == image).all(), name
    # grey: an (H, W) array and the same grey image as a PNG file
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    (from_array,), (from_file,) = model.predict(grey), model.predict(tmp_path / "grey.png")
    assert from_array.image.shape == image.shape and same(from_array, from_file)
    # folder, glob, list file: every image, in order, with its path
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in run[3]:
        shutil.copy(p, folder)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"photos/{p.name}\n" for p in run[3]))
    expected = [str(folder / p.name) for p in run[3]]
    for source in (folder, f"{folder}/*.jpg", listing):
        results = model.predict(source, batch_size=1)
        assert [r.source for r in results] == expected
        assert same(results[0], ref)
    # a list mixing paths and in-memory images, in one batch
    mixed = model.predict(
        [path, image, Image.fromarray(image), torch.from_numpy(image).permute(2, 0, 1)]
    )
    assert [r.source for r in mixed] == [str(path), "array 1", "PIL image 2", "tensor 3"]
    assert all(same(r, mixed[0]) for r in mixed)


def write_video(path: Path, image: np.ndarray, count: int, size=(96, 80)) -> None:
    """An mp4v video of ``count`` frames: ``image`` (RGB) resized, rolled 3 px further each time."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    base = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), size)
    for i in range(count):
        writer.write(np.roll(base, 3 * i, axis=1))
    writer.release()


def test_video_frames_are_indexed_and_equal_the_decoded_arrays(model, run, tmp_path):
    video = tmp_path / "clip.mp4"
    write_video(video, rgb(run[3][0]), 10)
    results = model.predict(video, batch_size=4)
    assert [r.frame for r in results] == list(range(10))
    assert {r.source for r in results} == {str(video)}
    cap = cv2.VideoCapture(str(video))
    frames = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB) for _ in range(10)]
    cap.release()
    assert all((r.image == f).all() for r, f in zip(results, frames, strict=True))
    again = model.predict(frames, batch_size=4)
    assert all(same(a, b) for a, b in zip(results, again, strict=True))


def test_run_folder_checkpoint_and_state_dict(model, run, tmp_path):
    tmp, folder, overrides, images = run
    (ref,) = model.predict(images[0])
    checkpoint = visionkit.load(folder / "best.pth", score_thresh=0.0)
    assert checkpoint.class_names == model.class_names and checkpoint.task == "detection"
    assert checkpoint.config.model.name == "yolo_v1" and isinstance(
        checkpoint.model, torch.nn.Module
    )
    assert same(checkpoint.predict(images[0])[0], ref)
    state = tmp_path / "weights.pth"
    torch.save(model.model.state_dict(), state)
    with pytest.raises(ConfigError, match=r"^\S+weights.pth holds no config \(a bare state_dict\)"):
        visionkit.load(state)
    for config, extra in ((YOLO_CONFIG, overrides), (load_config(YOLO_CONFIG, overrides), None)):
        bare = visionkit.load(state, config=config, score_thresh=0.0, overrides=extra)
        assert bare.class_names == model.class_names and bare.cat_ids == model.cat_ids
        assert same(bare.predict(images[0])[0], ref)
    with pytest.raises(CheckpointError, match="holds no best.pth or last.pth"):
        visionkit.load(tmp_path)
    assert "\n" not in str(ConfigError) and visionkit.load is visionkit.inference.api.load


def test_result_plot_save_and_coco(model, run, tmp_path):
    (every,) = model.predict(run[3][0])
    thresh = float(np.median(every.scores))  # this call's threshold, not load's (0)
    (r,) = model.predict(run[3][0], score_thresh=thresh)
    assert 0 < len(r) == (every.scores >= thresh).sum() < len(every)
    assert model.predictor.score_thresh == 0.0
    assert r.names == [model.class_names[i] for i in r.labels]
    assert r.category_ids.tolist() == [model.cat_ids[i] for i in r.labels]
    drawn = r.plot()
    assert drawn.shape == r.image.shape and drawn.dtype == np.uint8
    assert np.abs(drawn.astype(int) - r.image).mean() > 1  # boxes drawn, the image untouched
    assert (r.image == rgb(run[3][0])).all()
    saved = cv2.imread(str(r.save(tmp_path / "out.png")))
    assert (cv2.cvtColor(saved, cv2.COLOR_BGR2RGB) == drawn).all()
    with pytest.raises(DataError, match="give an image file name"):
        r.save(tmp_path / "out.txt")
    coco = r.to_coco(7)
    assert len(coco) == len(r) and {tuple(sorted(c)) for c in coco} == {
        ("bbox", "category_id", "image_id", "score")
    }
    x1, y1, x2, y2 = r.boxes[0].tolist()
    assert coco[0]["image_id"] == 7 and coco[0]["category_id"] == int(r.category_ids[0])
    assert coco[0]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
    assert coco[0]["score"] == pytest.approx(float(r.scores[0]))
    assert f"{len(r)} detections" in repr(r)


def test_evaluate_gives_the_training_runs_numbers(model, run):
    metrics = model.evaluate()
    logged = [json.loads(ln) for ln in (run[1] / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in logged if "bbox/AP50" in r][-1]
    assert metrics["bbox"]["AP50"] == pytest.approx(last["bbox/AP50"], abs=1e-6)
    assert metrics["bbox"]["AP"] == pytest.approx(last["bbox/AP"], abs=1e-6)
    voc = model.evaluate(metric="voc07", overrides=["data.val.num_images=8"])
    assert set(voc) == {"voc07", "speed"} and 0 <= voc["voc07"]["mAP"] <= 100


def test_segmentation_results(run, tmp_path):
    overrides = tiny_fcn_overrides(tmp_path / "cache")
    torch.manual_seed(0)
    state = tmp_path / "fcn.pth"
    torch.save(build_model(load_config(FCN_CONFIG, overrides).model).state_dict(), state)
    fcn = visionkit.load(state, config=FCN_CONFIG, overrides=overrides)
    assert fcn.task == "sem_seg" and fcn.class_names[0] == "background"
    image = rgb(run[3][0])
    (r,) = fcn.predict(image)
    assert r.sem_seg.shape == image.shape[:2] and r.sem_seg.dtype == np.int64
    assert np.array_equal(r.sem_seg, own_predict(fcn, image)["sem_seg"].numpy())
    assert r.boxes.shape == (0, 4) and r.plot().shape == image.shape
    with pytest.raises(ConfigError, match="segmentation model"):
        r.to_coco(1)


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def test_stream_holds_one_batch_and_memory_stays_flat(model, run, tmp_path):
    video = tmp_path / "long.mp4"
    write_video(video, rgb(run[3][0]), 200)
    stream = model.predict(video, stream=True, batch_size=8)
    assert inspect.isgenerator(stream)
    frames, start = 0, None
    for r in stream:
        assert r.frame == frames
        frames += 1
        if frames == 40:  # after warm-up
            start = rss_mb()
    growth = rss_mb() - start
    assert frames == 200 and growth < 10, f"RSS grew {growth:.1f} MB over 160 frames"


def test_bad_sources_and_unavailable_webcam(model):
    with pytest.warns(UserWarning, match=r"^skipped: cannot open webcam 9: not found or busy$"):
        assert model.predict(9) == []
    for bad, what in (
        (
            np.full((8, 8, 3), 255.0, np.float32),
            r"^array 0: a float array must hold values in "
            r"\[0, 1\]; this one holds 255\.0\.\.255\.0 \(divide by 255\)$",
        ),
        (np.zeros((8, 8, 5), np.uint8), r"^array 0: an image must be \(H, W, 3\), "),
        (torch.zeros(1, 1, 3, 8, 8), r"^tensor 0: an image must be \(3, H, W\)"),
        ([object()], r"^cannot read a object as an image source"),
        ([], r"^no sources given"),
    ):
        with pytest.raises(DataError, match=what):
            model.predict(bad)
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        model.predict(np.zeros((8, 8), np.uint8), batch_size=0)


def test_infer_takes_a_run_folder_without_config_and_device_moves(model, run, tmp_path, capsys):
    code = load_script("tools/infer.py").main(
        ["--weights", str(run[1]), "--source", str(run[3][0]), "--output", str(tmp_path / "out"),
         "--no-progress", "--score-thresh", "0"]
    )  # fmt: skip
    assert code == 0 and capsys.readouterr().out.startswith("done: 1 image in ")
    (ref,) = model.predict(run[3][0])
    preds = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert preds == ref.to_coco(1)
    on_cpu = visionkit.load(run[1] / "last.pth", device="cpu", score_thresh=0.0)
    assert on_cpu.config.train.device == "cpu" and str(on_cpu.device) == "cpu"
    assert same(on_cpu(run[3][0], device="cpu")[0], ref) and str(on_cpu.device) == "cpu"
