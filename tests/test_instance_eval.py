"""The evaluation of instance segmentation models (``segm``): COCOeval on the masks' RLEs, with
either backend equal to pycocotools' COCOeval run directly on the saved predictions file; the
predictions file round trips with its masks; hostile mask results refused in one line; the mask
confusion matrix and precision-recall curves; the metrics each task takes."""

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from test_tools_e2e import ROOT, run_tool

from visionkit.config.schema import AugmentConfig, DatasetConfig
from visionkit.data import build_dataset
from visionkit.data.coco import coco_index
from visionkit.errors import ConfigError, DataError
from visionkit.evaluation.build import build_evaluator, check_best_metric
from visionkit.evaluation.coco_backends import COCO_BACKENDS
from visionkit.evaluation.coco_eval import STAT_NAMES, check_coco_results, to_coco_results
from visionkit.evaluation.confusion import coco_confusion
from visionkit.evaluation.plots import write_evaluation_plots
from visionkit.evaluation.voc_eval import VocEvaluator
from visionkit.inference.evaluation import evaluate_predictions
from visionkit.io.atomic import write_json
from visionkit.structures.masks import encode_rles

MASK_RCNN = ROOT / "visionkit" / "configs" / "mask_rcnn_shapes.yaml"
SHAPES_VAL = {"num_images": 8, "image_size": 64}


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    cfg = DatasetConfig(type="shapes", root=str(root), splits=["val"], **SHAPES_VAL)
    return build_dataset(cfg, AugmentConfig(), None, train=False, task="instance")


