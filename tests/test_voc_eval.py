"""Pascal VOC AP against hand-computed precision/recall curves; tools/eval.py --metric on a
predictions JSON of tiny generated shapes data, its COCO numbers against pycocotools directly."""

import contextlib
import io
import json
import math
import shutil

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from script_loader import load_script
from test_tools_e2e import ROOT, run_tool

from visionkit.data import ensure_shapes
from visionkit.data.shapes import CLASSES as SHAPES_CLASSES
from visionkit.data.voc import VOCDetection
from visionkit.errors import ConfigError, DataError
from visionkit.evaluation import (
    VocEvaluator,
    build_evaluator,
    from_coco_results,
    precision_recall,
    voc_ap,
    voc_ground_truth,
    voc_metrics,
)
from visionkit.evaluation.voc_eval import match_image, pairwise_iou
from visionkit.structures.boxes import convert_boxes

NAMES = ["a", "b", "c"]  # "b" has detections but no ground truth
A, B, C = 0, 1, 2


def gt(boxes, labels, difficult=None):
    n = len(labels)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult or [False] * n, dtype=torch.bool),
    }


def dets(rows):
    """``rows``: (x1, y1, x2, y2, score, label)."""
    t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return {"boxes": t[:, :4], "scores": t[:, 4], "labels": t[:, 5].long()}


# Class a: 3 counted boxes (g1, g2, g3) and one difficult box (gd). Class c: one box on image 2.
GROUND_TRUTH = {
    1: gt([[0, 0, 10, 10], [20, 20, 30, 30]], [A, A], [False, True]),  # g1, gd
    2: gt([[0, 0, 10, 10], [50, 50, 60, 60]], [A, C]),  # g2, the c box
    3: gt([[0, 0, 10, 10]], [A]),  # g3: image 3 has no detections at all
}
PREDICTIONS = {
    1: dets([
        [0, 0, 10, 10, 0.9, A],  # a1: g1, IoU 1 -> TP
        [20, 20, 30, 30, 0.7, A],  # a3: the difficult gd -> ignored
        [0, 0, 10, 9, 0.5, A],  # a5: g1 again (IoU 0.9) -> duplicate, FP
        [0, 0, 10, 10, 0.99, C],  # c1: over g1, a box of another class -> FP
        [0, 0, 10, 10, 0.8, B],  # b1: no b box anywhere
    ]),
    2: dets([
        [40, 40, 50, 50, 0.8, A],  # a2: overlaps nothing -> FP
        [0, 0, 10, 10, 0.6, A],  # a4: g2 -> TP
        [50, 50, 60, 60, 0.95, C],  # c2: the c box -> TP
    ]),
    3: dets([]),
}  # fmt: skip
# Class a in score order a1..a5: TP, FP, ignored, TP, FP; npos = 3 (gd not counted, g3 missed)
#   cumulative tp = 1, 1, 1, 2, 2; fp = 0, 1, 1, 1, 2
#   recall = 1/3, 1/3, 1/3, 2/3, 2/3; precision = 1, 1/2, 1/2 (ignored: repeated), 2/3, 1/2
#   11-point: recall >= t for t in 0..0.3 (4 levels): max precision 1; t in 0.4..0.6 (3 levels):
#     max(2/3, 1/2) = 2/3; t >= 0.7 (4 levels): 0  ->  (4 + 3 * 2/3) / 11 = 6/11
#   area: envelope 1 up to recall 1/3, 2/3 up to 2/3, then 0  ->  1/3 * 1 + 1/3 * 2/3 = 5/9
# Class c in score order c1, c2: FP, TP; npos = 1
#   recall = 0, 1; precision = 0, 1/2  ->  11-point: 1/2 at every level; area: 1 * 1/2
AP_A = {"voc07": 6 / 11, "voc": 5 / 9}


