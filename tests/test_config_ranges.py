"""Config values outside their range are one line naming key and file, before any work."""

from pathlib import Path

import pytest
from test_tools_e2e import run_tool

from visionkit.config import load_config
from visionkit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
YOLO = str(ROOT / "configs" / "yolo_v1_shapes.yaml")

CASES = [
    ("train.lr=-1", "'train.lr' must be above 0, got -1.0"),
    ("train.lr=.nan", "'train.lr' must be a finite number"),
    ("train.epochs=0", "'train.epochs' must be at least 1, got 0"),
    ("data.batch_size=0", "'data.batch_size' must be at least 1, got 0"),
    ("data.num_workers=-1", "'data.num_workers' must be at least 0, got -1"),
    ("model.input_size=[0,0]", "'model.input_size' must be [] or [height, width]"),
    ("model.input_size=[192]", "'model.input_size' must be [] or [height, width]"),
    ("model.yolo.grid_size=0", "'model.yolo.grid_size' must be at least 1, got 0"),
    ("model.yolo.boxes_per_cell=0", "'model.yolo.boxes_per_cell' must be at least 1"),
    ("train.device=tpu", "'train.device' must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("eval.batch_size=0", "'eval.batch_size' must be at least 1"),
]


@pytest.mark.parametrize(("override", "message"), CASES)
def test_out_of_range_values_name_key_and_source(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(YOLO, [override])
    assert str(e.value) == f"command line: {message}" or str(e.value).startswith(
        f"command line: {message}"
    )


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"base: {YOLO}\ntrain:\n  lr: 0\n")
    with pytest.raises(ConfigError, match=rf"^{path}: 'train.lr' must be above 0, got 0.0$"):
        load_config(path)


def test_yaml_exponent_without_a_dot_is_a_float():
    assert load_config(YOLO, ["train.lr=1e-3"]).train.lr == 0.001


@pytest.mark.slow
def test_train_refuses_a_bad_value_in_one_line(tmp_path):
    proc = run_tool("train.py", "--config", YOLO, "--output-dir", str(tmp_path / "r"),
                    "data.batch_size=0", check=False)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "error: command line: 'data.batch_size' must be at least 1, got 0"
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("metric", "task", "ok"),
    [("bbox/AP50", "detection", True), ("bbox/AP-circle", "detection", True),
     ("sem_seg/mIoU", "sem_seg", True), ("sem_seg/bIoU@3", "sem_seg", True),
     ("bbox/AP5O", "detection", False), ("sem_seg/mIoU", "detection", False),
     ("bbox/AP50", "sem_seg", False), ("mIoU", "sem_seg", False)],
)  # fmt: skip
def test_best_metric_must_be_one_the_evaluation_gives(metric, task, ok):
    from visionkit.evaluation.build import check_best_metric

    if ok:
        check_best_metric(metric, task)
    else:
        with pytest.raises(ConfigError, match="is not a number the"):
            check_best_metric(metric, task)
