"""Evaluation plots, training curves and tools/plot_logs.py, end to end on tiny generated data."""

import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from script_loader import load_script
from test_fcn_e2e import tiny_fcn_overrides
from test_tools_e2e import ROOT, run_tool, tiny_overrides
from test_voc_eval import noisy_predictions

from visionkit.data import ensure_shapes
from visionkit.data.coco import CocoDetection, coco_index
from visionkit.engine.training_curves import (
    MAX_PANELS,
    choose_panels,
    curves,
    plot_training_curves,
    read_metrics,
)
from visionkit.evaluation import build_evaluator, plots
from visionkit.evaluation.confusion import coco_confusion, image_confusion
from visionkit.utils.cli import run_cli

YOLO = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")
FCN = str(ROOT / "visionkit" / "configs" / "fcn8s_shapes.yaml")
SHAPES = ["circle", "square", "triangle", "star", "cross"]


def assert_picture(path: Path, width: int, height: int) -> None:
    """A PNG of that pixel size that is not blank: many colours, a fair share not white."""
    assert path.is_file(), path
    image = cv2.imread(str(path))
    assert image.shape[:2] == (height, width)
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert len(colours) > 50
    assert (image < 250).any(-1).mean() > 0.03


def boxes(*rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def test_image_confusion_hand_checked():
    # objects: class 0 at A, class 1 at B, class 2 at C; detections: class 0 on A (IoU 0.9, the
    # match), class 2 on B (a mix-up), class 0 on A again (IoU 0.8: A is taken, a false alarm),
    # class 1 far away (a false alarm); nothing on C (missed)
    a, b, c = (0, 0, 10, 10), (20, 20, 30, 30), (40, 0, 50, 10)
    m = image_confusion(
        boxes(a, b, c),
        np.array([0, 1, 2]),
        boxes((0, 0, 10, 9), (21, 20, 30, 30), (2, 0, 10, 10), (60, 60, 70, 70)),
        np.array([0, 2, 0, 1]),
        num_classes=3,
    )
    expected = np.array([
        [1, 0, 0, 0],  # class 0: found as 0
        [0, 0, 1, 0],  # class 1: found as 2
        [0, 0, 0, 1],  # class 2: missed
        [1, 1, 0, 0],  # false alarms: the second class-0 box on A, the far class-1 box
    ])  # fmt: skip
    np.testing.assert_array_equal(m, expected)


def test_coco_confusion_crowd_score_threshold_and_unknown_categories():
    data = {
        "images": [{"id": 4, "width": 100, "height": 100}, {"id": 9, "width": 100, "height": 100}],
        "categories": [{"id": 7, "name": "a"}, {"id": 3, "name": "b"}],  # labels: 3 -> 0, 7 -> 1
        "annotations": [
            {"id": 1, "image_id": 4, "category_id": 7, "bbox": [0, 0, 10, 10], "iscrowd": 0,
             "area": 100},
            {"id": 2, "image_id": 4, "category_id": 3, "bbox": [50, 50, 40, 40], "iscrowd": 1,
             "area": 1600},
            {"id": 3, "image_id": 9, "category_id": 3, "bbox": [5, 5, 20, 20], "iscrowd": 0,
             "area": 400},
        ],
    }  # fmt: skip
    results = [
        {"image_id": 4, "category_id": 7, "bbox": [0, 0, 10, 10], "score": 0.9},  # a as a
        {"image_id": 4, "category_id": 7, "bbox": [55, 55, 10, 10], "score": 0.9},  # in the crowd
        {"image_id": 4, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.1},  # below 0.25
        {"image_id": 9, "category_id": 99, "bbox": [5, 5, 20, 20], "score": 0.9},  # unknown id
        {"image_id": 9, "category_id": 7, "bbox": [60, 0, 10, 10], "score": 0.3},  # false alarm
    ]
    m = coco_confusion(coco_index(data), results, [4, 9])
    np.testing.assert_array_equal(m, [[0, 0, 1], [0, 1, 0], [0, 1, 0]])


def test_pr_curves_come_from_cocoeval_precision(tmp_path):
    ann = ensure_shapes(tmp_path / "cache", "val", num_images=8, image_size=96)["ann_file"]
    dataset = CocoDetection(ann, ann.parent.parent / "JPEGImages")
    evaluator = build_evaluator("detection", dataset, "coco")
    evaluator.add_results(noisy_predictions(ann), dataset.ids)
    metrics = evaluator.evaluate()["bbox"]
    precision = evaluator.accumulated["precision"]
    assert precision.shape == (10, 101, 5, 4, 3)
    assert evaluator.accumulated["cat_ids"] == dataset.cat_ids
    for k, name in enumerate(SHAPES):  # the curves' areas are COCOeval's per-class AP
        p = precision[:, :, k, 0, -1]
        assert 100 * p.mean() == pytest.approx(metrics[f"AP-{name}"])


def test_confusion_plot_title_states_its_thresholds(tmp_path, monkeypatch):
    ann = ensure_shapes(tmp_path / "cache", "val", num_images=8, image_size=96)["ann_file"]
    dataset = CocoDetection(ann, ann.parent.parent / "JPEGImages")
    evaluator = build_evaluator("detection", dataset, "voc07")
    evaluator.add_results(noisy_predictions(ann), dataset.ids)
    evaluator.evaluate()
    titles = []
    monkeypatch.setattr(plots, "plot_confusion_matrix", lambda m, n, p, title: titles.append(title))
    plots.write_evaluation_plots(evaluator, tmp_path / "a")
    plots.write_evaluation_plots(evaluator, tmp_path / "b", 0.5, 0.75)
    assert titles == [
        "detection confusion matrix (IoU >= 0.5, score >= 0.25)",
        "detection confusion matrix (IoU >= 0.75, score >= 0.5)",
    ]


def test_eval_tool_writes_detection_plots(tmp_path):
    cache = tmp_path / "cache"
    ann = ensure_shapes(cache, "val", num_images=8, image_size=96)["ann_file"]
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps(noisy_predictions(ann)))
    plots = tmp_path / "plots"
    proc = run_tool(
        "eval.py", "--config", YOLO, "--predictions", str(preds), "--metric", "all",
        "--plots", str(plots), f"data.val.root={cache}", "data.val.num_images=8",
        "data.val.image_size=96",
    )  # fmt: skip
    assert f"plots: {plots / 'pr_curves.png'}" in proc.stdout
    assert_picture(plots / "pr_curves.png", 1200, 550)
    assert_picture(plots / "confusion_matrix.png", 690, 570)
    rows = list(csv.reader((plots / "confusion_matrix.csv").open()))
    assert rows[0][1:] == [*SHAPES, "background"]
    table = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    # every object found by its shifted copy; its second copy (score 0.4 >= 0.25) a false alarm
    gt = json.loads(ann.read_text())["annotations"]
    per_class = np.bincount([a["category_id"] - 1 for a in gt], minlength=5)
    np.testing.assert_array_equal(np.diag(table)[:5], per_class)
    np.testing.assert_array_equal(table[5, :5], per_class)
    assert table.sum() == 2 * len(gt)
    # --conf-thresh above the second copies' scores (0.4 - 0.001 k): no false alarm left
    strict = tmp_path / "strict"
    proc = run_tool(
        "eval.py", "--config", YOLO, "--predictions", str(preds), "--plots", str(strict),
        "--conf-thresh", "0.45", "--conf-iou", "0.6", f"data.val.root={cache}",
        "data.val.num_images=8", "data.val.image_size=96",
    )  # fmt: skip
    rows = list(csv.reader((strict / "confusion_matrix.csv").open()))
    table = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert table[5].sum() == 0 and table.sum() == len(gt)
    # with --plots only; out of its range: the config key's one-line error
    proc = run_tool("eval.py", "--config", YOLO, "--predictions", str(preds), "--conf-thresh",
                    "0.5", check=False)  # fmt: skip
    assert proc.returncode == 2 and "give --plots too" in proc.stderr
    proc = run_tool("eval.py", "--config", YOLO, "--predictions", str(preds), "--plots",
                    str(tmp_path / "p3"), "--conf-iou", "0", check=False)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "eval.confusion_iou_thresh" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_training_curves_against_epochs():
    records = [
        {"train/loss": 2.0, "lr": 0.1, "iter": 0},
        {"train/loss": 1.0, "lr": 0.05, "iter": 4},
        {"bbox/AP": 10.0, "bbox/AP-circle": 5.0, "bbox/APs": float("nan"), "epoch": 1, "iter": 8},
    ]
    c, xlabel = curves(records)
    assert xlabel == "epoch"
    assert c == {"train/loss": [(0.0, 2.0), (0.5, 1.0)], "lr": [(0.0, 0.1), (0.5, 0.05)],
                 "bbox/AP": [(1.0, 10.0)]}  # fmt: skip
    assert curves(records[:2])[1] == "iteration"