def test_hand_computed_curves_and_ap():
    curves = precision_recall(GROUND_TRUTH, PREDICTIONS, num_classes=3)
    a, b, c = curves
    assert a.npos == 3 and b.npos == 0 and c.npos == 1
    np.testing.assert_allclose(a.recall, [1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(a.precision, [1, 1 / 2, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(c.recall, [0, 1])
    np.testing.assert_allclose(c.precision, [0, 1 / 2])
    assert len(b.recall) == 1 and math.isnan(b.recall[0])
    assert voc_ap(a.recall, a.precision, use_07_metric=True) == pytest.approx(6 / 11)
    assert voc_ap(a.recall, a.precision, use_07_metric=False) == pytest.approx(5 / 9)
    for use_07 in (True, False):
        assert voc_ap(c.recall, c.precision, use_07) == pytest.approx(1 / 2)
    for metric, ap_a in AP_A.items():
        m = voc_metrics(curves, NAMES, metric)
        assert m["AP-a"] == pytest.approx(100 * ap_a) and m["AP-c"] == pytest.approx(50.0)
        assert math.isnan(m["AP-b"])  # no ground truth: NaN, left out of the mean
        assert m["mAP"] == pytest.approx(100 * (ap_a + 1 / 2) / 2)


def test_eleven_point_levels_are_exact_tenths():
    # np.arange(0., 1.1, 0.1)[3] is 0.30000000000000004: a recall of exactly 0.3 must still count
    recall, precision = np.array([0.3]), np.array([1.0])
    assert voc_ap(recall, precision, use_07_metric=True) == pytest.approx(4 / 11)  # t = 0..0.3
    assert voc_ap(np.zeros(0), np.zeros(0), use_07_metric=True) == 0.0
    assert voc_ap(np.zeros(0), np.zeros(0), use_07_metric=False) == 0.0


def test_iou_threshold_is_strict_and_configurable():
    g = gt([[0, 0, 10, 10]], [A])
    d = dets([[0, 0, 10, 5, 0.9, A]])  # IoU exactly 0.5
    assert match_image(d["boxes"], d["labels"], g["boxes"], g["labels"]).tolist() == [-1]
    assert match_image(d["boxes"], d["labels"], g["boxes"], g["labels"], 0.4).tolist() == [0]
    curve = precision_recall({1: g}, {1: d}, 1, iou_thresh=0.4)[0]
    assert curve.recall.tolist() == [1.0]


def test_duplicate_takes_the_best_box_even_when_taken():
    # devkit rule: d2's best box is g1 (taken by d1), so d2 is a FP although g2 overlaps it > 0.5
    g = gt([[0, 0, 10, 10], [2, 0, 12, 10]], [A, A])
    d = dets([[0, 0, 10, 10, 0.9, A], [1, 0, 11, 10, 0.8, A]])  # d2: IoU 9/11 with both boxes
    curve = precision_recall({1: g}, {1: d}, 1)[0]
    np.testing.assert_allclose(curve.recall, [1 / 2, 1 / 2])
    np.testing.assert_allclose(curve.precision, [1, 1 / 2])


def test_pixel_plus_one_on_voc_integers_equals_plain_iou_on_converted_boxes():
    voc = torch.tensor([[1.0, 1, 10, 10], [5, 3, 20, 12], [48, 7, 60, 9]])  # 1-based inclusive
    xyxy = convert_boxes(voc, "voc", "xyxy")
    devkit = pairwise_iou(voc, voc, pixel_plus_one=True)
    torch.testing.assert_close(pairwise_iou(xyxy, xyxy), devkit)
    # by hand, devkit style: boxes 1 and 2 are 10x10 and 16x10, their intersection 6x8
    assert devkit[0, 1].item() == pytest.approx(48 / (100 + 160 - 48))
    assert not torch.allclose(pairwise_iou(voc, voc), devkit)


def devkit_curve(ground_truth, detections, c):
    """py-faster-rcnn's ``voc_eval`` loop, transcribed: integer boxes, ``+1`` widths."""
    records = {}
    for i, g in ground_truth.items():
        keep = (g["labels"] == c).numpy()
        records[i] = (g["boxes"].numpy()[keep], g["difficult"].numpy()[keep], np.zeros(keep.sum()))
    npos = sum(int((~difficult).sum()) for _, difficult, _ in records.values())
    mine = sorted((d for d in detections if d[3] == c), key=lambda d: -d[1])
    tp, fp = np.zeros(len(mine)), np.zeros(len(mine))
    for k, (i, _, bb, _) in enumerate(mine):
        gt_boxes, difficult, taken = records[i]
        ov = np.zeros(0)
        if len(gt_boxes):
            iw = np.minimum(gt_boxes[:, 2], bb[2]) - np.maximum(gt_boxes[:, 0], bb[0]) + 1
            ih = np.minimum(gt_boxes[:, 3], bb[3]) - np.maximum(gt_boxes[:, 1], bb[1]) + 1
            inter = np.maximum(iw, 0) * np.maximum(ih, 0)
            area = (gt_boxes[:, 2] - gt_boxes[:, 0] + 1) * (gt_boxes[:, 3] - gt_boxes[:, 1] + 1)
            ov = inter / ((bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + area - inter)
        j = int(np.argmax(ov)) if len(ov) else -1
        if j >= 0 and ov[j] > 0.5:
            if not difficult[j]:
                tp[k], fp[k] = (0, 1) if taken[j] else (1, 0)
                taken[j] = 1
        else:
            fp[k] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / npos if npos else None
    return recall, tp / np.maximum(tp + fp, np.finfo(np.float64).eps), npos


def test_matches_the_devkit_loop_on_random_integer_boxes():
    rng = np.random.default_rng(0)
    for _ in range(50):
        ground_truth, predictions, detections = {}, {}, []
        for i in range(int(rng.integers(1, 6))):
            n, m = int(rng.integers(0, 6)), int(rng.integers(0, 8))
            xy, wh = rng.integers(1, 40, (n, 2)), rng.integers(3, 20, (n, 2))
            boxes = np.concatenate([xy, xy + wh], 1).astype(float)
            ground_truth[i] = gt(
                boxes, rng.integers(0, 3, n).tolist(), (rng.random(n) < 0.2).tolist()
            )
            near = boxes[rng.integers(0, n, m)] if n else rng.integers(1, 40, (m, 4))
            d = near + rng.integers(-3, 4, (m, 4))
            d[:, 2:] = np.maximum(d[:, 2:], d[:, :2] + 1)
            rows = np.concatenate([d, rng.random((m, 1)), rng.integers(0, 3, (m, 1))], 1)
            predictions[i] = dets(rows.tolist())
            p = predictions[i]  # float32 scores in both
            detections += [
                (i, s, b, lb)
                for b, s, lb in zip(
                    p["boxes"].numpy(), p["scores"].numpy(), p["labels"].numpy(), strict=True
                )
            ]
        for c, curve in enumerate(
            precision_recall(ground_truth, predictions, 3, pixel_plus_one=True)
        ):
            recall, precision, npos = devkit_curve(ground_truth, detections, c)
            assert curve.npos == npos
            if npos:
                np.testing.assert_allclose(curve.recall, recall)
                np.testing.assert_allclose(curve.precision, precision)


def coco_of(ground_truth, cat_ids):
    """The hand-made ground truth as a COCO object with the given category ids; difficult
    boxes as iscrowd, as VOCDetection writes them."""
    anns = []
    for image_id, g in ground_truth.items():
        xywh = convert_boxes(g["boxes"], "xyxy", "xywh").tolist()
        for b, lb, d in zip(xywh, g["labels"].tolist(), g["difficult"].tolist(), strict=True):
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat_ids[lb],
                         "bbox": b, "area": b[2] * b[3], "iscrowd": int(d)})  # fmt: skip
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "width": 64, "height": 64} for i in ground_truth],
        "annotations": anns,
        "categories": [{"id": c, "name": n} for c, n in zip(cat_ids, NAMES, strict=True)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def test_evaluator_batches_and_coco_results_give_the_hand_numbers():
    cat_ids = [7, 3, 42]  # non-contiguous, unsorted
    coco = coco_of(GROUND_TRUTH, cat_ids)
    ev = VocEvaluator(coco, cat_ids)
    ids = list(GROUND_TRUTH)
    ev.process([{"image_id": i} for i in ids[:2]], [PREDICTIONS[i] for i in ids[:2]])
    ev.process([{"image_id": 3}], [PREDICTIONS[3]])
    got = ev.evaluate()
    assert set(got) == {"voc07", "voc"}
    for metric, ap_a in AP_A.items():
        assert got[metric]["AP-a"] == pytest.approx(100 * ap_a)
        assert got[metric]["mAP"] == pytest.approx(100 * (ap_a + 1 / 2) / 2)
    # the same predictions through COCO results (xywh, the dataset's ids), e.g. a saved JSON
    again = VocEvaluator(coco, cat_ids, metrics=("voc07",))
    again.add_results(ev.results, ids)
    assert again.evaluate() == {"voc07": got["voc07"]}
    both = build_evaluator("detection", type("D", (), {"coco": coco, "cat_ids": cat_ids}), "all")
    both.add_results(ev.results, ids)
    assert set(both.evaluate()) == {"bbox", "voc07", "voc"}


def test_from_coco_results_maps_ids_and_rejects_unknown_ones():
    results = [
        {"image_id": 5, "category_id": 42, "bbox": [1, 2, 3, 4], "score": 0.5},
        {"image_id": 9, "category_id": 7, "bbox": [0, 0, 1, 1], "score": 0.25},
    ]
    preds = from_coco_results(results, [7, 42], [9, 5, 11])
    assert [p["labels"].tolist() for p in preds] == [[0], [1], []]
    assert preds[1]["boxes"].tolist() == [[1, 2, 4, 6]] and preds[0]["scores"].tolist() == [0.25]
    with pytest.raises(DataError, match="category id 42"):
        from_coco_results(results, [7], [9, 5])
    with pytest.raises(DataError, match="image id 9"):
        from_coco_results(results, [7, 42], [5])
    with pytest.raises(DataError, match="not COCO box results"):
        from_coco_results([{"image_id": 5}], [7], [5])
    with pytest.raises(ConfigError, match="unknown metric"):
        build_evaluator("detection", None, "voc12")


def test_voc_xml_difficult_objects_reach_the_evaluator(tmp_path):
    src = ensure_shapes(tmp_path / "cache", "val", num_images=4, image_size=96)["root"]
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    voc.mkdir(parents=True)
    for sub in ("Annotations", "ImageSets"):
        shutil.copytree(src / sub, voc / sub)
    xml = sorted((voc / "Annotations").glob("*.xml"))[0]
    xml.write_text(
        xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1)
    )
    ds = VOCDetection(tmp_path / "VOCdevkit", ["2007/val"], class_names=SHAPES_CLASSES)
    truth = voc_ground_truth(ds.coco, ds.cat_ids, ds.ids)
    assert [int(g["difficult"].sum()) for g in truth.values()] == [1, 0, 0, 0]
    ev = VocEvaluator(ds.coco, ds.cat_ids, metrics=("voc",))
    perfect = [{**g, "scores": torch.ones(len(g["labels"]))} for g in truth.values()]
    ev.process([{"image_id": i} for i in truth], perfect)
    m = ev.evaluate()["voc"]  # the detection of the difficult object is ignored, not a FP
    assert m["mAP"] == pytest.approx(100.0)
    difficult_label = int(truth[ds.ids[0]]["labels"][truth[ds.ids[0]]["difficult"]][0])
    curve = precision_recall(truth, dict(zip(truth, perfect, strict=True)), len(ds.cat_ids))
    assert (
        curve[difficult_label].npos
        == sum(int((g["labels"] == difficult_label).sum()) for g in truth.values()) - 1
    )


def noisy_predictions(ann_file):
    """Every ground-truth box shifted by 2-15 % of its width (IoU 0.74-0.96 > 0.5: VOC AP 100, COCO
    AP not), then a duplicate of each (IoU 2/3) and junk boxes, all scored below every first copy;
    clipped to the image, as a model's are (a box beyond its image is refused)."""
    data = json.loads(ann_file.read_text())
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    rng = np.random.default_rng(0)
    out = []

    def clipped(image_id, x, y, w, h):
        width, height = sizes[image_id]
        return [x, y, min(w, width - x), min(h, height - y)]

    for k, a in enumerate(data["annotations"]):
        x, y, w, h = a["bbox"]
        box = clipped(a["image_id"], x + rng.uniform(0.02, 0.15) * w, y, w, h)
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": box,
                    "score": 0.5 + 0.5 * float(rng.random())})  # fmt: skip
        out.append({"image_id": a["image_id"], "category_id": a["category_id"],
                    "bbox": clipped(a["image_id"], x, y + 0.2 * h, w, h),
                    "score": 0.4 - 0.001 * k})  # fmt: skip
    for k, im in enumerate(data["images"]):
        out.append({"image_id": im["id"], "category_id": 1 + k % 5, "bbox": [0, 0, 5, 5],
                    "score": 0.01})  # fmt: skip
    return out


