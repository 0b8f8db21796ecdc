"""The output rule, tool by tool and input role by input role: an output that is an input, lies
inside an input folder, or is a folder holding an input is refused before any work, in one line
naming both (exit 2), and every input is left as it was; so are outputs that cannot be written
(a folder for a file, a file for a folder, /proc, a suffix the writer cannot write).
tools/infer.py never mixes runs: a non-empty --output gets a numbered sibling (--exist-ok
reuses it). Each tool's main runs in this process (tests/script_loader.py)."""

import hashlib
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from script_loader import load_script
from test_tools_e2e import ROOT, tiny_overrides

from visionkit.config import load_config
from visionkit.errors import ConfigError
from visionkit.io.outputs import check_outputs, numbered_folder
from visionkit.models import build_model
from visionkit.utils.cli import run_cli

YOLO = ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml"
COCO_VAL = [
    "data.val.type=coco",
    "data.val.root={coco}/images",
    "data.val.ann_file={coco}/ann.json",
]

# (tool, arguments, the output as given, the input's role, the input as given); {name} is a
# folder of the `inputs` fixture (every input alone in its own folder, so that the line names it)
CASES = {
    "eval-out-is-config": ("eval", "--config {c}/cfg.yaml --weights {w}/w.pth --out {c}/cfg.yaml",
                           "{c}/cfg.yaml", "--config", "{c}/cfg.yaml"),
    "eval-out-is-base": ("eval", "--config {c}/cfg.yaml --weights {w}/w.pth --out {b}/base.yaml",
                         "{b}/base.yaml", "--config's base", "{b}/base.yaml"),
    "eval-predictions-file-is-weights": (
        "eval", "--config {c}/cfg.yaml --weights {w}/w.pth --save-predictions {w}/w.pth",
        "{w}/w.pth", "--weights", "{w}/w.pth"),
    "eval-out-is-predictions": (
        "eval", "--config {c}/cfg.yaml --predictions {p}/preds.json --out {p}/preds.json",
        "{p}/preds.json", "--predictions", "{p}/preds.json"),
    "eval-plots-hold-weights": ("eval", "--config {c}/cfg.yaml --weights {w}/w.pth --plots {w}",
                                "{w}", "--weights", "{w}/w.pth"),
    "eval-out-in-coco-images": (
        "eval", "--config {c}/cfg.yaml --weights {w}/w.pth --out {coco}/images/m.json "
        + " ".join(COCO_VAL), "{coco}/images/m.json", "data.val.root", "{coco}/images"),
    "eval-out-is-annotations": (
        "eval", "--config {c}/cfg.yaml --weights {w}/w.pth --out {coco}/ann.json "
        + " ".join(COCO_VAL), "{coco}/ann.json", "data.val.ann_file", "{coco}/ann.json"),
    "eval-out-links-to-config": (
        "eval", "--config {c}/cfg.yaml --weights {w}/w.pth --out {links}/to_cfg.json",
        "{links}/to_cfg.json", "--config", "{c}/cfg.yaml"),
    "export-output-is-weights": ("export", "--config {c}/cfg.yaml --weights {w}/w.pth --output "
                                 "{w}/w.pth", "{w}/w.pth", "--weights", "{w}/w.pth"),
    "export-output-is-config": ("export", "--config {c}/cfg.yaml --weights {w}/w.pth --output "
                                "{c}/cfg.yaml", "{c}/cfg.yaml", "--config", "{c}/cfg.yaml"),
    "export-output-links-to-weights": (
        "export", "--config {c}/cfg.yaml --weights {w}/w.pth --output {links}/to_w.onnx",
        "{links}/to_w.onnx", "--weights", "{w}/w.pth"),
    "infer-output-is-source-folder": (
        "infer", "--config {c}/cfg.yaml --weights {w}/w.pth --source {src}/photos --output "
        "{src}/photos", "{src}/photos", "--source", "{src}/photos/a.jpg"),
    "infer-output-is-sources-parent": (
        "infer", "--config {c}/cfg.yaml --weights {w}/w.pth --source {src}/photos --output {src}",
        "{src}", "--source", "{src}/photos/a.jpg"),
    "infer-output-is-source-file": (
        "infer", "--config {c}/cfg.yaml --weights {w}/w.pth --source {src}/photos/a.jpg "
        "--output {src}/photos/a.jpg", "{src}/photos/a.jpg", "--source", "{src}/photos/a.jpg"),
    "infer-output-holds-weights": (
        "infer", "--config {c}/cfg.yaml --weights {w}/w.pth --source {src}/photos --output {w}",
        "{w}", "--weights", "{w}/w.pth"),
    "infer-output-holds-config": (
        "infer", "--config {c}/cfg.yaml --weights {w}/w.pth --source {src}/photos --output {c}",
        "{c}", "--config", "{c}/cfg.yaml"),
    "summary-json-is-config": ("summary", "--config {c}/cfg.yaml --json {c}/cfg.yaml",
                               "{c}/cfg.yaml", "--config", "{c}/cfg.yaml"),
    "summary-json-is-base": ("summary", "--config {c}/cfg.yaml --json {b}/base.yaml",
                             "{b}/base.yaml", "--config's base", "{b}/base.yaml"),
    "visualize-output-holds-image": (
        "visualize", "--config {c}/cfg.yaml --image {img}/x.jpg --output {img}", "{img}",
        "--image", "{img}/x.jpg"),
    "visualize-output-holds-weights": (
        "visualize", "--config {c}/cfg.yaml --weights {w}/w.pth --output {w}", "{w}",
        "--weights", "{w}/w.pth"),
    "visualize-output-holds-base": ("visualize", "--config {c}/cfg.yaml --output {b}", "{b}",
                                    "--config's base", "{b}/base.yaml"),
    "compare-output-is-metrics": ("compare", "{run} --output {run}/metrics.jsonl",
                                  "{run}/metrics.jsonl", "a run's file", "{run}/metrics.jsonl"),
    "plot-logs-output-is-metrics": ("plot_logs", "{run} --output {run}/metrics.jsonl",
                                    "{run}/metrics.jsonl", "a run's file", "{run}/metrics.jsonl"),
    "browse-output-holds-config": ("browse_dataset", "--config {c}/cfg.yaml --output {c}", "{c}",
                                   "--config", "{c}/cfg.yaml"),
    "browse-output-in-coco-images": (
        "browse_dataset", "--config {c}/cfg.yaml --split val --output {coco}/images/drawn "
        + " ".join(COCO_VAL), "{coco}/images/drawn", "data.val.root", "{coco}/images"),
    "train-output-holds-config": ("train", "--config {c}/cfg.yaml --output-dir {c}", "{c}",
                                  "--config", "{c}/cfg.yaml"),
    "train-output-holds-base": ("train", "--config {c}/cfg.yaml --output-dir {b}", "{b}",
                                "--config's base", "{b}/base.yaml"),
    "train-output-holds-init-from": (
        "train", "--config {c}/cfg.yaml --init-from {init}/i.pth --output-dir {init}", "{init}",
        "--init-from", "{init}/i.pth"),
    "train-output-holds-init-weights": (
        "train", "--config {c}/cfg.yaml --output-dir {init} model.init_weights={init}/i.pth",
        "{init}", "model.init_weights", "{init}/i.pth"),
    "convert-output-is-input": ("convert_checkpoint", "{w}/w.pth {w}/w.pth", "{w}/w.pth",
                                "the input", "{w}/w.pth"),
    "convert-output-links-to-input": ("convert_checkpoint", "{w}/w.pth {links}/to_w.pth",
                                      "{links}/to_w.pth", "the input", "{w}/w.pth"),
    "svms-out-is-weights": ("train_rcnn_svms", "--config {r}/rcnn.yaml --weights {w}/w.pth --out "
                            "{w}/w.pth", "{w}/w.pth", "--weights", "{w}/w.pth"),
    "svms-out-is-config": ("train_rcnn_svms", "--config {r}/rcnn.yaml --weights {w}/w.pth --out "
                           "{r}/rcnn.yaml", "{r}/rcnn.yaml", "--config", "{r}/rcnn.yaml"),
}  # fmt: skip


