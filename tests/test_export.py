"""ONNX export of every model and the onnxruntime predictor: parity with the PyTorch Predictor on
shapes val images (batches of 1 and 3), empty outputs, the file's metadata, unreadable files, and
tools/export.py end to end. Tiny randomly initialized models (tests/test_model_contract.py's)."""

import json
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest
import torch
from script_loader import load_script
from test_model_contract import TINY
from test_model_contract import build as build_tiny
from test_tools_e2e import ROOT
from torchvision.ops import box_iou

from visionkit.config import load_config
from visionkit.config.loader import config_to_dict
from visionkit.data import ensure_shapes
from visionkit.errors import CheckpointError, ConfigError
from visionkit.export import export_onnx
from visionkit.export.onnx import METADATA_KEY
from visionkit.inference import OnnxPredictor, PredictorBackend
from visionkit.inference.predictor import Predictor
from visionkit.io.image import image_to_float
from visionkit.models import build_model, model_task

NAMES, CAT_IDS = ["circle", "square", "triangle"], [1, 2, 3]
FPN = [
    *TINY["faster_rcnn"], "model.backbone.out_features=[c2,c3]", "model.fpn.enabled=true",
    "model.fpn.out_channels=16", "model.fpn.extra_pool=true", "model.fpn.canonical_size=32",
    "model.fpn.canonical_level=3", "model.anchors.sizes=[[8.0,12.0],[16.0,24.0],[32.0,48.0]]",
]  # fmt: skip
VARIANTS = {name: (name, TINY[name]) for name in TINY} | {"faster_rcnn_fpn": ("faster_rcnn", FPN)}
SCORE = 0.05  # detections compared: PyTorch's scoring at least this


def build(variant: str, extra: tuple[str, ...] = ()):
    """The variant's config and model (random weights, nudged away from zero as the contract
    tests do), with ``extra`` overrides."""
    name, overrides = VARIANTS[variant]
    cfg = load_config(None, [f"model.name={name}", *overrides, *extra])
    if not extra:
        return cfg, build_tiny(name)
    torch.manual_seed(0)
    return cfg, build_model(cfg.model)


@pytest.fixture(scope="module")
def shapes_images(tmp_path_factory) -> list[np.ndarray]:
    """Four shapes val images (96 px), RGB uint8, and a wider copy of the first (another size)."""
    root = ensure_shapes(tmp_path_factory.mktemp("shapes"), "val", num_images=4, image_size=96)
    files = sorted(root["images"].glob("*.jpg"))[:4]
    images = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    return [*images, cv2.resize(images[0], (130, 72))]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """variant -> (model, path of its export), each exported once."""
    folder, cache = tmp_path_factory.mktemp("onnx"), {}

    def get(variant: str):
        if variant not in cache:
            cfg, model = build(variant)
            path = export_onnx(model.eval(), cfg, folder / f"{variant}.onnx", NAMES, CAT_IDS)
            cache[variant] = (model, path)
        return cache[variant]

    return get


def torch_predictor(model) -> Predictor:
    return Predictor(model, torch.device("cpu"), model.task, NAMES, CAT_IDS, SCORE)


def matched(a: dict, b: dict) -> torch.Tensor:
    """``(len(a),)`` bool: each detection of ``a`` has one in ``b`` of its label at IoU >= 0.99
    scoring within 1e-3."""
    if len(a["boxes"]) == 0 or len(b["boxes"]) == 0:
        return torch.zeros(len(a["boxes"]), dtype=torch.bool)
    iou = box_iou(a["boxes"], b["boxes"])
    close = (a["scores"][:, None] - b["scores"][None]).abs() <= 1e-3
    same = a["labels"][:, None] == b["labels"][None]
    return ((iou >= 0.99) & close & same).any(1)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_onnxruntime_matches_pytorch_on_batches_of_1_and_3(variant, exported, shapes_images):
    model, path = exported(variant)
    ours, theirs = OnnxPredictor(path, score_thresh=SCORE), torch_predictor(model)
    assert (ours.task, ours.class_names, ours.cat_ids) == (model.task, NAMES, CAT_IDS)
    compared = found = 0
    for batch in (shapes_images[:1], shapes_images[1:4], shapes_images[3:]):
        for o, t, img in zip(ours(batch), theirs(batch), batch, strict=True):
            if model.task == "sem_seg":
                assert o["sem_seg"].shape == img.shape[:2] and o["sem_seg"].dtype == torch.int64
                assert (o["sem_seg"] == t["sem_seg"]).float().mean() >= 0.999
                compared += 1
                continue
            assert o["boxes"].dtype == torch.float32 and o["labels"].dtype == torch.int64
            compared += len(t["boxes"])
            found += int(matched(t, o).sum())
            assert int(matched(o, t).sum()) >= 0.99 * len(o["boxes"])  # no extra detections
    assert compared > 0
    if model.task != "sem_seg":
        assert found >= 0.99 * compared, (found, compared)


