"""faster-coco-eval, the default COCOeval, gives pycocotools' 12 numbers and per-class AP to 1e-6
on a random matrix of boxes and masks; the switch (``eval.coco_backend``, ``--coco-backend``),
the fallback when faster-coco-eval is missing, and benchmarks/coco_eval_speed.py at small size."""

import copy
import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from script_loader import load_script
from test_hostile_predictions import shapes_val
from test_tools_e2e import ROOT, run_tool, tiny_overrides

from visionkit.config import load_config
from visionkit.data.coco import coco_index
from visionkit.errors import ConfigError
from visionkit.evaluation import build_evaluator, coco_box_metrics, coco_mask_metrics
from visionkit.evaluation.coco_backends import COCO_BACKENDS, faster_coco_eval
from visionkit.evaluation.coco_eval import STAT_NAMES

BENCH = "benchmarks/coco_eval_speed.py"
CAT_IDS = [3, 7, 8, 15, 42, 77, 90, 91]  # non-contiguous; 90 and 91 have no ground truth
METRICS = {"bbox": coco_box_metrics, "segm": coco_mask_metrics}
# (seed, iou type): 24 images, 120 objects (8 % crowd), 50 detections per image on average
MATRIX = [(seed, "bbox") for seed in range(4)] + [(seed, "segm") for seed in range(3)]


def case(seed: int, iou_type: str) -> tuple[dict, list[dict]]:
    return load_script(BENCH).random_case(
        seed, 24, 120, 50, CAT_IDS, crowd=0.08, masks=iou_type == "segm"
    )


def both(gt: dict, results: list[dict], iou_type: str = "bbox", image_ids=None) -> list[dict]:
    """pycocotools' numbers, then the default backend's, each on its own copies."""
    score = METRICS[iou_type]
    return [
        score(coco_index(copy.deepcopy(gt)), copy.deepcopy(results), image_ids, backend)
        for backend in ("pycocotools", "faster-coco-eval")
    ]


def assert_equal(reference: dict[str, float], default: dict[str, float]) -> None:
    assert reference.keys() == default.keys()
    for k, v in reference.items():
        if math.isnan(v):
            assert math.isnan(default[k]), k
        else:
            assert default[k] == pytest.approx(v, abs=1e-6, rel=0), k


def test_the_matrix_holds_what_it_claims():
    """Every case: crowd regions, images without objects, classes with detections but no ground
    truth, an image with more than 100 detections of one class, objects in all three area
    ranges, tied scores; mask cases: polygons, compressed and uncompressed RLE."""
    for seed, iou_type in MATRIX:
        gt, results = case(seed, iou_type)
        anns = gt["annotations"]
        assert any(a["iscrowd"] for a in anns)
        assert {im["id"] for im in gt["images"]} - {a["image_id"] for a in anns}
        assert {r["category_id"] for r in results} - {a["category_id"] for a in anns}
        per_image_class: dict[tuple[int, int], int] = {}
        for r in results:
            key = (r["image_id"], r["category_id"])
            per_image_class[key] = per_image_class.get(key, 0) + 1
        assert max(per_image_class.values()) > 100
        areas = np.array([a["area"] for a in anns])
        assert (areas < 32**2).any() and ((areas > 32**2) & (areas < 96**2)).any()
        assert (areas > 96**2).any()
        assert len({r["score"] for r in results}) < len(results)
        if iou_type == "segm":
            forms = {type(a["segmentation"]).__name__ for a in anns}
            rles = [a["segmentation"] for a in anns if isinstance(a["segmentation"], dict)]
            counts = {type(rle["counts"]).__name__ for rle in rles}
            assert forms == {"list", "dict"} and counts == {"str", "list"}


@pytest.mark.parametrize(("seed", "iou_type"), MATRIX)
def test_default_backend_equals_pycocotools(seed, iou_type):
    gt, results = case(seed, iou_type)
    reference, default = both(gt, results, iou_type)
    assert_equal(reference, default)
    assert 1 < reference["AP"] < 99 and 1 < reference["AR100"] < 99  # a case that tells apart
    assert math.isnan(reference["AP-class90"])  # detections only: no AP, in both
    assert len(reference) == len(STAT_NAMES) + len(CAT_IDS)


def renumbered_from_zero(gt: dict) -> dict:
    return {**gt, "annotations": [{**a, "id": a["id"] - 1} for a in gt["annotations"]]}


EDGES = {
    "a subset of the images": lambda gt, res: (gt, res, [1, 2, 3, 5, 8, 13]),
    "a duplicated image id": lambda gt, res: (gt, res, [1, 1, 2, 3]),
    "every score the same": lambda gt, res: (gt, [{**r, "score": 0.5} for r in res], None),
    "detections only outside the images": lambda gt, res: (
        gt, [r for r in res if r["image_id"] > 6], list(range(1, 7))
    ),
    "no ground truth at all": lambda gt, res: ({**gt, "annotations": []}, res, None),
    "a ground truth annotation id 0": lambda gt, res: (renumbered_from_zero(gt), res, None),
}  # fmt: skip


