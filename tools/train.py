"""Train a model from a config file."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from visionkit.config import load_config
from visionkit.config.inputs import config_inputs
from visionkit.io.outputs import check_outputs
from visionkit.utils.cli import HelpFormatter, run_cli, show_progress

EXAMPLES = """\
Train any config; outputs (config.yaml, last.pth, best.pth, metrics.jsonl, tensorboard/) go to
--output-dir (default: train.output_dir, else runs/<config name>).

examples:
  python tools/train.py --config configs/yolo_v1_shapes.yaml        # no data needed
  python tools/train.py --config configs/yolo_v1_shapes.yaml train.epochs=3 data.batch_size=8
  python tools/train.py --config configs/yolo_v1.yaml data.train.root=/data/VOCdevkit
  python tools/train.py --config configs/yolo_v1_shapes.yaml --resume   # continue a run
  python tools/train.py --config configs/yolo_v1.yaml --init-from runs/yolo_v1_shapes/best.pth
      # fine-tuning: tensors of matching name and shape loaded, the others (classifier) fresh
  torchrun --nproc_per_node 4 tools/train.py --config configs/yolo_v1.yaml   # 4 GPUs (DDP)

SIGINT (Ctrl-C) or SIGTERM: last.pth is written at the next optimizer step and the run exits with
130 or 143; --resume continues from that batch. Multi-GPU and multi-node: docs/distributed.md.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="train.py", description=EXAMPLES, formatter_class=HelpFormatter
    )
    p.add_argument("--config", required=True, help="YAML config file")
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
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.epochs=3")
    return p.parse_args(argv)


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


if __name__ == "__main__":
    run_cli(main)