def test_eval_tool_metric_all_on_a_predictions_json(tmp_path):
    cache = tmp_path / "cache"
    ann = ensure_shapes(cache, "val", num_images=8, image_size=96)["ann_file"]
    preds = noisy_predictions(ann)
    preds_path, out = tmp_path / "preds.json", tmp_path / "m.json"
    preds_path.write_text(json.dumps(preds))
    overrides = [f"data.val.root={cache}", "data.val.num_images=8", "data.val.image_size=96"]
    proc = run_tool(
        "eval.py", "--config", str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml"), "--predictions",
        str(preds_path), "--metric", "all", "--out", str(out), *overrides,
    )  # fmt: skip
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"bbox", "voc07", "voc", "units"}
    # every AP in percent, on COCO's 0-100 scale
    assert metrics.pop("units") == {"bbox": "percent", "voc07": "percent", "voc": "percent"}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
    present = {gt.cats[a["category_id"]]["name"] for a in gt.dataset["annotations"]}
    for metric in ("voc07", "voc"):
        assert metrics[metric]["mAP"] == pytest.approx(100.0)
        for name in ("circle", "square", "triangle", "star", "cross"):
            ap = metrics[metric][f"AP-{name}"]
            assert ap == pytest.approx(100.0) if name in present else math.isnan(ap)
    assert "voc07 mAP 100.00 %, voc mAP 100.00 %" in proc.stdout.splitlines()[-1]
    assert "AP50 100.00 % AP75 " in proc.stdout.splitlines()[-1]
    table = [ln.split() for ln in proc.stdout.splitlines()]
    assert ["bbox/AP50", "100.00", "%"] in table  # each number with its unit
    assert ["class", "voc07", "(%)", "voc", "(%)"] in table and [
        "mAP",
        *["100.00", "%"] * 2,
    ] in table
    # the COCO numbers are pycocotools' COCOeval run directly on the same JSON
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(str(preds_path)), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    for name, value in zip(names, ev.stats, strict=True):
        expected = 100 * value if value >= 0 else math.nan
        assert metrics["bbox"][name] == pytest.approx(expected, nan_ok=True), name
    assert metrics["bbox"]["AP50"] == pytest.approx(100.0) and metrics["bbox"]["AP"] < 90


def test_metric_is_a_config_error_for_segmentation_models(tmp_path):
    tool = load_script("tools/eval.py")
    cfg = str(ROOT / "visionkit" / "configs" / "fcn8s_shapes.yaml")
    with pytest.raises(ConfigError, match="--metric chooses box metrics; 'fcn' is a sem_seg"):
        tool.main(["--config", cfg, "--weights", str(tmp_path / "w.pth"), "--metric", "voc"])