def fake_predictions(ds, seed: int = 0) -> list[tuple[dict, dict]]:
    """``(target, prediction)`` per image, original pixels: each object's mask shifted by up to
    3 px, now and then of the wrong class, and a false alarm; random scores."""
    rng = np.random.default_rng(seed)
    out = []
    for image_id in ds.ids:
        h, w = ds.coco.imgs[image_id]["height"], ds.coco.imgs[image_id]["width"]
        masks, labels = [], []
        for a in ds.coco.imgToAnns[image_id]:
            shift = tuple(int(v) for v in rng.integers(-3, 4, 2))
            masks.append(np.roll(ds.coco.annToMask(a).astype(bool), shift, (0, 1)))
            label = ds.cat_ids.index(a["category_id"])
            labels.append(int(rng.integers(0, 5)) if rng.uniform() < 0.15 else label)
        alarm = np.zeros((h, w), bool)
        y, x = rng.integers(0, [h - 12, w - 12])
        alarm[y : y + 12, x : x + 10] = True
        masks, labels = [*masks, alarm], [*labels, 0]
        boxes = []
        for m in masks:  # each mask's bounds, continuous xyxy
            ys, xs = np.nonzero(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        masks, boxes = torch.from_numpy(np.stack(masks)), torch.tensor(boxes, dtype=torch.float32)
        scores = torch.from_numpy(rng.uniform(0.05, 1, len(labels)).round(2)).float()
        prediction = {"boxes": boxes, "scores": scores, "labels": torch.tensor(labels),
                      "masks": masks}  # fmt: skip
        out.append(({"image_id": image_id}, prediction))
    return out


def pycocotools_on_file(ann_file: Path, path: Path, iou_type: str, drop: str | None) -> list:
    """COCOeval run directly on a saved predictions file (``drop``: a field removed first)."""
    gt = COCO(str(ann_file))
    results = [{k: v for k, v in r.items() if k != drop} for r in json.loads(path.read_text())]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [v * 100 if v >= 0 else math.nan for v in ev.stats]


def assert_stats(metrics: dict[str, float], reference: list[float]) -> None:
    for name, v in zip(STAT_NAMES, reference, strict=True):
        assert metrics[name] == pytest.approx(v, abs=1e-6, nan_ok=True), name


@pytest.mark.parametrize("backend", COCO_BACKENDS)
def test_segm_numbers_equal_pycocotools_on_the_saved_predictions(val, tmp_path, backend):
    evaluator = build_evaluator("instance", val, "coco", coco_backend=backend)
    assert evaluator.iou_types == ("bbox", "segm")
    for target, prediction in fake_predictions(val):
        evaluator.process([target], [prediction])
    metrics = evaluator.evaluate()
    path = tmp_path / "predictions.json"
    write_json(path, evaluator.results)
    saved = json.loads(path.read_text())
    assert {tuple(sorted(r)) for r in saved} == {
        ("bbox", "category_id", "image_id", "score", "segmentation")
    }  # what a model gives, nothing COCOeval added
    assert all(isinstance(r["segmentation"]["counts"], str) for r in saved)
    # masks are scored as detectron2 scores them: without the box, so that their area is theirs
    segm = pycocotools_on_file(val.ann_file, path, "segm", drop="bbox")
    assert_stats(metrics["segm"], segm)
    assert_stats(metrics["bbox"], pycocotools_on_file(val.ann_file, path, "bbox", drop=None))
    with_boxes = pycocotools_on_file(val.ann_file, path, "segm", drop=None)
    assert with_boxes[:3] == pytest.approx(segm[:3], abs=1e-9)  # only the area ranges differ
    assert 5 < metrics["segm"]["AP"] < 95 and metrics["segm"]["AP"] != metrics["bbox"]["AP"]
    # the file scored again (visionkit eval --predictions): the same numbers, both sections
    again = evaluate_predictions(path, val, "coco", backend, task="instance").metrics
    for section in ("bbox", "segm"):
        assert again[section] == pytest.approx(metrics[section], nan_ok=True)
    only = evaluate_predictions(path, val, "segm", backend, task="instance").metrics
    assert list(only) == ["segm"] and only["segm"] == pytest.approx(metrics["segm"], nan_ok=True)


@pytest.mark.skipif(not MASK_RCNN.is_file(), reason="mask_rcnn_shapes.yaml not merged yet")
def test_eval_tool_scores_saved_masks_as_pycocotools(val, tmp_path):
    evaluator = build_evaluator("instance", val, "coco")
    for target, prediction in fake_predictions(val, seed=1):
        evaluator.process([target], [prediction])
    path = tmp_path / "predictions.json"
    write_json(path, evaluator.results)
    root = val.ann_file.parents[3]  # <cache>/shapes/<split folder>/annotations/<file>
    data = [f"data.val.root={root}", "data.val.num_images=8", "data.val.image_size=64",
            "data.num_workers=0"]  # fmt: skip
    for backend in COCO_BACKENDS:
        out = tmp_path / f"{backend}.json"
        run_tool("eval.py", "--config", str(MASK_RCNN), "--predictions", str(path),
                 "--coco-backend", backend, "--out", str(out), *data)  # fmt: skip
        metrics = json.loads(out.read_text())
        assert metrics["units"] == {"bbox": "percent", "segm": "percent"}
        assert_stats(metrics["segm"], pycocotools_on_file(val.ann_file, path, "segm", "bbox"))


def test_segm_metric_of_a_detector_refused_in_one_line(tmp_path):
    cfg = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")
    proc = run_tool("eval.py", "--config", cfg, "--predictions", str(tmp_path / "p.json"),
                    "--metric", "segm", check=False)  # fmt: skip
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.endswith(
        "--metric segm scores instance masks; 'yolo_v1' is a detection model (boxes only)"
    )


def test_to_coco_results_carry_each_mask_and_leave_diverged_ones_out():
    masks = torch.zeros(3, 6, 5, dtype=torch.bool)
    masks[0, 1:3, 1:4] = masks[2, 4:, :] = True
    prediction = {"boxes": torch.tensor([[1, 1, 4, 3], [0, 0, math.nan, 1], [0, 4, 5, 6.0]]),
                  "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 1, 1]),
                  "masks": masks}  # fmt: skip
    results = to_coco_results(3, prediction, [5, 8])
    assert [r["category_id"] for r in results] == [5, 8]
    for r, m in zip(results, masks[[0, 2]], strict=True):
        rle = {**r["segmentation"], "counts": r["segmentation"]["counts"].encode()}
        assert r["segmentation"]["size"] == [6, 5]
        assert np.array_equal(mask_utils.decode(rle).astype(bool), m.numpy())
    boxes_only = {k: v for k, v in prediction.items() if k != "masks"}
    assert ["segmentation" in r for r in to_coco_results(3, boxes_only, [5, 8])] == [False] * 2


def _result(**changes) -> dict:
    rle = encode_rles(torch.ones(1, 30, 40, dtype=torch.bool))[0]
    return {"image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 12], "score": 0.5,
            "segmentation": rle, **changes}  # fmt: skip


BAD_RESULTS = [
    ({"segmentation": ...}, "has no 'segmentation'"),
    ({"segmentation": [[1, 2, 10, 2, 10, 12]]}, r"'segmentation' is not a compressed RLE .*list"),
    ({"segmentation": {"size": [30, 40], "counts": [1200]}}, "counts are no text"),
    ({"segmentation": {"size": [30, 41], "counts": "PQ1"}}, r"is an RLE of size \[30, 41\]"),
    ({"segmentation": {"size": [30, 40], "counts": "PQ1"}}, "is an RLE covering 1056 pixels"),
    ({"segmentation": {"size": [30, 40], "counts": "\x7f"}}, "'counts' are not run lengths"),
    ({"segmentation": "RLE"}, "is not a compressed RLE"),
]


@pytest.mark.parametrize(("change", "message"), BAD_RESULTS)
def test_hostile_mask_results_refused_in_one_line(change, message):
    record = _result(**change)
    if change.get("segmentation") is ...:
        del record["segmentation"]
    with pytest.raises(DataError, match=rf"^p\.json: record 0.*{message}") as e:
        check_coco_results([record], {1: (30, 40)}, [3], "p.json", masks=True)
    assert "\n" not in str(e.value)
    check_coco_results([record], {1: (30, 40)}, [3], "p.json")  # boxes alone: not looked at


def test_box_results_scored_as_masks_refused(val, tmp_path):
    path = tmp_path / "boxes.json"
    image_id = val.ids[0]
    path.write_text(json.dumps([{"image_id": image_id, "category_id": 1, "bbox": [1, 1, 5, 5],
                                 "score": 0.5}]))  # fmt: skip
    with pytest.raises(DataError, match="record 0 has no 'segmentation'"):
        evaluate_predictions(path, val, "coco", task="instance")
    voc = evaluate_predictions(path, val, "voc07", task="instance")  # boxes: no mask needed
    assert list(voc.metrics) == ["voc07"]
    evaluator = build_evaluator("instance", val, "segm")
    evaluator.add_results(json.loads(path.read_text()), val.ids)
    with pytest.raises(DataError, match="result 0 has no 'segmentation'"):
        evaluator.evaluate()


def _square(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def test_mask_confusion_matches_masks_not_boxes():
    """Two triangles halving one square share their box (box IoU 1) but not their pixels."""
    crowd = np.zeros((20, 20), np.uint8, order="F")
    crowd[12:, :8] = 1
    rle = mask_utils.encode(crowd)
    gt = {"images": [{"id": 1, "width": 20, "height": 20}, {"id": 2, "width": 20, "height": 20}],
          "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
          "annotations": [
              {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 6, 6], "iscrowd": 0,
               "area": 36, "segmentation": _square(2, 2, 8, 8)},
              {"id": 2, "image_id": 1, "category_id": 2, "bbox": [10, 2, 8, 8], "iscrowd": 0,
               "area": 64, "segmentation": _square(10, 2, 18, 10)},
              {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 12, 8, 8], "iscrowd": 1,
               "area": 64, "segmentation": {"size": [20, 20], "counts": rle["counts"].decode()}},
              {"id": 4, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0,
               "area": 50, "segmentation": [[0, 0, 0, 10, 10, 10]]}]}  # fmt: skip
    coco = coco_index(gt)

    def mask(rows: slice, cols: slice, tri: bool = False) -> np.ndarray:
        m = np.zeros((20, 20), bool)
        m[rows, cols] = True
        return np.triu(m) if tri else m

    dets = [
        (1, 2, 0.9, mask(slice(2, 8), slice(2, 8))),  # object 1 taken for class b
        (1, 2, 0.8, mask(slice(2, 10), slice(11, 18))),  # object 2, IoU 0.875
        (1, 1, 0.7, mask(slice(14, 18), slice(2, 6))),  # inside the crowd region
        (1, 1, 0.6, mask(slice(0, 2), slice(12, 18))),  # a false alarm
        (1, 1, 0.1, mask(slice(2, 8), slice(2, 8))),  # below the score threshold
        (2, 1, 0.9, mask(slice(0, 10), slice(0, 10), tri=True)),  # the other triangle
    ]
    rles = [encode_rles(m[None])[0] for *_, m in dets]
    results = [{"image_id": i, "category_id": c, "score": s, "segmentation": rle,
                "bbox": [float(v) for v in mask_utils.toBbox(rle)]}
               for (i, c, s, _), rle in zip(dets, rles, strict=True)]  # fmt: skip
    segm = coco_confusion(coco, results, [1, 2], iou_type="segm")
    assert segm.tolist() == [[0, 1, 1], [0, 1, 0], [2, 0, 0]]
    boxes = coco_confusion(coco, results, [1, 2], iou_type="bbox")
    assert boxes.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]  # the triangles: one box


