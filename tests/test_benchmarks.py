"""benchmarks/throughput.py in its quick mode on a tiny YOLOv1: the table and its numbers."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_throughput_quick_table(tmp_path):
    overrides = [
        f"data.train.root={tmp_path}", f"data.val.root={tmp_path}", "data.train.num_images=8",
        "data.val.num_images=4", "data.train.image_size=64", "data.val.image_size=64",
        "model.input_size=[64,64]", "model.backbone.name=lenet", "model.backbone.out_features=[]",
        "model.yolo.head_channels=16", "model.yolo.extra_convs=1",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--quick", "--device", "cpu",
         "--config", "configs/yolo_v1_shapes.yaml", "--config", "configs/fast_rcnn_shapes.yaml",
         *overrides],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("command: python benchmarks/throughput.py --quick")
    assert lines[1].startswith("device: ") and "cores" in lines[1]
    table = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln.startswith("|")]
    header, rows = table[0], table[2:]
    assert header == [
        "config", "model", "size", "batch", "train img/s", "train MiB", "infer img/s",
        "infer MiB", "loader w0 img/s", "loader w1 img/s", "loader w2 img/s", "loader / train",
    ]  # fmt: skip
    assert len(rows) == 1 and rows[0][:4] == ["yolo_v1_shapes.yaml", "yolo_v1", "64x64", "2 / 2"]
    values = dict(zip(header, rows[0], strict=True))
    rates = [k for k in header if "img/s" in k or k == "loader / train"]
    assert all(float(values[k]) > 0 for k in rates), values
    assert all(float(values[k]) >= 0 for k in ("train MiB", "infer MiB"))
    assert any(ln.startswith("fast_rcnn_shapes.yaml: skipped") for ln in lines)
