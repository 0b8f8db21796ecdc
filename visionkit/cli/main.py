"""``visionkit <job> ...``: the console command (``[project.scripts]`` in pyproject.toml).

Each job is a module of :mod:`visionkit.cli` with ``main(argv) -> int``, imported only when it
runs, so ``visionkit --help`` and ``visionkit <job> --help`` answer without loading torch.
"""

from __future__ import annotations

import importlib
import sys

from visionkit.io.heap import keep_large_blocks
from visionkit.utils.cli import run_cli

# job -> (module under visionkit.cli, what it does)
JOBS: dict[str, tuple[str, str]] = {
    "train": ("train", "train a model from a config (a packaged name or a YAML file)"),
    "eval": ("eval", "COCO AP, VOC AP or mIoU of a run, a checkpoint or a predictions file"),
    "predict": ("predict", "run a model on images, folders, videos or a webcam"),
    "export": ("export", "write a model as one ONNX graph (NMS inside)"),
    "configs": ("configs", "list the packaged configs with their model, data and figures"),
    "browse": ("browse", "draw a dataset's ground truth and print its statistics"),
    "convert": ("convert", "write a dataset in COCO, VOC or YOLO format"),
    "plot": ("plot", "overlay the training curves of runs"),
    "compare": ("compare", "accuracy against compute of runs: a table and a chart"),
    "summary": ("summary", "layers, shapes, parameters, MACs and receptive fields"),
    "visualize": ("visualize", "first-layer filters and feature maps"),
    "train-svms": ("train_svms", "R-CNN's per-class SVMs on a fine-tuned run"),
    "convert-checkpoint": ("convert_checkpoint", "rewrite an old pickled checkpoint, once"),
}

USAGE = """\
usage: visionkit <job> [arguments]    (visionkit <job> --help: the job's flags and examples)

A PyTorch toolkit for object detection and semantic segmentation.

jobs:
{jobs}

examples:
  visionkit configs                                    # what can be trained, and how well
  visionkit train yolo_v1_shapes                       # no data needed: runs/yolo_v1_shapes
  visionkit eval runs/yolo_v1_shapes
  visionkit predict runs/yolo_v1_shapes --source photos/
  visionkit export runs/yolo_v1_shapes model.onnx
"""


def usage() -> str:
    """The top-level help: every job with one line."""
    width = max(len(j) for j in JOBS)
    return USAGE.format(jobs="\n".join(f"  {j:<{width}}  {d}" for j, (_, d) in JOBS.items()))


def dispatch(argv: list[str] | None = None) -> int:
    """Run the job ``argv[0]`` names with the rest of ``argv``; the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from importlib.metadata import version

        print(f"visionkit {version('visionkit')}")
        return 0
    job = argv[0]
    if job not in JOBS:
        import difflib

        close = difflib.get_close_matches(job, list(JOBS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"error: unknown job {job!r}{hint}; `visionkit --help` lists them", file=sys.stderr)
        return 2
    module = importlib.import_module(f"visionkit.cli.{JOBS[job][0]}")
    keep_large_blocks()  # a job's tensors reuse freed memory (io/heap.py)
    return module.main(argv[1:])


def main() -> None:
    """The console entry point: one-line errors, the job's exit code."""
    run_cli(dispatch)
