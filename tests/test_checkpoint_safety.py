"""Checkpoints are never unpickled: a crafted .pth whose unpickling would create a file is
refused in one line by every tool that takes a checkpoint, and the file is not created; old
checkpoints convert once through tools/convert_checkpoint.py."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from test_tools_e2e import run_tool, tiny_overrides

from visionkit.checkpoints import load_checkpoint, save_checkpoint
from visionkit.engine.rng import rng_state, set_rng_state
from visionkit.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
YOLO = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")


class CreatesAFile:
    """Unpickling this calls ``open(path, "w")``: the file appears if anything unpickles it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def crafted(tmp_path: Path, name: str = "evil.pth") -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / name
    torch.save({"model": {"w": torch.zeros(1)}, "payload": CreatesAFile(marker)}, path)
    return path, marker


def test_load_checkpoint_refuses_pickled_objects_without_running_them(tmp_path):
    path, marker = crafted(tmp_path)
    with pytest.raises(CheckpointError, match="visionkit convert-checkpoint") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value) and not marker.exists()


def test_a_file_holding_a_list_is_a_one_line_error(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds a list, not a checkpoint"):
        load_checkpoint(tmp_path / "list.pth")


def test_rng_state_round_trips_through_a_safe_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint({"rng": rng_state()}, tmp_path / "c.pth")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "c.pth")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_convert_checkpoint_turns_numpy_state_into_a_safe_file(tmp_path):
    old = {
        "model": {"w": torch.ones(2)},
        "rng": {"numpy": np.random.get_state(), "python": random.getstate()},
        "best": np.float64(0.5),
        "cat_ids": [np.int64(1), np.int64(3)],
    }
    torch.save(old, tmp_path / "old.pth")
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(tmp_path / "old.pth")
    run_tool("convert_checkpoint.py", str(tmp_path / "old.pth"), str(tmp_path / "new.pth"))
    new = load_checkpoint(tmp_path / "new.pth")
    assert new["best"] == 0.5 and new["cat_ids"] == [1, 3]
    assert torch.equal(new["model"]["w"], torch.ones(2))
    set_rng_state({**new["rng"], "torch": torch.get_rng_state()})
    # a class that is neither tensors nor plain data is named, not written
    torch.save({"model": {}, "x": CreatesAFile(tmp_path / "m")}, tmp_path / "odd.pth")
    proc = run_tool("convert_checkpoint.py", str(tmp_path / "odd.pth"), str(tmp_path / "o.pth"),
                    check=False)  # fmt: skip
    assert proc.returncode != 0 and "checkpoint.x is a TextIOWrapper" in proc.stderr
    assert not (tmp_path / "o.pth").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "tool", ["eval", "infer", "visualize", "train_rcnn_svms", "train_init_from", "train_resume"]
)
def test_every_tool_refuses_a_crafted_checkpoint_in_one_line(tool, tmp_path):
    path, marker = crafted(tmp_path, "last.pth")
    tiny = tiny_overrides(tmp_path / "cache", epochs=1)
    if tool == "eval":
        args = ["eval.py", "--config", YOLO, "--weights", str(path), *tiny]
    elif tool == "infer":
        image = tmp_path / "x.jpg"
        import cv2

        cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
        args = ["infer.py", "--config", YOLO, "--weights", str(path), "--source", str(image),
                "--output", str(tmp_path / "out"), *tiny]  # fmt: skip
    elif tool == "visualize":
        args = ["visualize.py", "--config", YOLO, "--weights", str(path), "--output",
                str(tmp_path / "vis"), *tiny]  # fmt: skip
    elif tool == "train_rcnn_svms":
        rcnn = str(ROOT / "visionkit" / "configs" / "rcnn_shapes.yaml")
        args = ["train_rcnn_svms.py", "--config", rcnn, "--weights", str(path)]
    elif tool == "train_init_from":
        args = ["train.py", "--config", YOLO, "--init-from", str(path), "--output-dir",
                str(tmp_path / "run"), "--no-progress", *tiny]  # fmt: skip
    else:
        args = ["train.py", "--config", YOLO, "--resume", "--output-dir", str(tmp_path),
                "--no-progress", *tiny]  # fmt: skip
    proc = run_tool(*args, check=False)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "pickled Python objects" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


def test_a_data_parallel_checkpoint_loads_without_its_module_prefix():
    from visionkit.checkpoints import load_model_weights

    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    wrapped = {f"module.{k}": v + 1 for k, v in model.state_dict().items()}
    load_model_weights(model, {"model": wrapped}, "m", "dp.pth")
    assert torch.equal(model[0].bias, wrapped["module.0.bias"])
