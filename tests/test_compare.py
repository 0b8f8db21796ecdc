"""tools/compare.py on two fake run folders: best metric per run, the table, the chart."""

import json
import math
from pathlib import Path

import cv2
import pytest
from script_loader import load_script

from visionkit.analysis.compare import best_value, summarize_runs
from visionkit.config import load_config, save_config
from visionkit.errors import ConfigError
from visionkit.evaluation.direction import best_index, improves, metric_direction, worst_value
from visionkit.utils.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml"
TINY = [
    "model.backbone.name=lenet",
    "model.backbone.out_features=[]",
    "model.input_size=[64,64]",
    "model.yolo.grid_size=4",
    "model.yolo.extra_convs=1",
]


def fake_run(folder: Path, head_channels: int, ap50: list[float]) -> Path:
    """A run folder as the trainer leaves it: config.yaml and metrics.jsonl (train records
    every iteration, an evaluation per epoch)."""
    cfg = load_config(CONFIG, [*TINY, f"model.yolo.head_channels={head_channels}"])
    save_config(cfg, folder / "config.yaml")
    records = []
    for epoch, value in enumerate(ap50, 1):
        records.append({"train/loss": 3.0 / epoch, "lr": 0.001, "iter": epoch * 10 - 1})
        records.append(
            {"bbox/AP": value / 2, "bbox/AP50": value, "epoch": epoch, "iter": epoch * 10}
        )
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    return [
        fake_run(tmp_path / "small", 8, [10.5, 42.25, 30.0]),
        fake_run(tmp_path / "large", 64, [55.0, math.nan, 51.0]),
    ]


def test_table_and_chart_of_two_runs(runs, tmp_path, capsys):
    chart = tmp_path / "out" / "chart.png"
    load_script("tools/compare.py").main([*map(str, runs), "--output", str(chart)])
    lines = capsys.readouterr().out.splitlines()
    assert "best bbox/AP50 (%)" in lines[0]  # the unit: COCO's 0-100 scale
    small = next(ln.split() for ln in lines if ln.startswith("small "))
    large = next(ln.split() for ln in lines if ln.startswith("large "))
    assert small[:5] == ["small", "yolo_v1", "lenet", "42.25", "2"]
    assert large[:5] == ["large", "yolo_v1", "lenet", "55.00", "1"]
    assert small[5] == large[5] == "64x64"
    image = cv2.imread(str(chart))
    assert image is not None and image.shape == (600, 840, 3)  # 7 x 5 in at 120 dpi
    summaries = summarize_runs(runs)
    assert 0 < summaries[0].params < summaries[1].params
    assert 0 < summaries[0].macs < summaries[1].macs


def test_metric_choice_and_missing_metric(runs, capsys):
    assert best_value(runs[1] / "metrics.jsonl", "bbox/AP") == (27.5, 1)
    assert [s.best for s in summarize_runs(runs, "bbox/AP")] == [21.125, 27.5]
    with pytest.raises(SystemExit) as e:
        run_cli(load_script("tools/compare.py").main, [*map(str, runs), "--metric", "sem_seg/mIoU"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1  # a data error: exit 2
    assert "no 'sem_seg/mIoU' value" in err[0] and "bbox/AP50" in err[0]


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit):
        load_script("tools/compare.py").main(["--help"])
    assert "visionkit compare runs/" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("metric", "direction"),
    [("train/loss", "lower"), ("train/loss_cls", "lower"), ("train/rpn_loss", "lower"),
     ("val/error_rate", "lower"), ("speed/ms_per_image", "lower"), ("bbox/AP", "higher"),
     ("bbox/AP50", "higher"), ("bbox/AR100", "higher"), ("bbox/AP-circle", "higher"),
     ("sem_seg/mIoU", "higher"), ("sem_seg/bIoU@3", "higher"), ("voc07/mAP", "higher"),
     ("sem_seg/pACC", "higher")],
)  # fmt: skip
def test_metric_direction_from_the_name(metric, direction):
    assert metric_direction(metric) == direction
    worst = worst_value(metric)
    assert worst == (math.inf if direction == "lower" else -math.inf)
    assert improves(metric, 5.0, worst) and not improves(metric, math.nan, worst)
    assert improves(metric, 1.0, 2.0) == (direction == "lower")
    assert best_index(metric, [2.0, 1.0, 3.0, 1.0]) == (1 if direction == "lower" else 2)


@pytest.mark.parametrize("metric", ["lr", "epoch", "iter"])
def test_settings_and_counters_have_no_best(metric):
    with pytest.raises(ConfigError, match=rf"^{metric} is a setting or a counter"):
        metric_direction(metric)


def test_compare_picks_the_lowest_loss(runs, capsys):
    # train/loss is 3.0 / epoch: 3.0, 1.5, 1.0 in each run; train records carry no epoch
    assert best_value(runs[0] / "metrics.jsonl", "train/loss") == (1.0, None)
    assert [s.best for s in summarize_runs(runs, "train/loss")] == [1.0, 1.0]
    path = runs[1] / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[1]["train/loss"] = 0.25  # an evaluation record (epoch 1) with a lower loss
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert best_value(path, "train/loss") == (0.25, 1)
    assert best_value(path, "bbox/AP50") == (55.0, 1)  # AP: still the highest
    load_script("tools/compare.py").main(
        [*map(str, runs), "--metric", "train/loss", "--output", str(runs[0].parent / "c.png")]
    )
    lines = capsys.readouterr().out.splitlines()
    assert "best train/loss" in lines[0]
    assert next(ln.split() for ln in lines if ln.startswith("large "))[3:5] == ["0.25", "1"]
    with pytest.raises(SystemExit) as e:
        run_cli(load_script("tools/compare.py").main, [*map(str, runs), "--metric", "lr"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err == [
        "error: lr is a setting or a counter, not a measure of quality: nothing is best by it "
        "(give a loss or an evaluation metric)"
    ]
