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
METRICS = ("coco", "segm", "voc07", "voc", "all")
VOC_METRICS = ("voc07", "voc")
COCO_BACKENDS = ("faster-coco-eval", "pycocotools")
PRECISIONS = ("auto", "float32", "bf16", "fp16")  # visionkit.inference.options.PRECISIONS
EXAMPLES = """\
Compute box AP on data.val: --metric coco (the 12 COCOeval numbers, in percent, and per-class AP),
voc07 / voc (Pascal VOC per-class AP and mAP at IoU 0.5, 11-point / area under the curve;
difficult objects neither counted nor penalized) or all. Instance segmentation models (mask_rcnn):
coco and all give box and mask AP (sections bbox and segm, COCOeval on the masks' RLEs), segm mask
AP alone; their predictions JSON holds each mask as an RLE "segmentation". For semantic
segmentation models (fcn): mean IoU, frequency-weighted IoU, mean and pixel accuracy, per-class
IoU, and boundary quality: mean IoU and pixel accuracy within 3 px of a ground-truth label
boundary (bIoU@3, bACC@3; the trimap measure).
Every AP, AR, IoU and accuracy is a percentage on COCO's 0-100 scale, as detectron2 prints them
(printed with %: AP50 81.51 % is 0.8151 as a fraction); speed in ms per image. --out's JSON
keeps the plain numbers and says so in its "units" entry.

WEIGHTS is a run folder (its best.pth, else last.pth), a checkpoint, an .onnx file or
torchvision:NAME; the model and the data come from the config it holds (--config: only for a bare
state_dict, torchvision:NAME, or --predictions; its data settings may differ from the run's).
The model predicts in float32 (the numbers training reports), whatever visionkit predict's
default; --precision auto scores what visionkit predict gives (bf16 autocast where native).

examples:
  visionkit eval runs/yolo_v1_shapes
  visionkit eval runs/yolo_v1_shapes --out metrics.json --save-predictions predictions.json
  visionkit eval --config yolo_v1_shapes --predictions predictions.json --metric voc07
  visionkit eval runs/yolo_v1 --metric all --out metrics.json
  visionkit eval runs/mask_rcnn_shapes --metric segm --save-predictions masks.json
  visionkit eval --config mask_rcnn_shapes --predictions masks.json
  visionkit eval runs/fcn8s_shapes
  visionkit eval runs/yolo_v1_shapes --plots plots/
      # PNGs: pr_curves.png, confusion_matrix.png (+ .csv); mask_rcnn: also pr_curves_segm.png,
      # confusion_matrix_segm.png (+ .csv); fcn: pixel_confusion.png
  visionkit eval runs/yolo_v1_shapes --plots plots/ --conf-thresh 0.5 --conf-iou 0.6
  visionkit eval runs/yolo_v1_shapes --precision auto   # as visionkit predict runs it
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
        help="COCOeval (instance models: boxes and masks), mask COCOeval alone (instance models), "
        "VOC2007 11-point AP, VOC2010+ area AP, or all (detection: the three box metrics; "
        "instance models: boxes and masks)",
    )
    p.add_argument(
        "--coco-backend",
        choices=COCO_BACKENDS,
        help="COCOeval's implementation (overrides eval.coco_backend; default faster-coco-eval: "
        "pycocotools' numbers, faster)",
    )
    p.add_argument(
        "--out",
        help="write the metrics as JSON here ({'bbox': {'AP': ..}, 'voc07': {'mAP': ..}, "
        "'units': {'bbox': 'percent', ...}}: AP, IoU and accuracy in percent, 0-100)",
    )
    p.add_argument("--save-predictions", help="write the COCO results JSON here")
    p.add_argument(
        "--plots",
        metavar="DIR",
        help="write plots here: precision-recall curves (COCO metric) and the detection "
        "confusion matrix (PNG and CSV; --conf-thresh, --conf-iou), for instance models also "
        "those of the masks (*_segm), or the pixel confusion matrix",
    )
    p.add_argument(
        "--conf-thresh",
        type=float,
        metavar="SCORE",
        help="--plots' detection confusion matrix counts detections scoring at least this "
        "(overrides eval.confusion_score_thresh; default 0.25)",
    )
    p.add_argument(
        "--conf-iou",
        type=float,
        metavar="IOU",
        help="--plots' detection confusion matrix matches a detection to an object at IoU >= "
        "this (overrides eval.confusion_iou_thresh; default 0.5)",
    )
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides train.device)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="the model's precision: float32 (default); auto: bf16 autocast where the device "
        "computes bfloat16 natively, else float32, as visionkit predict; bf16; fp16 (CUDA "
        "only). An .onnx file runs its exported float32 graph: auto or float32",
    )
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
    if args.predictions is not None and args.precision is not None:
        p.error("--precision sets the model's; --predictions are scored as they were saved")
    args.precision = args.precision or "float32"
    if args.plots is None and (args.conf_thresh is not None or args.conf_iou is not None):
        p.error("--conf-thresh and --conf-iou set --plots' confusion matrix: give --plots too")
    return args


def _cell(value: float, unit: str | None) -> str:
    """A right-aligned number of a table and its unit (``" 81.51 %"``, ``"  12.30 ms"``)."""
    from visionkit.evaluation.units import SYMBOLS

    if math.isnan(value):  # an undefined AP: under the other numbers, no unit
        return f"{'nan':>6}" + " " * (len(SYMBOLS[unit]) + 1 if unit else 0)
    return f"{value:6.2f} {SYMBOLS[unit]}" if unit else f"{value:6.2f}"


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """A two-column table of every metric, each number with its unit (``%``: COCO's 0-100
    scale; ``ms``); the VOC sections as one table of per-class AP (rows) by metric (columns),
    mAP last, in percent."""
    from visionkit.evaluation.units import section_unit

    voc = [m for m in VOC_METRICS if m in metrics]
    rows = [(f"{t}/{k}", v, section_unit(t)) for t, d in metrics.items() if t not in voc
            for k, v in d.items()]  # fmt: skip
    lines = []
    if rows:
        width = max(len(k) for k, _, _ in rows)
        lines += [f"{k:<{width}}  {_cell(v, unit)}".rstrip() for k, v, unit in rows]
    if voc:
        keys = [k for k in metrics[voc[0]] if k != "mAP"] + ["mAP"]
        names = [k.removeprefix("AP-") for k in keys]
        width = max(len(n) for n in ["class", *names])
        side = {m: max(len(f"{m} (%)"), len("100.00 %")) for m in voc}
        lines.append(f"{'class':<{width}}" + "".join(f"  {m + ' (%)':>{side[m]}}" for m in voc))
        for key, name in zip(keys, names, strict=True):
            cells = (f"  {_cell(metrics[m][key], 'percent'):>{side[m]}}" for m in voc)
            lines.append((f"{name:<{width}}" + "".join(cells)).rstrip())
    return "\n".join(lines)


def summary(metrics: dict[str, dict[str, float]]) -> str:
    """The headline numbers of each box (and mask) metric on one line, in percent
    (``AP 47.49 % ...``, ``mask AP 41.02 % ...``)."""
    from visionkit.evaluation.units import percent

    parts = []
    for section, prefix in (("bbox", ""), ("segm", "mask ")):
        if section in metrics:
            m = metrics[section]
            parts.append(prefix + " ".join(f"{k} {percent(m[k])}" for k in ("AP", "AP50", "AP75")))
    parts += [f"{m} mAP {percent(metrics[m]['mAP'])}" for m in VOC_METRICS if m in metrics]
    return ", ".join(parts)


def segmentation_summary(m: dict[str, float]) -> str:
    """The headline numbers of a ``sem_seg`` section on one line, in percent
    (``mIoU 61.20 % fwIoU ... bIoU@3 40.10 %``)."""
    from visionkit.evaluation.units import percent

    keys = ["mIoU", "fwIoU", "mACC", "pACC", *(k for k in m if k.startswith("bIoU@"))]
    return " ".join(f"{k} {percent(m[k])}" for k in keys)


def _check_task(task: str, model: str, args: argparse.Namespace) -> None:
    """Options a model's task has no use for, a ConfigError: box options (saved COCO results,
    ``--metric``) for a semantic segmentation model, ``--metric segm`` for a detector."""
    if task == "sem_seg" and (args.predictions or args.save_predictions):
        raise ConfigError(
            f"--predictions/--save-predictions hold COCO box results; '{model}' is a {task} model"
        )
    if task == "sem_seg" and args.metric != "coco":
        raise ConfigError(f"--metric chooses box metrics; '{model}' is a {task} model")
    if task == "detection" and args.metric == "segm":
        raise ConfigError(
            f"--metric segm scores instance masks; '{model}' is a detection model (boxes only)"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides) + ([f"train.device={args.device}"] if args.device else [])
    overrides += [f"eval.coco_backend={args.coco_backend}"] if args.coco_backend else []
    confusion = {"score": args.conf_thresh, "iou": args.conf_iou}  # checked as config values
    overrides += [f"eval.confusion_{k}_thresh={v!r}" for k, v in confusion.items() if v is not None]
    cfg = load_config(args.config, overrides) if args.config else None
    from visionkit.checkpoints.store import weights_inputs

    outputs = {
        "files": {"--out": args.out, "--save-predictions": args.save_predictions},
        "folders": {"--plots": args.plots},
    }
    inputs = {"--weights": weights_inputs(args.weights), "--predictions": args.predictions}
    # before any work; with the checkpoint's own config, its data paths once it is read
    check_outputs({**config_inputs(args.config, cfg, ["val"]), **inputs}, **outputs)

    from visionkit.inference.api import load
    from visionkit.inference.evaluation import evaluate_model, evaluate_predictions, val_dataset
    from visionkit.io.atomic import write_json
    from visionkit.models import model_task

    model = None
    if cfg is not None:  # a --config's box options for a segmentation model: before any loading
        _check_task(model_task(cfg.model.name), cfg.model.name, args)
    if args.weights:  # the checkpoint is the truth about the model (a model.* change: refused)
        model = load(
            args.weights, config=cfg, precision=args.precision,
            overrides=None if cfg else overrides, report=print,
        )  # fmt: skip
        if args.config is None:  # the checkpoint's data paths are inputs too
            check_outputs({**config_inputs(None, model.config, ["val"]), **inputs}, **outputs)
        cfg = model.config
    task = model_task(cfg.model.name)
    _check_task(task, cfg.model.name, args)
    progress = show_progress(args.no_progress)
    dataset = val_dataset(cfg, progress)
    if args.predictions:
        evaluation = evaluate_predictions(
            Path(args.predictions), dataset, args.metric, cfg.eval.coco_backend, task
        )
    else:
        evaluation = evaluate_model(model.predictor, cfg, dataset, args.metric, progress)
    metrics, results, skipped = evaluation.metrics, evaluation.results, evaluation.skipped
    print(format_table(metrics))
    if args.out:
        from visionkit.evaluation.units import units_entry

        # the sections as evaluated, and which unit each one's numbers are in
        write_json(args.out, {**metrics, "units": units_entry(metrics)}, indent=2)
    if args.save_predictions:
        write_json(args.save_predictions, results)
    if args.plots:
        from visionkit.evaluation.plots import write_evaluation_plots

        e = cfg.eval
        files = write_evaluation_plots(
            evaluation.evaluator, args.plots, e.confusion_score_thresh, e.confusion_iou_thresh
        )
        print(f"plots: {', '.join(str(f) for f in files)}")
    images = f"{evaluation.images} images"
    if skipped:
        images += f" ({skipped} unreadable skipped)"
    if "speed" in metrics:
        images += f" (predict {metrics['speed']['ms_per_image']:.1f} ms/image)"
    if task == "sem_seg":
        print(f"evaluated {images}: {segmentation_summary(metrics['sem_seg'])}{warnings_part()}")
        return 0
    print(f"evaluated {images}: {summary(metrics)}{warnings_part()}")
    return 0
