"""An exported model through the Python API and the tools: ``visionkit.load("model.onnx")`` gives
the checkpoint's results, and ``tools/infer.py --weights model.onnx`` writes the checkpoint's
predictions file (the same detections, so the same COCO AP)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_api import YOLO_CONFIG, rgb, run  # noqa: F401 (a module fixture)
from test_tools_e2e import run_tool
from torchvision.ops import box_iou

import visionkit
from visionkit.checkpoints import load_checkpoint, save_checkpoint
from visionkit.config import load_config
from visionkit.inference import OnnxPredictor, Predictor
from visionkit.inference.evaluation import evaluate_predictions, val_dataset


@pytest.fixture(scope="module")
def weights(run, tmp_path_factory):  # noqa: F811
    """The run's checkpoint with its weights perturbed: a one-epoch model scores every box
    alike, and ties cut at the top-k would compare nothing; these score them apart."""
    ckpt = load_checkpoint(run[1] / "best.pth")
    g = torch.Generator().manual_seed(0)
    for key, value in ckpt["model"].items():
        if value.is_floating_point() and "running" not in key:
            value.add_(0.05 * torch.randn(value.shape, generator=g))
    folder = tmp_path_factory.mktemp("onnx")
    save_checkpoint(ckpt, folder / "perturbed.pth")
    visionkit.load(folder / "perturbed.pth").export(folder / "model.onnx")
    return folder / "perturbed.pth", folder / "model.onnx"


def matched(boxes, scores, labels, other) -> float:
    """Share of the detections with one of ``other`` (boxes, scores, labels) at IoU >= 0.99, the
    same label and a score within 1e-3."""
    if not len(boxes):
        return 1.0
    o_boxes, o_scores, o_labels = (np.asarray(v) for v in other)
    iou = box_iou(torch.as_tensor(boxes).reshape(-1, 4), torch.as_tensor(o_boxes).reshape(-1, 4))
    same = (labels[:, None] == o_labels[None]) & (np.abs(scores[:, None] - o_scores[None]) < 1e-3)
    return float(((iou.numpy() >= 0.99) & same).any(1).mean())


def test_onnx_file_loads_and_predicts_as_the_checkpoint(run, weights):  # noqa: F811
    # float32: the exported graph's precision (load's default auto is bf16 where native)
    pth, onnx_file = (visionkit.load(w, score_thresh=0.15, precision="float32") for w in weights)
    assert isinstance(pth.predictor, Predictor) and isinstance(onnx_file.predictor, OnnxPredictor)
    assert isinstance(pth.model, torch.nn.Module) and onnx_file.model is None  # the graph's
    assert onnx_file.task == "detection" and onnx_file.class_names == pth.class_names
    assert onnx_file.cat_ids == pth.cat_ids
    images = run[3]
    ours, theirs = pth.predict(images), onnx_file.predict([rgb(p) for p in images])
    assert 0 < sum(len(r.boxes) for r in ours) < 100 * len(images)  # distinct, under the cap
    for a, b in zip(ours, theirs, strict=True):
        assert matched(a.boxes, a.scores, a.labels, (b.boxes, b.scores, b.labels)) >= 0.99
        assert matched(b.boxes, b.scores, b.labels, (a.boxes, a.scores, a.labels)) >= 0.99
        assert b.names == [onnx_file.class_names[i] for i in b.labels]


def by_image(folder) -> dict[str, tuple]:
    """``file name -> (boxes xywh, scores, labels)`` of an infer output folder."""
    names = {im["id"]: im["file_name"] for im in
             json.loads((folder / "images.json").read_text())["images"]}  # fmt: skip
    out: dict[str, list] = {n: [] for n in names.values()}
    for r in json.loads((folder / "predictions.json").read_text()):
        out[names[r["image_id"]]].append(r)
    return {
        n: (np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in rs)]),
            np.array([r["score"] for r in rs]), np.array([r["category_id"] for r in rs]))
        for n, rs in out.items()
    }  # fmt: skip


@pytest.mark.slow
def test_infer_on_the_onnx_file_writes_the_checkpoints_predictions(run, weights, tmp_path):  # noqa: F811
    tmp, folder, overrides, images = run
    outputs = {}
    for name, w in zip(("pth", "onnx"), weights, strict=True):
        outputs[name] = tmp_path / name
        run_tool("infer.py", "--weights", str(w), "--source", str(images[0].parent), "--output",
                 str(outputs[name]), "--score-thresh", "0.15", "--precision", "float32",
                 "--no-progress")  # fmt: skip
    pth, onnx_file = by_image(outputs["pth"]), by_image(outputs["onnx"])
    assert pth.keys() == onnx_file.keys() and sum(len(v[1]) for v in pth.values()) > 0
    for name, (boxes, scores, labels) in pth.items():
        assert matched(boxes, scores, labels, onnx_file[name]) >= 0.99, name
        assert matched(*onnx_file[name], (boxes, scores, labels)) >= 0.99, name
    # and so the same COCO numbers, once infer's image ids are mapped to the dataset's
    dataset = val_dataset(load_config(YOLO_CONFIG, overrides))
    id_of = {dataset.coco.imgs[i]["file_name"]: i for i in dataset.ids}
    scores = {}
    for name, out in outputs.items():
        images_json = json.loads((out / "images.json").read_text())["images"]
        to_dataset = {im["id"]: id_of[Path(im["file_name"]).name] for im in images_json}
        results = json.loads((out / "predictions.json").read_text())
        for r in results:
            r["image_id"] = to_dataset[r["image_id"]]
        (out / "scored.json").write_text(json.dumps(results))
        scores[name] = evaluate_predictions(out / "scored.json", dataset).metrics["bbox"]
    assert all(abs(scores["pth"][k] - scores["onnx"][k]) <= 0.1 for k in ("AP", "AP50")), scores


def test_onnx_file_evaluates_to_the_checkpoints_numbers(run, weights):  # noqa: F811
    overrides = run[2]
    pth, onnx_file = (visionkit.load(w, overrides=overrides) for w in weights)
    assert onnx_file.config.model.name == "yolo_v1"
    ours, theirs = pth.evaluate()["bbox"], onnx_file.evaluate()["bbox"]
    assert ours["AR100"] > 0  # something is detected, so the comparison means something
    for key in ("AP", "AP50", "AP75", "AR100"):
        assert abs(ours[key] - theirs[key]) <= 0.1, (key, ours[key], theirs[key])
