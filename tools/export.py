"""Export a trained model to ONNX, with normalization, decoding and NMS inside the graph."""

from __future__ import annotations

import argparse
from pathlib import Path

from visionkit.config import load_config
from visionkit.config.inputs import config_inputs
from visionkit.export.graphs import INPUT_DTYPES
from visionkit.export.onnx import DEFAULT_OPSET
from visionkit.io.outputs import check_outputs
from visionkit.utils.cli import HelpFormatter, run_cli

EXAMPLES = """\
Write a checkpoint's model as one ONNX graph: images in (a batch already resized and padded to
the model's input size: visionkit.export.OnnxPredictor does that from the file alone), final
detections out (boxes in input pixels, scores, labels, batch_index; FCN: logits and the sem_seg
label map). The resolved config, class names, category ids and input format are stored in the
file's metadata. Dynamic batch; dynamic height and width for every model but YOLOv1. Fast R-CNN,
SPPNet and R-CNN take the proposals as an input (batch index + xyxy in input pixels).

The model is built from the config the checkpoint holds (--config: only for a bare state_dict,
or for its data settings); a --config or override that changes a model.* setting is refused,
except test-time ones (score and NMS thresholds, detection caps), which the graph then bakes in.

examples:
  python tools/export.py --weights runs/yolo_v1_shapes/best.pth --output yolo_v1_shapes.onnx
  python tools/export.py --config configs/faster_rcnn_shapes.yaml --weights W --output m.onnx \\
      --input-dtype uint8 --opset 18
  python tools/export.py --weights W --output m.onnx model.roi_head.score_thresh=0.1
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="export.py", description=EXAMPLES, formatter_class=HelpFormatter
    )
    p.add_argument(
        "--config",
        help="YAML config file the model was trained with (default: the one the checkpoint "
        "holds; needed for a bare state_dict)",
    )
    p.add_argument("--weights", required=True, help="checkpoint (last.pth/best.pth)")
    p.add_argument("--output", required=True, help="the .onnx file to write")
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
        "overrides", nargs="*", help="dotted config overrides, e.g. model.yolo.score_thresh=0.05"
    )
    return p.parse_args(argv)


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

    import visionkit

    # the checkpoint is the truth about the model: a model.* change from it is refused
    model = visionkit.load(
        args.weights, config=cfg, overrides=None if cfg else overrides, report=print
    )
    model.export(
        output,
        opset=args.opset,
        input_dtype=args.input_dtype,
        dynamic_size=False if args.static_size else None,
    )
    size = output.stat().st_size / 2**20
    print(f"exported {model.config.model.name} to {output} ({size:.1f} MiB, opset {args.opset})")
    return 0


if __name__ == "__main__":
    run_cli(main)