@pytest.mark.slow
def test_training_writes_run_plots_and_plot_logs_overlays_runs(tmp_path):
    yolo, fcn = tmp_path / "yolo", tmp_path / "fcn"
    proc = run_tool("train.py", "--config", YOLO, "--output-dir", str(yolo), "--no-progress",
                    *tiny_overrides(tmp_path / "cache"))  # fmt: skip
    assert f"plots: {yolo / 'plots'}" in proc.stdout + proc.stderr
    assert_picture(yolo / "plots" / "pr_curves.png", 1200, 550)
    assert_picture(yolo / "plots" / "confusion_matrix.png", 690, 570)
    assert (yolo / "plots" / "confusion_matrix.csv").is_file()
    keys = curves(read_metrics(yolo))[0]
    drawn = choose_panels(keys, also=["bbox/AP50"])[0]
    # the total loss, its terms, lr, AP and AP50; the other COCO numbers only in the CSV
    assert drawn[0] == "train/loss" and drawn[-3:] == ["lr", "bbox/AP", "bbox/AP50"]
    assert "bbox/AP75" in keys and "bbox/AP75" not in drawn
    assert_picture(yolo / "plots" / "training_curves.png", 1600, 300 * -(-len(drawn) // 4))
    with (yolo / "plots" / "training_curves.csv").open() as f:  # every point, beside the chart
        assert len(list(csv.reader(f))) == 1 + sum(map(len, curves(read_metrics(yolo))[0].values()))

    overrides = tiny_fcn_overrides(tmp_path / "cache")
    run_tool("train.py", "--config", FCN, "--output-dir", str(fcn), "--no-progress", *overrides)
    assert_picture(fcn / "plots" / "pixel_confusion.png", 690, 570)
    assert (fcn / "plots" / "training_curves.png").is_file()
    plots = tmp_path / "eval_plots"
    proc = run_tool("eval.py", "--config", FCN, "--weights", str(fcn / "last.pth"), "--plots",
                    str(plots), "--no-progress", *overrides)  # fmt: skip
    assert_picture(plots / "pixel_confusion.png", 690, 570)

    chart = tmp_path / "both.png"
    run_tool("plot_logs.py", str(yolo), str(fcn), "--output", str(chart))
    both = curves(read_metrics(yolo))[0].keys() | curves(read_metrics(fcn))[0].keys()
    assert_picture(chart, 1600, 300 * -(-len(choose_panels(both)[0]) // 4))


def test_plot_logs_errors_are_one_line(tmp_path):
    proc = run_tool("plot_logs.py", str(tmp_path / "nowhere"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nowhere'} does not exist: give a run folder or its metrics.jsonl"
    ]
    (tmp_path / "run").mkdir()
    proc = run_tool("plot_logs.py", str(tmp_path / "run"), check=False)
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot read {tmp_path / 'run' / 'metrics.jsonl'}: No such file or directory"
    ]
    assert "examples:" in run_tool("plot_logs.py", "--help").stdout


def test_panels_are_the_losses_lr_and_main_metrics_only():
    terms = [f"train/loss_{i:02d}" for i in range(30)]
    others = [f"bbox/AR{i}" for i in range(30)] + ["bbox/AP75", "sem_seg/fwIoU", "voc07/AP-cat"]
    main = ["bbox/AP", "bbox/AP50", "sem_seg/mIoU", "voc07/mAP", "voc/mAP"]
    drawn, left_out = choose_panels([*others, *terms, "lr", *main, "train/loss"])
    # drawing order: the total loss, eight of its terms, lr, the main metrics by name
    assert drawn == ["train/loss", *terms[:8], "lr", *sorted(main)]
    # the rest, losses first, only in the CSV
    assert left_out == [*terms[8:], *sorted(others)]
    # a metric asked for (train.best_metric) is drawn beside the main ones
    assert choose_panels(["lr", "bbox/AP", "bbox/AP75", "bbox/APs"], also=["bbox/AP75"]) == (
        ["lr", "bbox/AP", "bbox/AP75"], ["bbox/APs"],
    )  # fmt: skip
    # a log of other names only: the first by name, bounded
    names = [f"x/m{i:02d}" for i in range(40)]
    assert choose_panels(names) == (names[:MAX_PANELS], names[MAX_PANELS:])


def test_a_detection_run_draws_losses_lr_ap_and_ap50_with_markers(tmp_path):
    coco = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    records = []
    for epoch in (1, 2, 3):
        for i in range(4):
            it = (epoch - 1) * 4 + i
            records.append({"iter": it, "train/loss": 3.0 - it / 10, "train/loss_box": 1.0,
                            "train/loss_cls": 2.0 - it / 10, "lr": 0.01})  # fmt: skip
        records.append({"iter": epoch * 4, "epoch": epoch,
                        **{f"bbox/{k}": 10.0 * epoch for k in coco}})  # fmt: skip
    chart = plot_training_curves({"run": records}, tmp_path / "c.png")
    assert chart.drawn == ["train/loss", "train/loss_box", "train/loss_cls", "lr", "bbox/AP",
                           "bbox/AP50"]  # fmt: skip
    assert chart.left_out == sorted(f"bbox/{k}" for k in coco[2:])
    assert_picture(chart.png, 1600, 600)
    with chart.csv.open() as f:  # every point of every quantity, drawn or not
        assert len(list(csv.reader(f))) == 1 + 4 * 12 + 12 * 3


def test_a_record_of_200000_keys_draws_bounded_panels_in_seconds(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    records = [
        {"iter": 5, "train/loss": 2.0, "train/loss_box": 1.5, "lr": 0.01},
        {"iter": 10, "epoch": 1, "bbox/AP50": 40.0, **{f"bbox/m{i}": i / 7 for i in range(200_000)}},
    ]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    start = time.perf_counter()
    chart = plot_training_curves({"run": read_metrics(run)}, tmp_path / "curves.png")
    assert time.perf_counter() - start < 20  # 300 keys took 22 s before the bound
    assert chart.drawn == ["train/loss", "train/loss_box", "lr", "bbox/AP50"]
    assert len(chart.left_out) == 200_000
    image = cv2.imread(str(chart.png))  # (assert_picture's colour count takes seconds here)
    assert image.shape == (300, 1600, 3) and (image < 250).any(-1).mean() > 0.03
    with chart.csv.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["run", "quantity", "x", "x_unit", "value"]
    assert len(rows) == 1 + 4 + 200_000  # every point of every quantity, drawn or not
    assert {r[1] for r in rows[1:]} == set(chart.drawn) | set(chart.left_out)
    assert ["run", "bbox/m7", "1.0", "epoch", "1.0"] in rows
    assert ["run", "train/loss", "0.5", "epoch", "2.0"] in rows
    line = chart.line()
    assert "\n" not in line and "200000 more quantities not drawn (" in line
    assert str(chart.csv) in line and len(line) < 400

    # tools/plot_logs.py: the same, its one line on stdout
    records[1] = {"iter": 10, "epoch": 1, **{f"bbox/m{i}": 1.0 for i in range(1000)}}
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    load_script("tools/plot_logs.py").main([str(run), "--output", str(tmp_path / "tool.png")])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"chart: {tmp_path / 'tool.png'} (3 panels); ")
    assert (tmp_path / "tool.csv").is_file()


def test_a_few_quantities_draw_every_panel_and_leave_nothing_out(tmp_path):
    records = [
        {"iter": 0, "train/loss": 2.0, "lr": 0.1},
        {"iter": 4, "train/loss": 1.0, "lr": 0.05},
    ]
    chart = plot_training_curves({"a": records}, tmp_path / "c.png")
    assert chart.drawn == ["train/loss", "lr"] and chart.left_out == []
    assert (
        chart.line() == f"chart: {tmp_path / 'c.png'} (2 panels); every point: {tmp_path / 'c.csv'}"
    )
    assert_picture(chart.png, 800, 300)


def test_plot_logs_checks_its_csv_path_before_drawing(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"iter": 1, "train/loss": 1.0}\n')
    (tmp_path / "c.csv").mkdir()
    with pytest.raises(SystemExit) as e:
        run_cli(load_script("tools/plot_logs.py").main,
                [str(tmp_path / "run"), "--output", str(tmp_path / "c.png")])  # fmt: skip
    assert e.value.code == 2 and not (tmp_path / "c.png").exists()
    assert capsys.readouterr().err.splitlines() == [
        f"error: --output's CSV {tmp_path / 'c.csv'} is a folder; give a file name"
    ]
