"""``visionkit eval``: score a run, a checkpoint or a saved predictions JSON on the validation data."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from visionkit.config import load_config
from visionkit.config.inputs import config_inputs
from visionkit.errors import ConfigError
from visionkit.io.outputs import check_outputs
from visionkit.utils.cli import HelpFormatter, show_progress, take_positionals
from visionkit.utils.warn import warnings_part

# visionkit.evaluation's DETECTION_METRICS, VOC_METRICS and COCO_BACKENDS, repeated so that --help
# needs no torch
METRICS = ("coco", "voc07", "voc", "all")
VOC_METRICS = ("voc07", "voc")
COCO_BACKENDS = ("faster-coco-eval", "pycocotools")
EXAMPLES = """\
Compute box AP on data.val: --metric coco (the 12 COCOeval numbers, in percent, and per-class AP),
voc07 / voc (Pascal VOC per-class AP and mAP at IoU 0.5, 11-point / area under the curve;
difficult objects neither counted nor penalized) or all. For segmentation models (fcn): mean IoU,
frequency-weighted IoU, mean and pixel accuracy, per-class IoU, and boundary quality: mean IoU and
pixel accuracy within 3 px of a ground-truth label boundary (bIoU@3, bACC@3; the trimap measure).

WEIGHTS is a run folder (its best.pth, else last.pth), a checkpoint, an .onnx file or
torchvision:NAME; the model and the data come from the config it holds (--config: only for a bare
state_dict, torchvision:NAME, or --predictions; its data settings may differ from the run's).

examples:
  visionkit eval runs/yolo_v1_shapes
  visionkit eval runs/yolo_v1_shapes --out metrics.json --save-predictions predictions.json
  visionkit eval --config yolo_v1_shapes --predictions predictions.json --metric voc07
  visionkit eval runs/yolo_v1 --metric all --out metrics.json
  visionkit eval runs/fcn8s_shapes
  visionkit eval runs/yolo_v1_shapes --plots plots/
      # PNGs: pr_curves.png, confusion_matrix.png (+ .csv); fcn: pixel_confusion.png
  visionkit eval torchvision:fasterrcnn_resnet50_fpn --config faster_rcnn_r50_fpn_coco
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="visionkit eval", description=EXAMPLES, formatter_class=HelpFormatter
    )
    p.add_argument(
        "--config",
        help="a packaged config's name or a YAML file (default: the one the checkpoint holds)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--weights",
        help="run folder, checkpoint, .onnx or torchvision:NAME (or the first positional word)",
    )
    src.add_argument("--predictions", help="a COCO results JSON to score instead of a model")
    p.add_argument(
        "--metric",
        choices=METRICS,
        default="coco",
        help="box metric: COCOeval, VOC2007 11-point AP, VOC2010+ area AP, or all three",
    )
    p.add_argument(
        "--coco-backend",
        choices=COCO_BACKENDS,
        help="COCOeval's implementation (overrides eval.coco_backend; default faster-coco-eval: "
        "pycocotools' numbers, faster)",
    )
    p.add_argument(
        "--out", help="write the metrics as JSON here ({'bbox': {'AP': ..}, 'voc07': {'mAP': ..}})"
    )
    p.add_argument("--save-predictions", help="write the COCO results JSON here")
    p.add_argument(
        "--plots",
        metavar="DIR",
        help="write plots here: precision-recall curves (COCO metric) and the detection "
        "confusion matrix (IoU 0.5, score >= 0.25; PNG and CSV), or the pixel confusion matrix",
    )
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides train.device)")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (they are drawn only when stderr is a terminal)",
    )
    p.add_argument(
        "words", nargs="*", metavar="WEIGHTS key=value", help="the weights, then dotted overrides"
    )
    args = p.parse_intermixed_args(argv)
    wanted = {"weights": args.weights} if args.predictions is None else {}
    found, args.overrides = take_positionals(args.words, wanted, "eval")
    args.weights = found.get("weights")
    if args.weights is None and args.predictions is None:
        p.error("give the weights (a run folder, a checkpoint, ...) or --predictions")
    if args.predictions is not None and args.config is None:
        p.error("--predictions needs --config: the data it is scored on")
    return args


