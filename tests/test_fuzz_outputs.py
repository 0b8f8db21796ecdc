"""Fuzz: every tool's output flag pointed at each of its inputs (or the folder holding it),
spelled in several ways (relative, ``./``, ``..``, a trailing slash, a link); and the Python
API's ``load``/``evaluate`` arguments. The input must never change; the outcome is a refusal
or a result, never a traceback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from unittest import mock

import pytest
from fuzz_assets import session_assets
from fuzz_strategies import ODD_TEXT, overrides
from fuzz_support import (
    Case,
    case,
    check,
    disk_full_after,
    fuzz_settings,
    invoke,
    refused,
    run_tool,
)
from hypothesis import example, given
from hypothesis import strategies as st

import visionkit
from visionkit.engine.trainer import Trainer


@pytest.fixture(scope="module")
def assets():
    return session_assets()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_outputs")


def inputs(c: Case, assets) -> dict[str, Path]:
    """Copies of every input under in/: config.yaml, weights.pth, predictions.json, a photos
    folder with the user's own files beside it, a run folder with metrics.jsonl."""
    i = c.inp
    shutil.copy(assets.config, i / "config.yaml")
    shutil.copy(assets.checkpoint, i / "weights.pth")
    (i / "predictions.json").write_text("[]")
    (i / "photos").mkdir()
    shutil.copy(assets.images / "img0.jpg", i / "photos" / "photo.jpg")
    shutil.copy(assets.images / "img1.jpg", i / "photo.jpg")  # the user's own, beside the sources
    (i / "run").mkdir()
    shutil.copy(assets.config, i / "run" / "config.yaml")
    (i / "run" / "metrics.jsonl").write_text('{"iter": 1, "train/loss": 1.0, "bbox/AP50": 5.0}\n')
    return {
        "config": i / "config.yaml",
        "weights": i / "weights.pth",
        "predictions": i / "predictions.json",
        "photos": i / "photos",
        "photo": i / "photos" / "photo.jpg",
        "parent": i,
        "run": i / "run",
        "metrics": i / "run" / "metrics.jsonl",
    }


# tool -> (arguments with {role} placeholders, output flag, roles the output may be set to)
TOOLS = {
    "eval": (["--config", "{config}", "--weights", "{weights}", "--no-progress"],
             ["--out", "--save-predictions", "--plots"], ["config", "weights", "parent"]),
    "eval_p": (["--config", "{config}", "--predictions", "{predictions}"], ["--out"],
               ["predictions", "config"]),
    "export": (["--config", "{config}", "--weights", "{weights}"], ["--output"],
               ["weights", "config"]),
    "summary": (["--config", "{config}"], ["--json"], ["config"]),
    "infer": (["--weights", "{weights}", "--source", "{photos}", "--no-progress"], ["--output"],
              ["parent", "photos"]),
    "browse_dataset": (["--config", "{config}", "--num", "1"], ["--output"], ["parent"]),
    "visualize": (["--config", "{config}", "--image", "{photo}"], ["--output"],
                  ["photo", "parent"]),
    "plot_logs": (["{run}"], ["--output"], ["metrics", "run"]),
    "compare": (["{run}"], ["--output"], ["metrics", "run"]),
    "convert_checkpoint": (["{weights}"], [""], ["weights"]),
    "train": (["--config", "{config}", "--no-progress"], ["--output-dir"], ["parent"]),
}  # fmt: skip
COMBOS = [(t, f, r) for t, (_, flags, roles) in TOOLS.items() for f in flags for r in roles]
SPELLINGS = ["absolute", "relative", "dot", "dotdot", "slash", "link"]


def spell(path: Path, how: str, cwd: Path) -> str:
    """``path`` written as a user might: relative to ``cwd``, with ``./`` or ``x/..``, a
    trailing slash (folders), or through a symbolic link to its folder."""
    rel = os.path.relpath(path, cwd)
    if how == "relative":
        return rel
    if how == "dot":
        return f"./{rel}"
    if how == "dotdot":
        return str(path.parent / ".." / path.parent.name / path.name)
    if how == "slash" and path.is_dir():
        return f"{path}/"
    if how == "link":
        link = cwd / "link"
        if not link.exists():
            link.symlink_to(path.parent, target_is_directory=True)
        return str(link / path.name)
    return str(path)


@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c).replace("--", "") for c in COMBOS])
@fuzz_settings(0.25)  # one generated spelling per combination in CI
@given(how=st.sampled_from(SPELLINGS))
@example(how="absolute")
def test_output_never_writes_over_an_input(base, assets, combo, how):
    tool, flag, role = combo
    args, _, _ = TOOLS[tool]
    with case(base, assets) as c:
        roles = inputs(c, assets)
        argv = [a.format(**roles) if "{" in a else a for a in args]
        target = spell(roles[role], how, c.root)
        argv += [target] if not flag else [flag, target]
        script = tool.removesuffix("_p")
        expect = None if role == "parent" else refused  # beside the inputs: allowed
        with mock.patch.object(Trainer, "train", lambda self: {}):
            check(c, lambda: run_tool(script, argv, c.root), expect, f"{flag} {target} = {role}")