@pytest.mark.parametrize("edge", sorted(EDGES))
def test_default_backend_equals_pycocotools_on_edge_cases(edge):
    gt, results, image_ids = EDGES[edge](*case(0, "bbox"))
    with warnings.catch_warnings():  # faster-coco-eval warns of an annotation id 0 (both count
        warnings.simplefilter("ignore")  # its matches as unmatched: pycocotools' own quirk)
        assert_equal(*both(gt, results, "bbox", image_ids))


def test_non_finite_boxes_are_the_one_disagreement_and_never_reach_either():
    """pycocotools matches a NaN box with any ground truth (AP 100), faster-coco-eval with none
    (AP 0): visionkit never hands either such a box (check_coco_results refuses a predictions
    file's, to_coco_results drops a model's: tests/test_hostile_predictions.py)."""
    gt, _ = case(1, "bbox")
    nan = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [math.nan] * 4,
            "score": 1.0} for a in gt["annotations"]]  # fmt: skip
    reference, default = both(gt, nan)
    assert reference["AP"] == 100.0 and default["AP"] == 0.0


def test_without_faster_coco_eval_pycocotools_scores_with_one_warning(monkeypatch, capsys):
    gt, results = case(2, "bbox")
    reference = coco_box_metrics(coco_index(copy.deepcopy(gt)), copy.deepcopy(results), None,
                                 "pycocotools")  # fmt: skip
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # import raises ImportError
    faster_coco_eval.cache_clear()
    try:
        for _ in range(2):
            fallback = coco_box_metrics(coco_index(copy.deepcopy(gt)), copy.deepcopy(results))
            assert_equal(reference, fallback)
    finally:
        faster_coco_eval.cache_clear()
    assert capsys.readouterr().err == (
        "warning: faster-coco-eval is not installed; COCO evaluation runs pycocotools (slower)\n"
    )


def test_the_backend_is_a_config_key_and_reaches_the_evaluator(tmp_path):
    cfg = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")
    assert load_config(cfg).eval.coco_backend == "faster-coco-eval"
    assert load_config(cfg, ["eval.coco_backend=pycocotools"]).eval.coco_backend == "pycocotools"
    with pytest.raises(ConfigError, match="eval.coco_backend"):
        load_config(cfg, ["eval.coco_backend=cocoapi"])
    gt, _ = case(0, "bbox")
    dataset = type("D", (), {"coco": coco_index(gt), "cat_ids": CAT_IDS})
    for backend in COCO_BACKENDS:
        for metric in ("coco", "all"):
            evaluator = build_evaluator("detection", dataset, metric, coco_backend=backend)
            coco = evaluator.evaluators[0] if metric == "all" else evaluator
            assert coco.backend == backend
    with pytest.raises(ConfigError, match="unknown COCO backend 'cocoapi'"):
        build_evaluator("detection", dataset, coco_backend="cocoapi")


def test_eval_tool_gives_the_same_numbers_with_either_backend(tmp_path):
    """tools/eval.py --predictions on the tiny shapes data, --coco-backend each way."""
    cfg, tiny = (
        str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml"),
        tiny_overrides(tmp_path / "cache"),
    )
    gt = shapes_val(tmp_path).coco.dataset
    rng = np.random.default_rng(0)
    sizes = {im["id"]: np.array([im["width"], im["height"]]) for im in gt["images"]}

    def jittered(a):  # within the image, as a model's boxes are (one beyond it is refused)
        xy, wh = np.split((np.array(a["bbox"]) + rng.normal(0, 3, 4)).clip(0), 2)
        xy = np.minimum(xy, sizes[a["image_id"]])
        return np.concatenate([xy, np.minimum(wh, sizes[a["image_id"]] - xy)]).round(2).tolist()

    preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": jittered(a),
              "score": float(rng.uniform())} for a in gt["annotations"]]  # fmt: skip
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(preds))
    out = {}
    for backend in COCO_BACKENDS:
        out[backend] = tmp_path / f"{backend}.json"
        run_tool("eval.py", "--config", cfg, "--predictions", str(path), "--coco-backend",
                 backend, "--out", str(out[backend]), *tiny)  # fmt: skip
    reference, default = (json.loads(p.read_text())["bbox"] for p in reversed(out.values()))
    assert_equal(reference, default)
    assert 1 < reference["AP"] < 99


def test_benchmark_smoke_run():
    proc = subprocess.run(
        [sys.executable, str(ROOT / BENCH), "--scale", "0.004"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "command: python benchmarks/coco_eval_speed.py --scale 0.004"
    assert lines[1].startswith("case: 20 images, 144 objects, ")
    table = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln.startswith("|")]
    assert table[0] == ["backend", "seconds", "speed-up over pycocotools"]
    assert [r[0] for r in table[2:]] == ["pycocotools", "faster-coco-eval"]
    assert table[2][2] == "1.00x" and float(table[3][1]) > 0
    assert lines[-1] == "the 12 numbers and per-class AP equal to 1e-6: yes"
