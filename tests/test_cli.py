"""The ``visionkit`` command: jobs, help, packaged configs found by name, positional arguments."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from visionkit.cli.configs import MEASURED
from visionkit.cli.main import JOBS, dispatch
from visionkit.config import load_config
from visionkit.config.inputs import config_inputs
from visionkit.config.packaged import CONFIG_DIR, find_config, packaged_configs
from visionkit.errors import ConfigError
from visionkit.utils.cli import split_overrides, take_positionals

ROOT = Path(__file__).resolve().parents[1]


def test_every_job_answers_help_with_examples(capsys):
    for job in JOBS:
        with pytest.raises(SystemExit) as e:
            dispatch([job, "--help"])
        assert e.value.code == 0, job
        out = capsys.readouterr().out
        assert f"usage: visionkit {job}" in out and f"visionkit {job}" in out.split("usage")[1], job


def test_top_level_help_lists_the_jobs_and_unknown_jobs_get_a_hint(capsys):
    assert dispatch(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(re.search(rf"^  {re.escape(job)} ", out, re.M) for job in JOBS)
    assert dispatch([]) == 2  # no job: the usage, and a usage error
    assert dispatch(["trian"]) == 2
    assert "did you mean train?" in capsys.readouterr().err


def test_python_dash_m_runs_the_command():
    proc = subprocess.run([sys.executable, "-m", "visionkit", "--version"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.startswith("visionkit ")


def test_packaged_configs_are_found_by_name_and_a_path_still_works(tmp_path, monkeypatch):
    names = packaged_configs()
    assert {"yolo_v1_shapes", "faster_rcnn_shapes", "fcn8s_shapes"} <= set(names)
    assert find_config("yolo_v1_shapes") == CONFIG_DIR / "yolo_v1_shapes.yaml"
    by_name = load_config("yolo_v1_shapes", ["train.epochs=2"])
    by_path = load_config(CONFIG_DIR / "yolo_v1_shapes.yaml", ["train.epochs=2"])
    assert by_name == by_path
    # a file of the user's own in the current folder wins over a packaged name
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yolo_v1_shapes").write_text("train:\n  epochs: 7\n")
    assert load_config("yolo_v1_shapes").train.epochs == 7
    # a base: by a packaged name, from anywhere
    (tmp_path / "mine.yaml").write_text("base: faster_rcnn_shapes.yaml\ntrain:\n  epochs: 3\n")
    mine = load_config("mine.yaml")
    assert mine.model.name == "faster_rcnn" and mine.train.epochs == 3
    assert config_inputs("mine.yaml")["--config's base"] == CONFIG_DIR / "faster_rcnn_shapes.yaml"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("yolo_v1_shapez", "did you mean yolo_v1_shapes"),
        ("nothing_like_it", "no packaged config of that name"),
        ("missing.yaml", "config file not found: missing.yaml"),
        ("dir/missing", "config file not found"),
    ],
)
def test_unknown_configs_are_one_line(spec, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message) as e:
        load_config(spec)
    assert "\n" not in str(e.value)


def test_positional_words_and_overrides():
    assert split_overrides(["runs/a", "train.epochs=3", "b.onnx", "model.x_y=[1,2]"]) == (
        ["runs/a", "b.onnx"],
        ["train.epochs=3", "model.x_y=[1,2]"],
    )
    found, over = take_positionals(["w", "o.onnx", "a.b=1"], {"weights": None, "output": None}, "x")
    assert found == {"weights": "w", "output": "o.onnx"} and over == ["a.b=1"]
    found, _ = take_positionals(["o.onnx"], {"weights": "given", "output": None}, "x")
    assert found == {"weights": "given", "output": "o.onnx"}  # a flag fills its slot first
    with pytest.raises(ConfigError, match="unexpected argument"):
        take_positionals(["a", "b"], {"weights": None}, "x")


def test_jobs_take_positional_config_and_weights():
    from visionkit.cli import eval as eval_job
    from visionkit.cli import export, predict, train

    args = train.parse_args(["yolo_v1_shapes", "--no-progress", "train.epochs=1"])
    assert args.config == "yolo_v1_shapes" and args.overrides == ["train.epochs=1"]
    args = eval_job.parse_args(["runs/a", "--metric", "all", "eval.batch_size=2"])
    assert (
        args.weights == "runs/a" and args.config is None and args.overrides == ["eval.batch_size=2"]
    )
    args = predict.parse_args(["runs/a", "--source", "photos/"])
    assert args.weights == "runs/a" and args.output == "runs/predict"
    args = export.parse_args(["runs/a", "m.onnx", "model.yolo.score_thresh=0.1"])
    assert (args.weights, args.output) == ("runs/a", "m.onnx")
    for parse, argv in [(eval_job.parse_args, ["--predictions", "p.json"]),
                        (export.parse_args, ["runs/a"]), (train.parse_args, [])]:  # fmt: skip
        with pytest.raises(SystemExit) as e:
            parse(argv)
        assert e.value.code == 2


def test_configs_lists_every_config_with_its_model_and_the_measured_figures(capsys):
    assert dispatch(["configs"]) == 0
    out = capsys.readouterr().out
    for name in packaged_configs():
        assert re.search(rf"^{name} ", out, re.M), name
    readme = (ROOT / "README.md").read_text()
    for name, text in MEASURED.items():
        assert text in out
        ap50 = re.search(r"AP50 ([\d.]+) %|mean IU ([\d.]+) %", text)
        figure = ap50.group(1) or ap50.group(2)
        row = next(ln for ln in readme.splitlines() if ln.startswith(f"| `{name}`"))
        assert f"| {figure} |" in row, (name, figure, row)  # the README's table says the same
    assert dispatch(["configs", "--show", "yolo_v1_shapes"]) == 0
    assert "model:" in capsys.readouterr().out


def test_train_svms_takes_the_checkpoints_config(tmp_path):
    """Without a config, train-svms builds the model the checkpoint's config names: a YOLOv1
    checkpoint is refused as not an rcnn model, naming the file, before any work."""
    from visionkit.checkpoints import save_checkpoint
    from visionkit.cli import train_svms
    from visionkit.config import config_to_dict

    path = tmp_path / "yolo.pth"
    save_checkpoint({"config": config_to_dict(load_config("yolo_v1_shapes")), "model": {}}, path)
    with pytest.raises(ConfigError, match=f"SVMs belong to rcnn models; {path} builds 'yolo_v1'"):
        train_svms.main(["--weights", str(path)])
    bare = tmp_path / "bare.pth"
    save_checkpoint({"model": {}}, bare)
    with pytest.raises(ConfigError, match="holds no config"):
        train_svms.main(["--weights", str(bare)])
