"""``visionkit train``: train a model from a config (a packaged name or a YAML file)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from visionkit.config import load_config
from visionkit.config.inputs import config_inputs
from visionkit.io.outputs import check_outputs
from visionkit.utils.cli import HelpFormatter, show_progress, take_positionals

EXAMPLES = """\
Train a config: a packaged one by name (`visionkit configs` lists them) or a YAML file of yours
(`base: yolo_v1_shapes.yaml` and the keys you change). Outputs (config.yaml, last.pth, best.pth,
metrics.jsonl, tensorboard/, plots/) go to --output-dir (default: train.output_dir, else
runs/<config name>, from the current folder).

examples:
  visionkit train yolo_v1_shapes                          # no data needed
  visionkit train yolo_v1_shapes train.epochs=3 data.batch_size=8
  visionkit train my_config.yaml --output-dir runs/mine
  visionkit train yolo_v1 data.train.root=/data/VOCdevkit data.val.root=/data/VOCdevkit
  visionkit train yolo_v1_shapes --resume                 # continue an interrupted run
  visionkit train yolo_v1 --init-from runs/yolo_v1_shapes/best.pth
      # fine-tuning: tensors of matching name and shape loaded, the others (classifier) fresh
  torchrun --nproc_per_node 4 -m visionkit train yolo_v1  # 4 GPUs (DDP)

SIGINT (Ctrl-C) or SIGTERM: last.pth is written at the next optimizer step and the run exits with
130 or 143; --resume continues from that batch. Multi-GPU and multi-node: docs/distributed.md.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="visionkit train", description=EXAMPLES, formatter_class=HelpFormatter
    )
    p.add_argument(
        "--config", help="a packaged config's name or a YAML file (or the first positional word)"
    )
    p.add_argument("--output-dir", help="where checkpoints and logs go")
    p.add_argument("--resume", action="store_true", help="continue from <output-dir>/last.pth")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides train.device)")
    p.add_argument(
        "--init-from",
        metavar="PATH",
        help="initialize from a checkpoint's tensors of matching name and shape, e.g. of "
        "another number of classes (overrides model.init_weights)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (they are drawn only when stderr is a terminal)",
    )
    p.add_argument(
        "words", nargs="*", metavar="CONFIG key=value", help="the config, then dotted overrides"
    )
    args = p.parse_intermixed_args(argv)
    found, args.overrides = take_positionals(args.words, {"config": args.config}, "train")
    if found["config"] is None:
        p.error("give a config: visionkit train yolo_v1_shapes (`visionkit configs` lists them)")
    args.config = found["config"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"train.device={args.device}")
    cfg = load_config(args.config, overrides)
    if args.init_from:
        cfg.model.init_weights = args.init_from
    out = args.output_dir or cfg.train.output_dir or str(Path("runs") / Path(args.config).stem)
    cfg.train.output_dir = out
    from visionkit.checkpoints.store import weights_inputs

    init = "--init-from" if args.init_from else "model.init_weights"
    check_outputs(
        {**config_inputs(args.config, cfg, ["train", "val"]),
         init: weights_inputs(cfg.model.init_weights or None)},
        folders={"--output-dir" if args.output_dir else "train.output_dir": out},
    )  # fmt: skip
    from visionkit.engine.distributed import close_distributed
    from visionkit.engine.signals import TrainingInterrupted
    from visionkit.engine.trainer import Trainer

    try:
        Trainer(cfg, out, resume=args.resume, progress=show_progress(args.no_progress)).train()
    except TrainingInterrupted as e:
        if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from rank 0
            print(e, file=sys.stderr)
        return e.exit_code
    finally:
        close_distributed()
    return 0