def _number(v: float) -> str:
    return f"{'nan':>6}" if math.isnan(v) else f"{v:6.2f}"


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """A two-column table of every metric; the VOC sections as one table of per-class AP (rows)
    by metric (columns), mAP last."""
    voc = [m for m in VOC_METRICS if m in metrics]
    rows = [(f"{t}/{k}", v) for t, d in metrics.items() if t not in voc for k, v in d.items()]
    lines = []
    if rows:
        width = max(len(k) for k, _ in rows)
        lines += [f"{k:<{width}}  {_number(v)}" for k, v in rows]
    if voc:
        keys = [k for k in metrics[voc[0]] if k != "mAP"] + ["mAP"]
        names = [k.removeprefix("AP-") for k in keys]
        width = max(len(n) for n in ["class", *names])
        lines.append(f"{'class':<{width}}" + "".join(f"  {m:>6}" for m in voc))
        for key, name in zip(keys, names, strict=True):
            lines.append(f"{name:<{width}}" + "".join(f"  {_number(metrics[m][key])}" for m in voc))
    return "\n".join(lines)


def summary(metrics: dict[str, dict[str, float]]) -> str:
    """The headline numbers of each box metric on one line."""
    parts = []
    if "bbox" in metrics:
        b = metrics["bbox"]
        parts.append(f"AP {b['AP']:.2f} AP50 {b['AP50']:.2f} AP75 {b['AP75']:.2f}")
    parts += [f"{m} mAP {metrics[m]['mAP']:.2f}" for m in VOC_METRICS if m in metrics]
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides) + ([f"train.device={args.device}"] if args.device else [])
    overrides += [f"eval.coco_backend={args.coco_backend}"] if args.coco_backend else []
    cfg = load_config(args.config, overrides) if args.config else None
    from visionkit.checkpoints.store import weights_inputs

    outputs = {
        "files": {"--out": args.out, "--save-predictions": args.save_predictions},
        "folders": {"--plots": args.plots},
    }
    inputs = {"--weights": weights_inputs(args.weights), "--predictions": args.predictions}
    check_outputs({**config_inputs(args.config), **inputs}, **outputs)

    from visionkit.inference.api import load
    from visionkit.inference.evaluation import evaluate_model, evaluate_predictions, val_dataset
    from visionkit.io.atomic import write_json
    from visionkit.models import model_task

    model = None
    if args.weights:  # the checkpoint is the truth about the model (a model.* change: refused)
        model = load(args.weights, config=cfg, overrides=None if cfg else overrides, report=print)
        cfg = model.config
    check_outputs({**config_inputs(args.config, cfg, ["val"]), **inputs}, **outputs)
    task = model_task(cfg.model.name)
    if task != "detection" and (args.predictions or args.save_predictions):
        raise ConfigError(
            f"--predictions/--save-predictions hold COCO box results; '{cfg.model.name}' is a "
            f"{task} model"
        )
    if task != "detection" and args.metric != "coco":
        raise ConfigError(f"--metric chooses box metrics; '{cfg.model.name}' is a {task} model")
    dataset = val_dataset(cfg)
    if args.predictions:
        evaluation = evaluate_predictions(
            Path(args.predictions), dataset, args.metric, cfg.eval.coco_backend
        )
    else:
        evaluation = evaluate_model(
            model.predictor, cfg, dataset, args.metric, show_progress(args.no_progress)
        )
    metrics, results, skipped = evaluation.metrics, evaluation.results, evaluation.skipped
    print(format_table(metrics))
    if args.out:
        write_json(args.out, metrics, indent=2)
    if args.save_predictions:
        write_json(args.save_predictions, results)
    if args.plots:
        from visionkit.evaluation.plots import write_evaluation_plots

        files = write_evaluation_plots(evaluation.evaluator, args.plots)
        print(f"plots: {', '.join(str(f) for f in files)}")
    images = f"{evaluation.images} images"
    if skipped:
        images += f" ({skipped} unreadable skipped)"
    if "speed" in metrics:
        images += f" (predict {metrics['speed']['ms_per_image']:.1f} ms/image)"
    if task == "sem_seg":
        m = metrics["sem_seg"]
        band = "".join(f" {k} {v:.2f}" for k, v in m.items() if k.startswith("bIoU@"))
        print(
            f"evaluated {images}: mIoU {m['mIoU']:.2f} fwIoU {m['fwIoU']:.2f} "
            f"mACC {m['mACC']:.2f} pACC {m['pACC']:.2f}{band}{warnings_part()}"
        )
        return 0
    print(f"evaluated {images}: {summary(metrics)}{warnings_part()}")
    return 0
