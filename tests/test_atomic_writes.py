"""Every artifact is written through a temporary file renamed into place: under an injected full
disk (``OSError(ENOSPC)`` half-way through the write, or at the rename) the destination keeps its
old content or does not exist, no temporary file is left, and the error is one line (exit 1).
JSON, CSV, YAML, JPEG/PNG images, figures, checkpoints, proposals, ONNX, MP4 videos, the
metrics log and generated datasets; then the same through the tools."""

import errno
import os
import pathlib

import cv2
import numpy as np
import pytest
import torch
from script_loader import load_script
from test_model_contract import TINY
from test_model_contract import build as build_tiny

from visionkit.analysis.visualize import write_png
from visionkit.checkpoints import save_checkpoint
from visionkit.config import load_config, save_config
from visionkit.data import ensure_shapes
from visionkit.data.proposal_cache import save_proposals
from visionkit.engine.logger import MetricsLogger
from visionkit.errors import ConfigError, VisionkitError
from visionkit.evaluation.plots import pyplot, save_figure, write_confusion_csv
from visionkit.export import export_onnx
from visionkit.inference import resolve_sources
from visionkit.inference.results import Result
from visionkit.inference.runner import run_inference
from visionkit.inference.writers import VideoWriter, write_image
from visionkit.io.atomic import TEMP_MARK, atomic_path, write_error, write_json
from visionkit.utils.cli import run_cli

FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
OLD = b"the previous, whole file"


def export_tiny(path):
    cfg = load_config(None, ["model.name=yolo_v1", *TINY["yolo_v1"]])
    names = [f"c{i}" for i in range(cfg.model.num_classes)]
    export_onnx(build_tiny("yolo_v1"), cfg, path, names, list(range(1, len(names) + 1)))


def a_result() -> Result:
    empty = np.zeros((0, 4), np.float32)
    image = np.full((20, 30, 3), 90, np.uint8)
    scores, labels = np.zeros(0, np.float32), np.zeros(0, np.int64)
    return Result(image, "array 0", None, empty, scores, labels, ["a"], [1])


WRITERS = {
    "json": (".json", lambda p: write_json(p, {"AP": 50.0})),
    "csv": (".csv", lambda p: write_confusion_csv(np.eye(2), ["a", "b"], p)),
    "config": (".yaml", lambda p: save_config(load_config(None), p)),
    "jpeg": (".jpg", lambda p: write_image(p, np.full((8, 8, 3), 50, np.uint8))),
    "result": (".png", lambda p: a_result().save(p)),
    "png": (".png", lambda p: write_png(p, np.full((8, 8, 3), 50, np.uint8))),
    "figure": (".png", lambda p: save_figure(pyplot().figure(figsize=(2, 2)), p)),
    "checkpoint": (".pth", lambda p: save_checkpoint({"w": torch.ones(3)}, p)),
    "proposals": (".npz", lambda p: save_proposals(p, {1: np.zeros((2, 4))})),
    "onnx": (".onnx", export_tiny),
}


