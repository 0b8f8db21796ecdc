"""Latency of each model under onnxruntime against PyTorch eager on this CPU, for a single image
and a batch, side by side in one run, as a markdown table.

    python benchmarks/onnx_vs_eager.py                                # every visionkit/configs/*_shapes.yaml
    python benchmarks/onnx_vs_eager.py --config visionkit/configs/yolo_v1_shapes.yaml --batch-sizes 1 8
    python benchmarks/onnx_vs_eager.py --quick --config visionkit/configs/fcn8s_shapes.yaml model.num_classes=3

- Both sides run the whole prediction of ``(3, H, W)`` float images in ``[0, 1]`` to results
  in original pixels: eager ``model.predict`` under ``torch.inference_mode``, and
  ``OnnxPredictor.predict`` (the same Preprocessor resizing and mapping back, the graph on
  onnxruntime's CPU provider with as many threads as torch uses). Weights are the config's
  random initialization (seeded; what is timed does not depend on training, but the number of
  detections does, and with it the NMS's share).
- Images: shapes val images at the config's ``data.val`` size. Fast R-CNN, SPPNet and R-CNN get
  the same selective-search proposals on both sides, computed once beforehand (not timed).
- ms: median milliseconds per call over ``--steps`` calls after ``--warmup``; "eager / onnx" is
  the speed-up of onnxruntime (above 1: onnxruntime is faster). ``--quick``: 2 steps after 1
  warm-up, for tests.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import torch

from visionkit.config import load_config
from visionkit.config.schema import Config
from visionkit.data import ensure_shapes
from visionkit.export import export_onnx
from visionkit.inference import OnnxPredictor
from visionkit.io.image import image_to_float
from visionkit.models import build_model
from visionkit.models.proposers import GivenProposals

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from throughput import config_parser, device_name, quick_configs, size_label  # noqa: E402  (the house's shared pieces)


def median_ms(call: Callable[[], object], warmup: int, steps: int) -> float:
    """Median wall time of ``call`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def val_images(cfg: Config, count: int) -> list[torch.Tensor]:
    """``count`` shapes val images (cycled) as ``(3, H, W)`` float RGB in ``[0, 1]``."""
    val = cfg.data.val
    root = ensure_shapes(val.root, "val", val.num_images, val.image_size)
    files = sorted(root["images"].glob("*.jpg"))[:count]
    out = []
    for f in files:
        rgb = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        out.append(image_to_float(torch.from_numpy(rgb).permute(2, 0, 1)))
    return [out[i % len(out)] for i in range(count)]


def measure(config: str, args: argparse.Namespace, folder: Path) -> dict[str, str]:
    """One table row: eager and onnxruntime latency of ``config``'s model per batch size."""
    cfg = load_config(config, args.overrides)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model).eval()
    names = [f"class{i}" for i in range(cfg.model.num_classes)]
    path = export_onnx(
        model, cfg, folder / f"{Path(config).stem}.onnx", names, list(range(len(names)))
    )
    onnx = OnnxPredictor(path, score_thresh=0.0, threads=torch.get_num_threads())
    images = val_images(cfg, max(args.batch_sizes))
    extras = {}
    if "proposals" in model.predict_extras:
        ss = cfg.model.selective_search
        extras["proposals"] = GivenProposals(ss.mode, ss.max_proposals)(images, None)
    row = {"config": Path(config).name, "model": cfg.model.name, "size": size_label(cfg)}
    for n in args.batch_sizes:
        batch = {k: v[:n] for k, v in extras.items()}
        with torch.inference_mode():
            eager = median_ms(lambda: model.predict(images[:n], **batch), args.warmup, args.steps)  # noqa: B023
        ort = median_ms(lambda: onnx.predict(images[:n], **batch), args.warmup, args.steps)  # noqa: B023
        row |= {
            f"eager {n} img ms": f"{eager:.1f}",
            f"onnx {n} img ms": f"{ort:.1f}",
            f"eager / onnx ({n})": f"{eager / ort:.2f}",
        }
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = config_parser(__doc__)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="images per call")
    p.add_argument("--steps", type=int, default=20, help="timed calls per batch size")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    p.add_argument("--quick", action="store_true", help="2 steps after 1 warm-up")
    p.add_argument("overrides", nargs="*", help="dotted config overrides for every config")
    args = p.parse_args(argv)
    args.config = args.config or quick_configs()
    if args.quick:
        args.steps, args.warmup = 2, 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    print(f"command: python {shlex.join(['benchmarks/onnx_vs_eager.py', *given])}")
    import onnxruntime

    print(
        f"device: {device_name(torch.device('cpu'))}; torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}, {torch.get_num_threads()} threads each; median of "
        f"{args.steps} calls after {args.warmup}\n"
    )
    columns = ["config", "model", "size"]
    for n in args.batch_sizes:
        columns += [f"eager {n} img ms", f"onnx {n} img ms", f"eager / onnx ({n})"]
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for config in args.config:
            row = measure(config, args, Path(folder))
            print("| " + " | ".join(row[c] for c in columns) + " |", flush=True)


if __name__ == "__main__":
    main()
