"""``visionkit predict``: a trained model on images, folders, globs, path lists, videos or a
webcam."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from visionkit.config import load_config
from visionkit.config.inputs import config_inputs
from visionkit.io.outputs import check_output_folder, check_outputs, numbered_folder
from visionkit.utils.cli import HelpFormatter, show_progress, take_positionals

EXIT_SKIPPED = 3  # some sources could not be read (each reported on stderr); the rest were done
# visionkit.inference.options.PRECISIONS, repeated so that --help needs no torch
PRECISIONS = ("auto", "float32", "bf16", "fp16")

EXAMPLES = """\
Draw a checkpoint's predictions: boxes with class names and scores (instance segmentation,
mask_rcnn: over each object's mask, filled and outlined in its class colour; segmentation models,
fcn: a class-colour overlay and <name>_label.png, the raw labels) on every image
(<output>/<name>.jpg) and video (<output>/<name>.mp4, same frame rate, size and frame count);
detection predictions go to <output>/predictions.json (COCO results: the dataset's category ids,
xywh boxes, score; masks as "segmentation", compressed RLE) and
<output>/images.json maps each image_id to its file (and, for videos, the frame index). Runs
never mix: a non-empty --output gets a numbered sibling (runs/predict2, runs/predict3, ...; --exist-ok
reuses it). Unreadable files are reported and skipped (exit code 3). Fast R-CNN, SPPNet and
R-CNN compute selective search proposals per image (model.selective_search.mode, default fast).
--precision auto (default) predicts under bfloat16 autocast where the device computes bfloat16
natively (a GPU of compute capability 8.0 or newer, a CPU with AVX512-BF16 or AMX), else in
float32; boxes and scores are float32 either way (visionkit eval scores float32 predictions
unless given --precision too). An .onnx file runs its exported float32 graph (auto or float32).
WEIGHTS is a run folder (its best.pth, else last.pth), a checkpoint, an .onnx file or
torchvision:NAME; --config is needed only for a bare state_dict or torchvision:NAME, as the
trainer's checkpoints hold their config. In Python:
visionkit.load(W).predict(SOURCE).

examples:
  visionkit predict runs/yolo_v1_shapes --source photos/         # writes runs/predict
  visionkit predict runs/yolo_v1_shapes/best.pth --source photos/ --output runs/photos
  visionkit predict runs/yolo_v1_shapes --source 'data/**/*.jpg' --score-thresh 0.5
  visionkit predict runs/yolo_v1_shapes --source list.txt         # one path per line
  visionkit predict runs/yolo_v1_shapes --source clip.mp4 --device cuda --precision fp16
  visionkit predict runs/yolo_v1_shapes --source photos/ --precision float32  # exact numbers
  visionkit predict runs/yolo_v1_shapes --source 0 --show         # webcam 0; q or Ctrl+C stops
  visionkit predict yolo_v1_shapes.onnx --source photos/           # an exported model
  visionkit predict torchvision:fasterrcnn_resnet50_fpn --config faster_rcnn_r50_fpn_coco \
      --source street.jpg
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="visionkit predict", description=EXAMPLES, formatter_class=HelpFormatter
    )
    p.add_argument(
        "--config",
        help="a packaged config's name or a YAML file (default: the one the checkpoint holds)",
    )
    p.add_argument(
        "--weights",
        help="run folder, checkpoint, .onnx, torchvision:NAME, or bare state_dict (with --config); "
        "or the first positional word",
    )
    p.add_argument(
        "--source",
        required=True,
        help="image, folder, glob, .txt list of paths, video file, or webcam index (0, 1, ...)",
    )
    p.add_argument(
        "--output",
        default="runs/predict",
        help="folder for the outputs; when it holds files, the first free one of <output>2, "
        "<output>3, ... instead",
    )
    p.add_argument(
        "--exist-ok", action="store_true", help="write into --output even when it holds files"
    )
    p.add_argument(
        "--score-thresh", type=float, default=0.3, help="draw and save detections scoring >= this"
    )
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides train.device)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="auto (default): bf16 autocast where the device computes bfloat16 natively, else "
        "float32; float32; bf16; fp16 (CUDA only). An .onnx file runs its exported float32 "
        "graph: auto or float32",
    )
    p.add_argument("--half", action="store_true", help="the same as --precision fp16")
    p.add_argument("--show", action="store_true", help="show results in a window (q stops)")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it is drawn only when stderr is a terminal)",
    )
    p.add_argument(
        "words",
        nargs="*",
        metavar="WEIGHTS key=value",
        help="the weights, then dotted overrides (model.yolo.nms_thresh=0.4)",
    )
    args = p.parse_intermixed_args(argv)
    found, args.overrides = take_positionals(args.words, {"weights": args.weights}, "predict")
    if found["weights"] is None:
        p.error("give the weights: visionkit predict runs/NAME --source IMAGES")
    args.weights = found["weights"]
    if args.half and args.precision not in (None, "fp16"):
        p.error(f"--half is --precision fp16; give one, not --precision {args.precision} too")
    args.precision = "fp16" if args.half else args.precision or "auto"
    return args


def prepare_output(args: argparse.Namespace, sources: list) -> Path:
    """Before any work: the folder for this run's results, created. ``--output`` must not be a
    source, nor hold one (the output rule), nor the config or weights; when it holds an earlier
    run's files, its first free numbered sibling (said on stdout) unless ``--exist-ok``."""
    files = [s.path for s in sources if s.kind != "webcam"]
    listed = args.source if Path(args.source).is_file() else None  # a .txt list of paths
    from visionkit.checkpoints.store import weights_inputs

    inputs = {"--weights": weights_inputs(args.weights), "--source": [*files, listed]}
    check_outputs({**config_inputs(args.config), **inputs}, folders={"--output": args.output})
    output = numbered_folder(args.output, args.exist_ok)
    if output != Path(args.output):
        print(f"--output {args.output} holds an earlier run's files: writing to {output}")
        check_output_folder(output, "--output")
    return output


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from visionkit.inference.options import check_batch_size, check_score_thresh

    check_batch_size(args.batch_size, "--batch-size")
    check_score_thresh(args.score_thresh, "--score-thresh")
    overrides = list(args.overrides) + ([f"train.device={args.device}"] if args.device else [])
    cfg = load_config(args.config, overrides) if args.config else None

    import cv2

    from visionkit.inference import Window, gui_unavailable, resolve_sources, run_inference
    from visionkit.inference.api import load

    # unreadable files are reported in one line each: no OpenCV or FFmpeg messages about them
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when FFmpeg is first used
    sources = resolve_sources(args.source)
    output = prepare_output(args, sources)
    window = None
    if args.show:
        reason = gui_unavailable()
        if reason:
            print(f"warning: --show: {reason}; continuing without a window", file=sys.stderr)
        else:
            window = Window()
    model = load(
        args.weights,
        config=cfg,
        score_thresh=args.score_thresh,
        precision=args.precision,
        overrides=None if cfg else overrides,  # applied to the checkpoint's config
        report=print,  # each setting that differs from the checkpoint's config
    )
    summary = run_inference(
        model.predictor,
        sources,
        output,
        args.batch_size,
        window,
        show_progress(args.no_progress),
    )
    print(summary.line())
    if summary.interrupted:
        return 130
    return EXIT_SKIPPED if summary.skipped else 0
