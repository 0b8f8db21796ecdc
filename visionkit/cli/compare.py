"""Compare training runs: best accuracy against multiply-adds and parameters, as a chart."""

from __future__ import annotations

import argparse
from pathlib import Path

from visionkit.io.outputs import check_outputs
from visionkit.utils.cli import HelpFormatter

EXAMPLES = """\
For each run folder (config.yaml and metrics.jsonl, as tools/train.py writes them): the best
value of --metric over its evaluations (default: bbox/AP50 for detectors, sem_seg/mIoU for fcn),
and its model's parameter count and multiply-adds (MACs) per image at model.input_size (for
models that keep the aspect ratio: a square image at model.resize.min_size; --input-size sets
it; two-stage detectors' per-region layers on their test-time proposal count). Prints a table
and draws the metric against GMACs, bubble area proportional to parameters.

examples:
  visionkit compare runs/yolo_v1_shapes runs/faster_rcnn_shapes --output compare.png
  visionkit compare runs/a runs/b --metric bbox/AP --output docs/images/ap_vs_macs.png
  visionkit compare runs/fcn8s_shapes runs/fcn32s_shapes --input-size 256 256
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="visionkit compare", description=EXAMPLES, formatter_class=HelpFormatter
    )
    p.add_argument("runs", nargs="+", help="run folders (config.yaml, metrics.jsonl)")
    p.add_argument("--metric", help="a metrics.jsonl key, e.g. bbox/AP or sem_seg/mIoU")
    p.add_argument("--output", default="compare.png", help="the chart (PNG)")
    p.add_argument("--title", default="", help="the chart's title")
    p.add_argument(
        "--input-size", nargs=2, type=int, metavar=("H", "W"), help="image size for the MACs"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from visionkit.analysis.compare import format_table, plot_runs, summarize_runs
    from visionkit.evaluation.plots import figure_suffixes

    read = [Path(run) / name for run in args.runs for name in ("config.yaml", "metrics.jsonl")]
    check_outputs(
        {"a run's file": read}, files={"--output": args.output},
        suffixes={"--output": figure_suffixes()},
    )  # fmt: skip
    summaries = summarize_runs(args.runs, args.metric, args.input_size)
    print(format_table(summaries))
    plot_runs(summaries, args.output, args.title)
    print(f"chart: {args.output}")
    return 0
