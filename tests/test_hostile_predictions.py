"""Predictions files that would give a silently wrong number, or a traceback, are refused in one
line naming the file, the record and the field; a model's non-finite detections never match."""

import json
import math
from pathlib import Path

import pytest
import torch
from test_tools_e2e import run_tool, tiny_overrides

from visionkit.config import load_config
from visionkit.data import build_dataset
from visionkit.errors import DataError
from visionkit.evaluation.coco_eval import check_coco_results, coco_box_metrics, to_coco_results

ROOT = Path(__file__).resolve().parents[1]
YOLO = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")

GOOD = {"image_id": 1, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}
CASES = {
    "not a list": ({"a": 1}, "not a COCO results list"),
    "not a dict": ([[1, 2]], "record 0 is a list, not a dict"),
    "no score": ([{k: v for k, v in GOOD.items() if k != "score"}], "record 0 has no 'score'"),
    "string score": ([{**GOOD, "score": "0.5"}], "record 0: score '0.5' is not a finite"),
    "NaN score": ([{**GOOD, "score": math.nan}], "score nan is not a finite number"),
    "NaN box": ([{**GOOD, "bbox": [math.nan] * 4}], "bbox [nan, nan, nan, nan] is not 4 finite"),
    "short box": ([GOOD, {**GOOD, "bbox": [1, 2, 3]}], "record 1: bbox [1, 2, 3] is not 4"),
    "negative size": ([{**GOOD, "bbox": [5, 5, -1, 2]}], "negative width or height"),
    "unknown image": ([{**GOOD, "image_id": 99}], "image_id 99 is not one of the dataset's"),
    "string image id": ([{**GOOD, "image_id": "1"}], "image_id '1' is not one of"),
    "unknown category": ([{**GOOD, "category_id": 7}], "category_id 7 is not one of"),
    "huge image id": ([{**GOOD, "image_id": 2**70}], f"image_id {2**70} is not one of"),
    "1e300 box": ([{**GOOD, "bbox": [1, 2, 1e300, 4]}], "lies beyond its 40x30 image"),
    "box of another image": ([{**GOOD, "bbox": [1, 2, 60, 4]}], "lies beyond its 40x30 image"),
    "box left of the image": ([{**GOOD, "bbox": [-5, 2, 6, 4]}], "lies beyond its 40x30 image"),
    "score above 1": ([{**GOOD, "score": 1.5}], "score 1.5 is outside [0, 1]"),
    "negative score": ([{**GOOD, "score": -0.1}], "score -0.1 is outside [0, 1]"),
}
SIZES = {1: (30, 40), 2: (300, 400)}  # image id -> (height, width)


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_coco_results_refuses_in_one_line(case):
    results, message = CASES[case]
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
        check_coco_results(results, SIZES, [1, 3], "p.json")
    assert str(e.value).startswith("p.json: ") and "\n" not in str(e.value)
    good = [GOOD, {**GOOD, "image_id": 2, "category_id": 3, "bbox": [0, 0, 400, 300.5]},
            {**GOOD, "bbox": [-0.5, 0, 40.4, 30], "score": 1}, {**GOOD, "score": 0}]  # fmt: skip
    check_coco_results(good, SIZES, [1, 3], "p")


def test_a_models_non_finite_detections_are_left_out():
    pred = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [math.nan, 0, 5, 5], [1, 1, 4, 4]]),
        "scores": torch.tensor([0.9, 0.8, math.inf]),
        "labels": torch.tensor([0, 1, 1]),
    }
    (only,) = to_coco_results(7, pred, [3, 5])
    assert only == {"image_id": 7, "category_id": 3, "bbox": [0.0, 0.0, 10.0, 10.0],
                    "score": pytest.approx(0.9)}  # fmt: skip


def shapes_val(tmp_path: Path):
    cfg = load_config(YOLO, tiny_overrides(tmp_path / "cache"))
    return build_dataset(cfg.data.val, cfg.data.augment, None, train=False)


def test_nan_boxes_would_score_100_in_cocoeval_and_visionkit_refuses_them(tmp_path):
    dataset = shapes_val(tmp_path)
    coco = dataset.coco
    nan = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [math.nan] * 4,
         "score": 1.0}
        for a in coco.dataset["annotations"]
    ]  # fmt: skip
    # what pycocotools does (faster-coco-eval, the default, gives 0: tests/test_coco_backends.py)
    assert coco_box_metrics(coco, [dict(r) for r in nan], dataset.ids, "pycocotools")["AP"] == 100
    assert coco_box_metrics(coco, nan, dataset.ids)["AP"] == 0.0
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(nan))
    proc = run_tool("eval.py", "--config", YOLO, "--predictions", str(path),
                    *tiny_overrides(tmp_path / "cache"), check=False)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # refused by the reader (visionkit/io/structured.py: JSON has no NaN), naming the value
    assert proc.stderr.strip() == f"error: {path}: at [0].bbox[0]: NaN is not a JSON number"


@pytest.mark.parametrize("flag", ["--out", "--save-predictions"])
def test_eval_refuses_an_unwritable_output_before_evaluating(flag, tmp_path):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    tiny = tiny_overrides(tmp_path / "cache")
    proc = run_tool("eval.py", "--config", YOLO, "--predictions", str(tmp_path / "none.json"),
                    flag, str(folder), *tiny, check=False)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: {flag} {folder} is a folder; give a file name"
    )
    assert not (tmp_path / "cache").exists()  # refused before the dataset was even generated
