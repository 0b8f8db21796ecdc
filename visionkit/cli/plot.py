"""Overlay several training runs' curves (the loss terms, the learning rate, the main validation
metrics against the epoch) in one PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from visionkit.io.outputs import check_outputs, files_of
from visionkit.utils.cli import HelpFormatter

EXAMPLES = """\
Reads each run folder's metrics.jsonl (as visionkit train writes it) and draws one panel per
loss term (train/loss and up to 8 terms), the learning rate and the main metrics (bbox/AP and
bbox/AP50, voc07/mAP and voc/mAP, sem_seg/mIoU; in percent, COCO's 0-100 scale), a line per
run, markers on lines of at most 20 points. Every point of every quantity, drawn or not (AP75,
AR, fwIoU, ...; per-class numbers left out), goes to a CSV beside the chart (<output
stem>.csv); what was not drawn is named in one line.
Training itself writes its own run's curves to <run>/plots/training_curves.png (and .csv).

examples:
  visionkit plot runs/yolo_v1_shapes --output curves.png
  visionkit plot runs/fcn8s_shapes runs/fcn32s_shapes --output fcn.png \\
      --title "FCN-8s vs FCN-32s on shapes"
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="visionkit plot", description=EXAMPLES, formatter_class=HelpFormatter
    )
    p.add_argument("runs", nargs="+", help="run folders (or metrics.jsonl files)")
    p.add_argument("--output", default="training_curves.png", help="the chart (PNG)")
    p.add_argument("--title", default="", help="the chart's title")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from visionkit.engine.training_curves import plot_training_curves, read_metrics
    from visionkit.evaluation.plots import figure_suffixes

    check_outputs(
        {"a run's file": [f for run in args.runs for f in files_of(run)]},
        files={"--output": args.output, "--output's CSV": Path(args.output).with_suffix(".csv")},
        suffixes={"--output": figure_suffixes()},
    )

    runs = {}
    for run in args.runs:
        path = Path(run)
        name = path.parent.name if path.is_file() else path.name
        runs[name if name not in runs else str(path)] = read_metrics(path)
    print(plot_training_curves(runs, args.output, args.title).line())
    return 0