@pytest.mark.parametrize("variant", ["faster_rcnn", "fcn"])
def test_both_backends_call_is_predict_thresholded_on_the_cpu(variant, exported, shapes_images):
    model, path = exported(variant)
    images = shapes_images[:2]
    tensors = [image_to_float(torch.from_numpy(img).permute(2, 0, 1)) for img in images]
    for backend in (OnnxPredictor(path), torch_predictor(model)):
        assert isinstance(backend, PredictorBackend) and backend.predict_extras == ()
        raw = backend.predict(tensors)
        if model.task != "sem_seg":  # a threshold between the scores predict gives
            backend.score_thresh = float(torch.cat([r["scores"] for r in raw]).median())
        kept = 0
        for r, called in zip(raw, backend(images), strict=True):
            if model.task == "sem_seg":
                assert torch.equal(r["sem_seg"], called["sem_seg"])
                continue
            keep = r["scores"] >= backend.score_thresh
            kept += int(keep.sum())
            for key in ("boxes", "scores", "labels"):
                assert torch.equal(r[key][keep], called[key])
        if model.task != "sem_seg":
            assert 0 < kept < sum(len(r["scores"]) for r in raw)


BACKGROUND = {  # thresholds no random-weight score reaches: every image is all background
    "yolo_v1": ("model.yolo.score_thresh=0.999",),
    "rcnn": ("model.roi_head.score_thresh=0.999",),
}


@pytest.mark.parametrize("variant", sorted(v for v in VARIANTS if v != "fcn"))
def test_a_blank_image_gives_empty_outputs(variant, tmp_path):
    extra = BACKGROUND.get(VARIANTS[variant][0], ("model.roi_head.score_thresh=0.999",))
    cfg, model = build(variant, extra)
    path = export_onnx(model.eval(), cfg, tmp_path / "m.onnx", NAMES, CAT_IDS)
    predictor = OnnxPredictor(path, score_thresh=0.0)
    blank = np.full((90, 110, 3), 128, np.uint8)
    for out in predictor([blank]) + predictor([blank, blank]):
        assert out["boxes"].shape == (0, 4) and out["scores"].shape == out["labels"].shape == (0,)
    if "proposals" in predictor.meta["inputs"]:  # no regions at all
        batch, feed = predictor.inputs([torch.full((3, 90, 110), 0.5)])
        feed["proposals"] = np.zeros((0, 5), np.float32)
        assert all(o.shape[0] == 0 for o in predictor.session.run(None, feed))


def test_fcn_gives_logits_and_label_map_of_any_size(exported):
    _, path = exported("fcn")
    predictor = OnnxPredictor(path)
    for h, w in ((64, 96), (40, 56)):
        batch, feed = predictor.inputs([torch.rand(3, h, w), torch.rand(3, h, w)])
        logits, labels = predictor.session.run(None, feed)
        assert logits.shape == (2, 3, *feed["images"].shape[2:]) and labels.dtype == np.int64
        assert np.array_equal(logits.argmax(1), labels)


def test_uint8_images_give_the_float_graphs_detections(tmp_path, shapes_images):
    cfg, model = build("yolo_v1")
    image = cv2.resize(shapes_images[0], (64, 64))  # the input size: no resizing, exact pixels
    paths = [
        export_onnx(model, cfg, tmp_path / f"{d}.onnx", NAMES, CAT_IDS, input_dtype=d)
        for d in ("float32", "uint8")
    ]
    (a,), (b,) = (OnnxPredictor(p, score_thresh=SCORE)([image]) for p in paths)
    (t,) = torch_predictor(model)([image])
    assert len(t["boxes"]) > 0 and matched(t, b).all() and matched(t, a).all()
    assert len(a["boxes"]) == len(b["boxes"])


