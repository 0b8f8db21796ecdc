"""A built wheel works alone: installed into a fresh virtual environment (no clone, no editable
install), the ``visionkit`` command trains a packaged config by name from an empty folder, then
evaluates, predicts on a folder and exports the run.

The venv sees the system's site-packages for torch and the other dependencies (downloading them
again would take minutes); the test checks that ``visionkit`` itself is imported from the
wheel's copy inside the venv, not from the repository.
"""

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from test_tools_e2e import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]

# test_tools_e2e's tiny model and dataset, appended to the documented command (otherwise
# unchanged); the shapes cache comes from $VISIONKIT_CACHE, as the README says, not a root
TINY = [
    o
    for o in tiny_overrides(Path("unused"), 1)
    if not o.startswith(("data.train.root", "data.val.root"))
]


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_wheel_installs_and_runs_from_an_empty_folder(tmp_path):
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-w", str(wheels)]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run([*build, "--no-build-isolation", "-q"], tmp_path, env)
    (wheel,) = wheels.glob("visionkit-*.whl")

    venv.create(tmp_path / "venv", system_site_packages=True, with_pip=True)
    bin_dir = tmp_path / "venv" / ("Scripts" if os.name == "nt" else "bin")
    python = str(bin_dir / "python")
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               tmp_path, env).stdout.strip()  # fmt: skip
    run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp_path, env
    )

    work = tmp_path / "empty"
    work.mkdir()
    env = {**env, "VISIONKIT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "2"}
    env.pop("PYTHONPATH", None)
    where = run([python, "-c", "import visionkit; print(visionkit.__file__)"], work, env)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout  # the wheel's copy

    command = str(bin_dir / "visionkit")
    train = run([command, "train", "yolo_v1_shapes", "train.epochs=1", *TINY], work, env)
    run_dir = work / "runs" / "yolo_v1_shapes"
    assert (run_dir / "best.pth").is_file() and (run_dir / "config.yaml").is_file(), train.stdout
    evaluated = run([command, "eval", "runs/yolo_v1_shapes"], work, env)
    assert "AP50" in evaluated.stdout
    images = next((tmp_path / "cache" / "shapes").glob("*val*")) / "JPEGImages"
    run([command, "predict", "runs/yolo_v1_shapes", "--source", str(images)], work, env)
    assert len(list((work / "runs" / "predict").glob("*.jpg"))) == 8
    run([command, "export", "runs/yolo_v1_shapes", "m.onnx"], work, env)
    assert (work / "m.onnx").stat().st_size > 0
    listed = run([command, "configs"], work, env)
    assert "yolo_v1_shapes" in listed.stdout and "faster_rcnn_shapes" in listed.stdout