def test_instance_plots_add_the_masks(val, tmp_path):
    evaluator = build_evaluator("instance", val, "coco")
    for target, prediction in fake_predictions(val):
        evaluator.process([target], [prediction])
    evaluator.evaluate()
    files = write_evaluation_plots(evaluator, tmp_path, 0.3, 0.5)
    assert [f.name for f in files] == [
        "pr_curves.png", "pr_curves_segm.png", "confusion_matrix.png", "confusion_matrix.csv",
        "confusion_matrix_segm.png", "confusion_matrix_segm.csv",
    ]  # fmt: skip
    matrix = coco_confusion(val.coco, evaluator.results, val.ids, 0.3, 0.5, "segm")
    rows = (tmp_path / "confusion_matrix_segm.csv").read_text().splitlines()[1:]
    assert [[int(v) for v in r.split(",")[1:]] for r in rows] == matrix.tolist()
    assert evaluator.accumulated is evaluator.accumulations["bbox"]


def test_the_metrics_each_task_takes(val):
    for metric, sections in (("coco", ("bbox", "segm")), ("all", ("bbox", "segm")),
                             ("segm", ("segm",))):  # fmt: skip
        assert build_evaluator("instance", val, metric).iou_types == sections
    assert isinstance(build_evaluator("instance", val, "voc07"), VocEvaluator)
    assert build_evaluator("detection", val, "coco").iou_types == ("bbox",)
    with pytest.raises(ConfigError, match="metric 'segm' scores instance masks; a detection"):
        build_evaluator("detection", val, "segm")
    check_best_metric("segm/AP50", "instance")
    check_best_metric("bbox/AP-circle", "instance")
    with pytest.raises(ConfigError, match=r"e\.g\. bbox/AP50"):
        check_best_metric("segm/AP50", "detection")
    with pytest.raises(ConfigError, match=r"e\.g\. segm/AP50"):
        check_best_metric("segm/mIoU", "instance")