WRITERS = {
    "eval": ["--config", "{config}", "--weights", "{weights}", "--no-progress", "--out",
             "{out}/m.json", "--save-predictions", "{out}/p.json", "--plots", "{out}/plots"],
    "export": ["--config", "{config}", "--weights", "{weights}", "--output", "{out}/m.onnx"],
    "summary": ["--config", "{config}", "--json", "{out}/s.json"],
    "infer": ["--weights", "{weights}", "--source", "{photos}", "--output", "{out}/infer",
              "--no-progress"],
    "browse_dataset": ["--config", "{config}", "--num", "2", "--output", "{out}/browse"],
    "visualize": ["--config", "{config}", "--image", "{photo}", "--output", "{out}/vis"],
    "plot_logs": ["{run}", "--output", "{out}/curves.png"],
    "compare": ["{run}", "--output", "{out}/compare.png"],
    "convert_checkpoint": ["{weights}", "{out}/safe.pth"],
    "train": ["--config", "{config}", "--no-progress", "--output-dir", "{out}/run"],
}  # fmt: skip


@pytest.mark.parametrize("tool", list(WRITERS))
@fuzz_settings(0.5)
@given(nbytes=st.sampled_from([0, 1, 100, 3000, 20_000, 200_000]))
@example(nbytes=100)
def test_full_disk_leaves_no_half_written_file(base, assets, tool, nbytes):
    with case(base, assets) as c:
        roles = inputs(c, assets) | {"out": c.out}
        argv = [a.format(**roles) for a in WRITERS[tool]]

        def run():
            with disk_full_after(nbytes):  # only the tool's own writes
                return run_tool(tool, argv, c.root)

        with mock.patch.object(Trainer, "train", lambda self: {}):
            check(c, run, None, f"every file stops at {nbytes} bytes (a full disk)")


API_CALLS = ["load", "evaluate", "predict"]


@fuzz_settings()
@given(
    call=st.sampled_from(API_CALLS),
    score=st.sampled_from([0.3, float("nan"), -1.0, 2.0, float("inf"), 0.0]),
    device=st.sampled_from([None, "cpu", "tpu", "cuda:99", "", "auto"]),
    extra=overrides,
    metric=st.sampled_from(["coco", "voc07", "all", "nope", ""]),
    batch=st.sampled_from([1, 0, -1, 10**12]),
    config=st.sampled_from([None, "config", "missing", "folder", *ODD_TEXT[:4]]),
)
@example(call="load", score=0.3, device="tpu", extra=[], metric="coco", batch=1, config=None)
@example(call="predict", score=float("nan"), device=None, extra=[], metric="coco", batch=1,
         config=None)  # fmt: skip
@example(call="evaluate", score=0.3, device=None, extra=["eval.batch_size=1e20"], metric="coco",
         batch=1, config=None)  # fmt: skip
@example(call="load", score=0.3, device=None, extra=["model.yolo.grid_size=3"], metric="coco",
         batch=1, config=None)  # fmt: skip
def test_api_hostile_arguments(base, assets, call, score, device, extra, metric, batch, config):
    with case(base, assets) as c:
        shutil.copy(assets.config, c.inp / "config.yaml")
        (c.inp / "folder").mkdir()
        cfg = {"config": c.inp / "config.yaml", "missing": c.inp / "no.yaml",
               "folder": c.inp / "folder"}.get(config, config)  # fmt: skip
        image = assets.images / "img0.jpg"

        def run():
            kw = {"config": cfg, "device": device, "overrides": extra}
            if call == "load":
                visionkit.load(assets.checkpoint, score_thresh=score, **kw)
            elif call == "evaluate":
                visionkit.load(assets.checkpoint).evaluate(metric=metric, overrides=extra)
            else:
                visionkit.load(assets.checkpoint).predict(
                    image, score_thresh=score, batch_size=batch
                )
            return 0

        def expect(outcome):
            bad_score = call != "evaluate" and not 0 <= score <= 1
            stored = call == "load" and any(o.startswith("model.yolo.grid_size=") for o in extra)
            tpu = call == "load" and device == "tpu"
            return refused(outcome) if (bad_score or stored or tpu) else None

        detail = f"{call} score {score} device {device} overrides {extra} metric {metric}"
        check(c, lambda: invoke(f"visionkit API {call}", run, c.root), expect, detail)