def image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((40, 50, 3), 90, np.uint8))


@pytest.fixture
def inputs(tmp_path) -> dict[str, str]:
    """Every input of the table, each in its own folder; name -> folder."""
    d = {k: tmp_path / k for k in ("c", "b", "r", "w", "p", "src", "img", "run", "init", "coco")}
    for folder in [*d.values(), tmp_path / "links"]:
        folder.mkdir()
    (d["c"] / "cfg.yaml").write_text("base: ../b/base.yaml\n")
    shutil.copy(YOLO, d["b"] / "base.yaml")
    shutil.copy(ROOT / "visionkit" / "configs" / "rcnn_shapes.yaml", d["r"] / "rcnn.yaml")
    (d["w"] / "w.pth").write_bytes(b"weights")
    (d["p"] / "preds.json").write_text("[]")
    image(d["src"] / "photos" / "a.jpg")
    image(d["img"] / "x.jpg")
    (d["run"] / "config.yaml").write_text(YOLO.read_text())
    (d["run"] / "metrics.jsonl").write_text('{"iter": 1, "train/loss": 1.0}\n')
    (d["init"] / "i.pth").write_bytes(b"init")
    (d["coco"] / "images").mkdir()
    (d["coco"] / "ann.json").write_text('{"images": [], "annotations": [], "categories": []}')
    for name, target in (("to_cfg.json", "c/cfg.yaml"), ("to_w.onnx", "w/w.pth"),
                         ("to_w.pth", "w/w.pth")):  # fmt: skip
        (tmp_path / "links" / name).symlink_to(tmp_path / target)
    return {k: str(v) for k, v in d.items()} | {"links": str(tmp_path / "links")}


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: a file's SHA-256, a link's target, or "folder"."""
    out = {}
    for p in sorted(folder.rglob("*")):
        key = str(p.relative_to(folder))
        if p.is_symlink():
            out[key] = f"link to {p.readlink()}"
        elif p.is_dir():
            out[key] = "folder"
        else:
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run(tool: str, argv: list[str], capsys) -> tuple[int, list[str]]:
    """``tools/<tool>.py``'s main through run_cli, in this process: (exit code, stderr lines)."""
    with pytest.raises(SystemExit) as exit_:
        run_cli(load_script(f"tools/{tool}.py").main, argv)
    return exit_.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("case", list(CASES))