class FullDisk:
    """A file that takes half of the first write, then says the disk is full."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[: len(data) // 2])  # bytes, a buffer or (a text file's) str
        self.f.flush()
        raise FULL

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def inject(monkeypatch, where: str) -> None:
    """A full disk at the rename (``os.replace``) or during the write of a temporary file."""
    if where == "rename":

        def replace(*args, **kwargs):
            raise FULL

        monkeypatch.setattr(os, "replace", replace)
        return
    real_open = pathlib.Path.open

    def open_(self, mode="r", *args, **kwargs):
        f = real_open(self, mode, *args, **kwargs)
        return FullDisk(f) if "w" in mode and TEMP_MARK in self.name else f

    monkeypatch.setattr(pathlib.Path, "open", open_)


def assert_refused_cleanly(error, dest, existed: bool) -> None:
    assert type(error.value) is VisionkitError and error.value.exit_code == 1
    assert str(error.value) == f"cannot write {dest}: {os.strerror(errno.ENOSPC)}"
    if existed:
        assert dest.read_bytes() == OLD
    assert sorted(dest.parent.iterdir()) == ([dest] if existed else [])


@pytest.mark.parametrize("existed", [True, False], ids=["over-a-file", "new"])
@pytest.mark.parametrize("where", ["write", "rename"])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_full_disk_leaves_the_old_file_or_none(writer, where, existed, tmp_path, monkeypatch):
    suffix, write = WRITERS[writer]
    dest = tmp_path / "out" / f"artifact{suffix}"
    dest.parent.mkdir()
    if existed:
        dest.write_bytes(OLD)
    write(dest)  # it works: the destination is replaced, nothing else is left
    assert dest.read_bytes() != OLD and sorted(dest.parent.iterdir()) == [dest]
    if existed:
        dest.write_bytes(OLD)
    else:
        dest.unlink()
    with monkeypatch.context() as m:
        inject(m, where)
        with pytest.raises(VisionkitError) as error:
            write(dest)
    assert_refused_cleanly(error, dest, existed)


def test_an_interrupt_removes_the_temporary_file(tmp_path):
    dest = tmp_path / "a.json"
    dest.write_bytes(OLD)
    with pytest.raises(KeyboardInterrupt), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert dest.read_bytes() == OLD and sorted(tmp_path.iterdir()) == [dest]


def test_a_bad_path_exits_2_and_a_failed_write_1():
    for code in (errno.EACCES, errno.EROFS, errno.ENOENT, errno.EISDIR, errno.ENOTDIR):
        assert type(write_error("x", OSError(code, os.strerror(code)))) is ConfigError
    for code in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
        assert type(write_error("x", OSError(code, os.strerror(code)))) is VisionkitError


def frames(n: int):
    return [np.full((24, 32, 3), 40 * i, np.uint8) for i in range(n)]


def test_a_video_appears_only_whole(tmp_path, monkeypatch):
    dest = tmp_path / "v.mp4"
    video = VideoWriter(dest, 10, (32, 24))
    for frame in frames(3):
        video.write(frame)
    assert not dest.exists()  # written beside it until closed
    video.close()
    capture = cv2.VideoCapture(str(dest))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 3 and sorted(tmp_path.iterdir()) == [dest]
    capture.release()
    dest.write_bytes(OLD)
    video = VideoWriter(dest, 10, (32, 24))
    for frame in frames(3):
        video.write(frame)
    inject(monkeypatch, "rename")
    with pytest.raises(VisionkitError) as error:
        video.close()
    assert_refused_cleanly(error, dest, existed=True)


class Predictor:
    """A detector that finds nothing, and fails (``raise_at``) on its ``at``-th call."""

    task, class_names, cat_ids, score_thresh = "detection", ["a"], [1], 0.3

    def __init__(self, raise_at: BaseException, at: int):
        self.raise_at, self.at, self.calls = raise_at, at, 0

    def __call__(self, images, below=None):
        self.calls += 1
        if self.calls == self.at:
            raise self.raise_at
        empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}
        return [empty | {"labels": torch.zeros(0, dtype=torch.int64)} for _ in images]


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 24))
    for frame in frames(4):
        writer.write(frame)
    writer.release()
    return resolve_sources(str(path))


def test_a_failed_run_removes_its_unfinished_video(clip, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="model broke"):
        run_inference(Predictor(RuntimeError("model broke"), 3), clip, out, 1, progress=False)
    assert list(out.iterdir()) == []


def test_an_interrupted_run_keeps_a_whole_shorter_video(clip, tmp_path):
    out = tmp_path / "out"
    summary = run_inference(Predictor(KeyboardInterrupt(), 3), clip, out, 1, progress=False)
    assert summary.interrupted and summary.frames == 2
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "images.json", "predictions.json"]
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 2
    capture.release()


def test_a_failed_metrics_append_is_cut_back_to_whole_lines(tmp_path, monkeypatch):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    logger.log({"train/loss": 1.0}, 1)
    before = logger.path.read_bytes()
    real_write = os.write

    def half(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise FULL

    with monkeypatch.context() as m:
        m.setattr(os, "write", half)
        with pytest.raises(VisionkitError) as error:
            logger.log({"train/loss": 0.5}, 2)
    assert str(error.value) == f"cannot write {logger.path}: {os.strerror(errno.ENOSPC)}"
    assert logger.path.read_bytes() == before
    inject(monkeypatch, "rename")  # a resume's cut-back: the old log stays, never an empty one
    with pytest.raises(VisionkitError):
        MetricsLogger(tmp_path, tensorboard=False, resume_from=1)
    assert logger.path.read_bytes() == before and sorted(tmp_path.iterdir()) == [logger.path]


def run(tool: str, argv: list[str], capsys) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exit_:
        run_cli(load_script(f"tools/{tool}.py").main, argv)
    return exit_.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("where", ["write", "rename"])
def test_tools_exit_1_in_one_line_and_keep_the_old_file(where, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"iter": 1, "train/loss": 1.0}\n')
    cases = {  # tool: (its output, arguments, the file written first, which the error names)
        "summary": (tmp_path / "s.json", ["--backbone", "lenet", "--json"], tmp_path / "s.json"),
        "plot_logs": (tmp_path / "chart.png", [str(run_dir), "--output"], tmp_path / "chart.csv"),
    }
    for tool, (dest, args, first) in cases.items():
        dest.write_bytes(OLD)
        with monkeypatch.context() as m:
            inject(m, where)
            code, err = run(tool, [*args, str(dest)], capsys)
        assert code == 1 and err == [f"error: cannot write {first}: {os.strerror(errno.ENOSPC)}"]
        assert dest.read_bytes() == OLD and not list(tmp_path.glob(f".*{TEMP_MARK}*"))


def test_a_generated_shapes_split_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(cv2, "imwrite", lambda *args, **kwargs: False)  # what OpenCV does on a full disk
        with pytest.raises(VisionkitError, match="OpenCV could not write val_000000.jpg$"):
            ensure_shapes(tmp_path, "val", num_images=3, image_size=64)
    assert list((tmp_path / "shapes").iterdir()) == []
    assert len(list(ensure_shapes(tmp_path, "val", 3, 64)["images"].iterdir())) == 3
