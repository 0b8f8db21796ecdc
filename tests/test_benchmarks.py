"""benchmarks/throughput.py in its quick mode on a tiny YOLOv1, benchmarks/fcn_variants.py on two
tiny FCNs for one epoch, benchmarks/stream_memory.py on a short video: the tables and their
numbers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from script_loader import load_script

from visionkit.errors import ConfigError

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
         "--config", "visionkit/configs/yolo_v1_shapes.yaml", "--config", "visionkit/configs/fast_rcnn_shapes.yaml",
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


def test_fcn_variants_table(tmp_path):
    from test_fcn_e2e import tiny_fcn_overrides

    root = tmp_path / "runs"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "fcn_variants.py"), "--epochs", "1",
        "--variants", "32s", "8s", "--output-root", str(root),
        *tiny_fcn_overrides(tmp_path / "cache"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("command: python benchmarks/fcn_variants.py --epochs 1")
    table = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln.startswith("|")]
    header, rows = table[0], table[2:]
    assert header == [
        "variant", "epoch", "pixel acc.", "mean acc.", "mean IU", "f.w. IU", "bIoU@3",
        "train min", "infer ms/image",
    ]  # fmt: skip
    assert [r[:2] for r in rows] == [["FCN-32s", "1"], ["FCN-8s", "1"]]
    for row in rows:
        values = [float(v) for v in row[2:]]
        assert all(0 <= v <= 100 for v in values[:5]) and values[5] > 0 and values[6] > 0, row
    for variant in ("32s", "8s"):  # the tiny LeNet names no levels: [] for each variant
        assert f"variant: {variant}" in (root / variant / "config.yaml").read_text()
        line = next(ln for ln in lines if ln.startswith(f"- FCN-{variant}: python tools/train.py"))
        assert line.endswith(f"model.fcn.variant={variant} 'model.backbone.out_features=[]'")
    again = subprocess.run(
        [*command, "--skip-train", "--record", "best"], capture_output=True, text=True, cwd=ROOT,
        timeout=120, env=env,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert [ln for ln in again.stdout.splitlines() if ln.startswith("| FCN-")] == lines[5:7]
    refused = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert refused.returncode == 1 and "already exist" in refused.stderr


def test_fcn_variants_levels_from_the_config():
    bench = load_script("benchmarks/fcn_variants.py")
    levels = ["res3", "res4", "res5"]  # visionkit/configs/fcn8s_shapes.yaml
    got = {v: bench.level_override(levels, v) for v in ("32s", "16s", "8s")}
    assert got == {
        "32s": "model.backbone.out_features=[res5]",
        "16s": "model.backbone.out_features=[res4,res5]",
        "8s": "model.backbone.out_features=[res3,res4,res5]",
    }
    with pytest.raises(ConfigError, match="FCN-8s fuses 3 levels; .* names only 2"):
        bench.level_override(levels[1:], "8s")


def test_amp_speed_table(tmp_path):
    overrides = [
        f"data.train.root={tmp_path}", "data.train.num_images=4", "data.train.image_size=64",
        "model.input_size=[64,64]", "model.backbone.name=lenet", "model.backbone.out_features=[]",
        "model.yolo.head_channels=16", "model.yolo.extra_convs=1",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "amp_speed.py"), "--device", "cpu",
         "--rounds", "1", "--steps", "1", "--warmup", "0", "--batch-size", "2",
         "--config", "visionkit/configs/yolo_v1_shapes.yaml", "--config", "visionkit/configs/sppnet_shapes.yaml",
         *overrides],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    table = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln.startswith("|")]
    assert table[0] == ["config", "model", "size", "batch", "fp32 img/s", "bf16 img/s",
                        "bf16 / fp32"]  # fmt: skip
    (row,) = table[2:]
    assert row[:4] == ["yolo_v1_shapes.yaml", "yolo_v1", "64x64", "2"]
    fp32, bf16, ratio = (float(v) for v in row[4:])
    assert fp32 > 0 and bf16 > 0 and abs(ratio - bf16 / fp32) < 0.02 + 0.01 * ratio
    assert lines[-1].startswith("sppnet_shapes.yaml: skipped")


def test_stream_memory_samples_and_growth(capsys):
    samples = load_script("benchmarks/stream_memory.py").main(
        ["--frames", "60", "--size", "64", "--every", "20", "--warmup", "20"]
    )
    assert [f for f, _ in samples] == [0, 20, 40, 60] and all(rss > 0 for _, rss in samples)
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "| frames | RSS MiB | since warm-up MiB |" and len(out) == 8
    assert out[-1].startswith("RSS growth after warm-up (frames 20 to 60): ")
    assert abs(samples[-1][1] - samples[1][1]) < 10  # flat, as the full run shows at 2,000


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the early exit of CPU machines")
def test_device_check_exits_at_once_without_cuda(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--output",
         str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr == ""
    assert proc.stdout.splitlines() == [
        "device_check: no CUDA device here (torch.cuda.is_available() is False); nothing "
        "checked (--device cpu --tiny runs the same checks on the CPU)"
    ]
    assert not (tmp_path / "out").exists()


def test_faster_rcnn_profile_tables(tmp_path):
    """benchmarks/faster_rcnn_profile.py on tiny shapes images: both phases' stage tables, each
    stage's share summing to 100 %, and the ratio line of the totals."""
    overrides = [
        f"data.train.root={tmp_path}", "data.train.num_images=4", "data.train.image_size=64",
        "model.resize.min_size=64", "model.resize.max_size=64",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "faster_rcnn_profile.py"), "--batch", "2",
         "--warmup", "1", "--steps", "1", "--ops", "2", *overrides],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for phase, unit in (("train", "step"), ("predict", "batch")):
        rows = [ln for ln in out.splitlines() if ln.startswith("|")]
        start = next(i for i, ln in enumerate(rows) if ln.startswith(f"| {phase} stage |"))
        end = next(i for i in range(start, len(rows)) if rows[i].startswith("| **total"))
        stages = {r.split("|")[1].strip(): r.split("|")[2:6] for r in rows[start + 2 : end]}
        assert {"backbone", "RoI pooling", "proposal selection"} <= set(stages)
        assert ("backward" in stages) == (phase == "train")
        for column in (1, 3):  # the two models' shares
            assert abs(sum(float(v[column]) for v in stages.values()) - 100) < 0.5
        totals = rows[end].split("|")
        assert f"**total per {unit}**" in totals[1]
        ratio = float(totals[2].strip(" *")) / float(totals[4].strip(" *"))
        line = next(ln for ln in out.splitlines() if ln.startswith(f"{phase}: visionkit /"))
        assert abs(float(line.split("**")[1]) - ratio) < 0.002 + 0.01 * ratio
    assert "visionkit train, top operators (self CPU):" in out