def test_an_output_over_into_or_around_an_input_is_refused(case, inputs, tmp_path, capsys):
    tool, args, output, role, source = (s.format(**inputs) for s in CASES[case])
    before = snapshot(tmp_path)
    code, err = run(tool, args.split(), capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and f" {output} " in err[0], err
    assert f"{role} {source}" in err[0], err
    assert snapshot(tmp_path) == before  # nothing written, created or changed


@pytest.mark.parametrize(
    "tool, args, expected",
    [
        ("export", "--config {c}/cfg.yaml --weights {w}/w.pth --output {t}/m.pth",
         "--output {t}/m.pth: cannot write a '.pth' file; give a name ending in .onnx"),
        ("plot_logs", "{run} --output {t}/chart.xyz", "--output {t}/chart.xyz: cannot write a "
         "'.xyz' file"),
        ("compare", "{run} --output {t}/chart", "--output {t}/chart: cannot write a '' file"),
        ("summary", "--backbone alexnet --json /proc/visionkit/s.json",
         "--json /proc/visionkit/s.json: its folder /proc/visionkit: cannot write there"),
        ("infer", "--config {c}/cfg.yaml --weights {w}/w.pth --source {src}/photos "
         "--output /proc/visionkit", "--output /proc/visionkit: cannot write there"),
        ("eval", "--config {c}/cfg.yaml --weights {w}/w.pth --out {t}/c", "--out {t}/c is a "
         "folder; give a file name"),
        ("visualize", "--config {c}/cfg.yaml --output {t}/c/cfg.yaml",
         "--output {t}/c/cfg.yaml is --config"),
        ("visualize", "--config {c}/cfg.yaml --output {t}/afile", "--output {t}/afile is a file; "
         "give a folder"),
        ("eval", "--config {c}/cfg.yaml --weights {w}/w.pth --out {t}/m.json --save-predictions "
         "{t}/m.json", "--save-predictions {t}/m.json is also --out"),
    ],
)  # fmt: skip
def test_an_output_that_cannot_be_written_is_refused_before_the_work(
    tool, args, expected, inputs, tmp_path, capsys
):
    (tmp_path / "afile").write_text("x")
    paths = inputs | {"t": str(tmp_path)}
    before = snapshot(tmp_path)
    code, err = run(tool, args.format(**paths).split(), capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {expected.format(**paths)}")
    assert snapshot(tmp_path) == before


def test_hard_links_and_relative_spellings_are_the_same_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("w.pth").write_bytes(b"w")
    Path("sub").mkdir()
    (tmp_path / "hard.pth").hardlink_to(tmp_path / "w.pth")
    for output in ("hard.pth", "sub/../w.pth", str(tmp_path / "w.pth")):
        with pytest.raises(ConfigError, match=re.escape(f"--out {output} is --weights w.pth:")):
            check_outputs({"--weights": "w.pth"}, files={"--out": output})
    check_outputs({"--weights": "w.pth"}, files={"--out": "sub/w.pth"})  # beside is fine


def test_numbered_folder_counts_past_taken_siblings(tmp_path):
    runs = tmp_path / "runs"
    assert numbered_folder(runs / "infer") == runs / "infer"  # absent
    (runs / "infer").mkdir(parents=True)
    assert numbered_folder(runs / "infer") == runs / "infer"  # empty
    (runs / "infer" / "a.jpg").write_bytes(b"x")
    (runs / "infer2").mkdir()
    assert numbered_folder(runs / "infer") == runs / "infer2"  # empty sibling reused
    (runs / "infer2" / "b.jpg").write_bytes(b"x")
    (runs / "infer3").write_text("a file")
    assert numbered_folder(runs / "infer") == runs / "infer4"
    assert numbered_folder(runs / "infer", exist_ok=True) == runs / "infer"


def test_infer_never_mixes_runs_unless_exist_ok(tmp_path, capsys):
    cfg = load_config(YOLO, tiny_overrides(tmp_path / "cache"))
    torch.save(build_model(cfg.model).state_dict(), tmp_path / "w.pth")
    image(tmp_path / "photos" / "a.jpg")
    out = tmp_path / "runs" / "infer"

    def infer(*extra: str) -> list[str]:
        argv = ["--config", str(YOLO), "--weights", str(tmp_path / "w.pth"), "--source",
                str(tmp_path / "photos"), "--output", str(out), "--no-progress", *extra,
                *tiny_overrides(tmp_path / "cache")]  # fmt: skip
        assert load_script("tools/infer.py").main(argv) == 0
        return capsys.readouterr().out.splitlines()

    infer()
    first = (out / "predictions.json").read_bytes()
    (out / "mine.txt").write_text("the user's")
    lines = infer()
    assert lines[0] == f"--output {out} holds an earlier run's files: writing to {out}2"
    assert sorted(p.name for p in (out.parent / "infer2").iterdir()) == [
        "a.jpg", "images.json", "predictions.json"
    ]  # fmt: skip
    assert (out / "predictions.json").read_bytes() == first and (out / "mine.txt").exists()
    infer("--exist-ok")
    assert not (out.parent / "infer3").exists() and (out / "mine.txt").exists()
