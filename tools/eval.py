"""Evaluate a checkpoint (or a saved predictions JSON) on a config's validation data."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from visionkit.config import load_config
from visionkit.errors import ConfigError, DataError
from visionkit.utils.cli import HelpFormatter, run_cli

EXAMPLES = """\
Compute COCO box AP (the 12 COCOeval numbers, in percent, and per-class AP) on data.val, or for
segmentation models (fcn) mean IoU, frequency-weighted IoU, mean and pixel accuracy, per-class IoU.

examples:
  python tools/eval.py --config configs/yolo_v1_shapes.yaml --weights runs/yolo_v1_shapes/best.pth
  python tools/eval.py --config configs/yolo_v1_shapes.yaml --weights W --out metrics.json \\
      --save-predictions predictions.json
  python tools/eval.py --config configs/yolo_v1_shapes.yaml --predictions predictions.json
  python tools/eval.py --config configs/fcn8s_shapes.yaml --weights runs/fcn8s_shapes/best.pth
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="eval.py", description=EXAMPLES, formatter_class=HelpFormatter)
    p.add_argument("--config", required=True, help="YAML config file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="checkpoint to evaluate (last.pth/best.pth)")
    src.add_argument("--predictions", help="a COCO results JSON to score instead of a model")
    p.add_argument("--out", help="write the metrics as JSON here ({'bbox': {'AP': ..}})")
    p.add_argument("--save-predictions", help="write the COCO results JSON here")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides train.device)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.val.root=...")
    return p.parse_args(argv)


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """A two-column table of every metric."""
    rows = [(f"{task}/{k}", v) for task, d in metrics.items() for k, v in d.items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {'nan' if math.isnan(v) else f'{v:6.2f}'}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides) + ([f"train.device={args.device}"] if args.device else [])
    cfg = load_config(args.config, overrides)

    from visionkit.data import build_dataloader, build_dataset
    from visionkit.engine.checkpoint import load_checkpoint, load_model_weights
    from visionkit.engine.inference import evaluate
    from visionkit.engine.trainer import place_model, select_device
    from visionkit.evaluation import build_evaluator, coco_box_metrics
    from visionkit.models import build_model, model_task

    task = model_task(cfg.model.name)
    if task != "detection" and (args.predictions or args.save_predictions):
        raise ConfigError(
            f"--predictions/--save-predictions hold COCO box results; '{cfg.model.name}' is a "
            f"{task} model"
        )
    dataset = build_dataset(
        cfg.data.val, cfg.data.augment, tuple(cfg.model.input_size), train=False, task=task
    )
    if args.predictions:
        path = Path(args.predictions)
        try:
            results = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"cannot read predictions {path}: {type(e).__name__}") from None
        metrics = {"bbox": coco_box_metrics(dataset.coco, results, dataset.ids)}
    else:
        device = select_device(cfg.train.device)
        model = build_model(cfg.model)
        load_model_weights(model, load_checkpoint(args.weights), cfg.model.name, args.weights)
        model = place_model(model, device, cfg.train.channels_last)
        loader = build_dataloader(dataset, cfg.eval.batch_size, cfg.data.num_workers, shuffle=False)
        evaluator = build_evaluator(task, dataset)
        metrics = evaluate(model, loader, evaluator, device, progress=not args.no_progress)
        results = evaluator.results if task == "detection" else []
    print(format_table(metrics))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(metrics, indent=2))
    if args.save_predictions:
        Path(args.save_predictions).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save_predictions).write_text(json.dumps(results))
    if task == "sem_seg":
        m = metrics["sem_seg"]
        print(
            f"evaluated {len(dataset)} images: mIoU {m['mIoU']:.2f} fwIoU {m['fwIoU']:.2f} "
            f"mACC {m['mACC']:.2f} pACC {m['pACC']:.2f}"
        )
        return 0
    b = metrics["bbox"]
    print(
        f"evaluated {len(dataset)} images: AP {b['AP']:.2f} AP50 {b['AP50']:.2f} AP75 {b['AP75']:.2f}"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
