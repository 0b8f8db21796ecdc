"""``visionkit export``: a trained model as one ONNX graph, with normalization, decoding and NMS
inside."""

from __future__ import annotations

import argparse
from pathlib import Path

from visionkit.config import load_config
from visionkit.config.inputs import config_inputs
from visionkit.export.graphs import INPUT_DTYPES
from visionkit.export.onnx import DEFAULT_OPSET
from visionkit.io.outputs import check_outputs
from visionkit.utils.cli import HelpFormatter, take_positionals

EXAMPLES = """\
Write a checkpoint's model as one ONNX graph: images in (a batch already resized and padded to
the model's input size: visionkit.export.OnnxPredictor does that from the file alone), final
detections out (boxes in input pixels, scores, labels, batch_index; FCN: logits and the sem_seg
label map). The resolved config, class names, category ids and input format are stored in the
file's metadata. Dynamic batch; dynamic height and width for every model but YOLOv1. Fast R-CNN,
SPPNet and R-CNN take the proposals as an input (batch index + xyxy in input pixels).

WEIGHTS is a run folder (its best.pth, else last.pth), a checkpoint or torchvision:NAME. The
model is built from the config the checkpoint holds (--config: only for a bare state_dict or
torchvision:NAME); a --config or override that changes a model.* setting is refused,
except test-time ones (score and NMS thresholds, detection caps), which the graph then bakes in.

README.md's "Deploying the ONNX file" states the graph's contract (inputs, outputs, dtypes,
value ranges) with an onnxruntime example.

examples:
  visionkit export runs/yolo_v1_shapes yolo_v1_shapes.onnx
  visionkit export runs/faster_rcnn_shapes m.onnx --input-dtype uint8 --opset 18
  visionkit export runs/faster_rcnn_shapes m.onnx model.roi_head.score_thresh=0.1
  visionkit export faster_rcnn_r50_fpn_coco.yaml --weights torchvision:fasterrcnn_resnet50_fpn \
      --output frcnn.onnx    # hmm
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="visionkit export", description=EXAMPLES, formatter_class=HelpFormatter
    )
    p.add_argument(
        "--config",
        help="a packaged config's name or a YAML file (default: the one the checkpoint holds; "
        "needed for a bare state_dict or torchvision:NAME)",
    )
    p.add_argument(
        "--weights",
        help="run folder, checkpoint or torchvision:NAME (or the first positional word)",
    )
    p.add_argument("--output", help="the .onnx file to write (or the second positional word)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (16 or later)")
    p.add_argument(
        "--input-dtype",
        choices=INPUT_DTYPES,
        default="float32",
        help="images as float32 RGB in [0, 1] or uint8 RGB in 0..255",
    )
    p.add_argument(
        "--static-size",
        action="store_true",
        help="fix the images' height and width to the traced ones (YOLOv1 always is)",
    )
    p.add_argument(
        "words",
        nargs="*",
        metavar="WEIGHTS OUTPUT key=value",
        help="the weights, the .onnx file, then dotted overrides (model.yolo.score_thresh=0.05)",
    )
    args = p.parse_intermixed_args(argv)
    wanted = {"weights": args.weights, "output": args.output}
    found, args.overrides = take_positionals(args.words, wanted, "export")
    if found["weights"] is None or found["output"] is None:
        p.error("give the weights and the .onnx file: visionkit export runs/NAME model.onnx")
    args.weights, args.output = found["weights"], found["output"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = [*args.overrides, "train.device=cpu"]
    cfg = load_config(args.config, overrides) if args.config else None
    output = Path(args.output)
    from visionkit.checkpoints.store import weights_inputs

    check_outputs(
        {**config_inputs(args.config), "--weights": weights_inputs(args.weights)},
        files={"--output": output},
        suffixes={"--output": (".onnx",)},  # what visionkit.load recognizes as ONNX
    )

    from visionkit.inference.api import load

    # the checkpoint is the truth about the model: a model.* change from it is refused
    model = load(args.weights, config=cfg, overrides=None if cfg else overrides, report=print)
    model.export(
        output,
        opset=args.opset,
        input_dtype=args.input_dtype,
        dynamic_size=False if args.static_size else None,
    )
    size = output.stat().st_size / 2**20
    print(f"exported {model.config.model.name} to {output} ({size:.1f} MiB, opset {args.opset})")
    return 0
