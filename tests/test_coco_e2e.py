"""A COCO dataset with non-contiguous category ids, crowd regions and negative images trains,
evaluates, and its predictions leave the toolkit with the dataset's own category ids."""

import json
import shutil

from test_tools_e2e import ROOT, run_tool, tiny_overrides

from visionkit.data import ensure_shapes

OWN_IDS = [7, 17, 42, 60, 90]  # shapes' classes 1..5 renamed to ids with gaps


def make_coco(tmp_path):
    """The tiny shapes train split rewritten as a COCO dataset with awkward ids."""
    src = ensure_shapes(tmp_path / "src", "train", num_images=16, image_size=96)
    images = tmp_path / "coco" / "images"
    shutil.copytree(src["images"], images)
    data = json.loads(src["ann_file"].read_text())
    remap = {k + 1: cid for k, cid in enumerate(OWN_IDS)}
    for c in data["categories"]:
        c["id"] = remap[c["id"]]
    data["categories"].reverse()  # file order must not matter
    for a in data["annotations"]:
        a["category_id"] = remap[a["category_id"]]
    first = data["images"][0]["id"]
    data["annotations"].append({
        "id": 10_000, "image_id": first, "category_id": 42, "bbox": [0, 0, 40, 40],
        "area": 1600.0, "iscrowd": 1, "segmentation": {"counts": [0, 9216], "size": [96, 96]},
    })  # fmt: skip
    for k in range(2):  # negatives: images without any annotation
        name = f"negative_{k}.jpg"
        shutil.copy(next(images.iterdir()), images / name)
        data["images"].append({"id": 500 + k, "file_name": name, "width": 96, "height": 96})
    ann = tmp_path / "coco" / "instances.json"
    ann.write_text(json.dumps(data))
    return ann, images


def test_noncontiguous_ids_train_evaluate_and_predict_with_own_ids(tmp_path):
    ann, images = make_coco(tmp_path)
    coco = [
        f"data.{s}.{k}={v}"
        for s in ("train", "val")
        for k, v in (("type", "coco"), ("root", images), ("ann_file", ann))
    ]
    tiny = [o for o in tiny_overrides(tmp_path / "unused", epochs=1) if ".root=" not in o]
    cfg = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")
    out = tmp_path / "run"
    run_tool("train.py", "--config", cfg, "--output-dir", str(out), "--no-progress", *tiny, *coco)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("bbox/AP50" in r for r in records)
    preds_path, metrics_path = tmp_path / "preds.json", tmp_path / "metrics.json"
    run_tool(
        "eval.py", "--config", cfg, "--weights", str(out / "last.pth"), "--no-progress",
        "--save-predictions", str(preds_path), "--out", str(metrics_path), *tiny, *coco,
    )  # fmt: skip
    preds = json.loads(preds_path.read_text())
    assert preds, "a trained model scores some boxes above the 0.01 threshold"
    assert {p["category_id"] for p in preds} <= set(OWN_IDS)
    assert {p["image_id"] for p in preds} <= {
        i["id"] for i in json.loads(ann.read_text())["images"]
    }
    metrics = json.loads(metrics_path.read_text())["bbox"]
    assert {f"AP-{n}" for n in ("circle", "square", "triangle", "star", "cross")} <= set(metrics)
    assert 0 <= metrics["AP50"] <= 100