def test_metadata_is_enough_to_run_the_file(exported):
    _, path = exported("faster_rcnn")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    meta = json.loads(props[METADATA_KEY])
    cfg, _ = build("faster_rcnn")
    assert meta["config"] == config_to_dict(cfg)
    assert (meta["model"], meta["task"]) == ("faster_rcnn", model_task("faster_rcnn"))
    assert (meta["class_names"], meta["cat_ids"]) == (NAMES, CAT_IDS)
    assert meta["inputs"] == ["images", "image_sizes"]
    assert meta["outputs"] == ["boxes", "scores", "labels", "batch_index"]
    assert meta["input"]["dtype"] == "float32" and meta["input"]["resize"] == "shorter_side"
    assert meta["input"]["dynamic_size"] is True


def test_yolo_refuses_a_dynamic_size_and_shorter_side_resizing_a_static_one(tmp_path):
    cfg, model = build("yolo_v1")
    with pytest.raises(ConfigError, match="fixed model.input_size"):
        export_onnx(model, cfg, tmp_path / "y.onnx", NAMES, CAT_IDS, dynamic_size=True)
    cfg, model = build("faster_rcnn")
    with pytest.raises(ConfigError, match="resizes 'shorter_side'"):
        export_onnx(model, cfg, tmp_path / "f.onnx", NAMES, CAT_IDS, dynamic_size=False)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's notice
def test_corrupt_and_foreign_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 not a model at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable ONNX model") as e:
        OnnxPredictor(bad)
    assert "\n" not in str(e.value)
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.ReLU(), (torch.rand(1, 3),), str(foreign), dynamo=False)
    with pytest.raises(CheckpointError, match="without visionkit metadata"):
        OnnxPredictor(foreign)
    with pytest.raises(CheckpointError, match="no such ONNX file"):
        OnnxPredictor(tmp_path / "missing.onnx")


def test_tools_export_end_to_end(tmp_path, capsys, shapes_images):
    cfg, model = build("yolo_v1")
    weights = tmp_path / "w.pth"
    ckpt = {"model": model.state_dict(), "model_name": "yolo_v1"}
    torch.save(ckpt | {"class_names": NAMES, "cat_ids": CAT_IDS}, weights)
    output = tmp_path / "out" / "yolo.onnx"
    overrides = ["model.name=yolo_v1", *TINY["yolo_v1"]]
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  name: yolo_v1\n")
    tool = load_script("tools/export.py")
    code = tool.main(["--config", str(config), "--weights", str(weights), "--output", str(output),
                      *overrides])  # fmt: skip
    line = capsys.readouterr().out.strip()
    assert code == 0 and line.startswith(f"exported yolo_v1 to {output} (") and "MiB" in line
    out = OnnxPredictor(output, score_thresh=SCORE)(shapes_images[:2])
    ref = torch_predictor(model.eval())(shapes_images[:2])
    assert sum(len(r["boxes"]) for r in ref) > 0
    assert all(matched(r, o).all() for r, o in zip(ref, out, strict=True))


def test_tools_export_help_and_bad_weights():
    tool = [sys.executable, str(ROOT / "tools" / "export.py")]
    proc = subprocess.run([*tool, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "examples:" in proc.stdout and "--opset" in proc.stdout
    config = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")
    proc = subprocess.run(
        [*tool, "--config", config, "--weights", str(ROOT / "README.md"), "--output", "x.onnx"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_onnx_vs_eager_benchmark_quick_table(tmp_path):
    overrides = [
        f"data.val.root={tmp_path}", "data.val.num_images=2", "data.val.image_size=64",
        "model.input_size=[64,64]", "model.backbone.name=lenet", "model.backbone.out_features=[]",
        "model.yolo.grid_size=2", "model.yolo.head_channels=16", "model.yolo.extra_convs=1",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "onnx_vs_eager.py"), "--quick",
         "--batch-sizes", "1", "2", "--config", "visionkit/configs/yolo_v1_shapes.yaml", *overrides],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("command: python benchmarks/onnx_vs_eager.py --quick")
    table = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln.startswith("|")]
    header, rows = table[0], table[2:]
    assert header[:3] == ["config", "model", "size"] and "eager / onnx (2)" in header
    assert len(rows) == 1 and rows[0][:3] == ["yolo_v1_shapes.yaml", "yolo_v1", "64x64"]
    assert all(float(v) > 0 for v in rows[0][3:])
