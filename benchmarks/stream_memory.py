"""Resident memory of ``VisionModel.predict(stream=True)`` over a long generated video: it should
stay flat (issue 14 asks for less than 50 MB of growth over 2,000 frames after warm-up).

    python benchmarks/stream_memory.py                        # 2,000 frames of 128 x 128
    python benchmarks/stream_memory.py --frames 500 --size 256 --batch-size 4
    python benchmarks/stream_memory.py --config visionkit/configs/yolo_v1_shapes.yaml --full-model

- The video (mp4v, ``--size`` square frames: a few coloured shapes moving across a grey field) is
  written to a temporary folder and deleted afterwards.
- The model is the config's, randomly initialized (the figure is about memory, not accuracy),
  saved as a checkpoint holding its config and class names and read back with
  ``visionkit.load``; by default shrunk to a quick size (LeNet trunk, 64 x 64 input; ``--full-model``
  keeps the config's own). Detections are consumed and dropped, as a video loop does.
- RSS is the process's resident set (``VmRSS`` of ``/proc/self/status``), sampled every
  ``--every`` frames; the growth is counted from the sample after ``--warmup`` frames (allocator
  pools, OpenCV's decoder and the first batches settle there) to the last frame. Memory only:
  nothing is timed.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

import visionkit
from visionkit.checkpoints import save_checkpoint
from visionkit.config import config_to_dict, load_config
from visionkit.models import build_model

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "model.input_size=[64,64]",
    "model.backbone.name=lenet",
    "model.backbone.out_features=[]",
    "model.yolo.head_channels=16",
    "model.yolo.extra_convs=1",
]


def rss_mb() -> float:
    """The process's resident set size in MiB (Linux)."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def write_video(path: Path, frames: int, size: int, fps: float = 30.0) -> None:
    """``frames`` frames of ``size`` x ``size``: three filled shapes crossing a grey field."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    if not writer.isOpened():
        raise SystemExit(f"cannot write {path} with OpenCV's mp4v codec")
    for i in range(frames):
        frame = np.full((size, size, 3), 110, np.uint8)
        x = (3 * i) % size
        cv2.circle(frame, (x, size // 3), size // 8, (40, 40, 220), -1)
        cv2.rectangle(frame, (size - x - size // 6, size // 2), (size - x, 3 * size // 4),
                      (40, 200, 40), -1)  # fmt: skip
        tip = (size // 2, (2 * i) % size)
        triangle = np.array([tip, (tip[0] - 12, tip[1] + 20), (tip[0] + 12, tip[1] + 20)])
        cv2.fillPoly(frame, [triangle], (220, 120, 20))
        writer.write(frame)
    writer.release()


def random_checkpoint(config: str, overrides: list[str], path: Path) -> None:
    """The config's model, randomly initialized, saved with its config and class names."""
    cfg = load_config(config, overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    n = cfg.model.num_classes
    save_checkpoint(
        {
            "model_name": cfg.model.name,
            "model": model.state_dict(),
            "config": config_to_dict(cfg),
            "class_names": [f"class{i}" for i in range(n)],
            "cat_ids": list(range(1, n + 1)),
        },
        path,
    )


def main(argv: list[str] | None = None) -> list[tuple[int, float]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml"))
    p.add_argument("--frames", type=int, default=2000, help="frames in the generated video")
    p.add_argument("--size", type=int, default=128, help="square frame side in pixels")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--every", type=int, default=100, help="sample RSS every this many frames")
    p.add_argument("--warmup", type=int, default=200, help="frames before the baseline sample")
    p.add_argument("--full-model", action="store_true", help="the config's own model size")
    p.add_argument("overrides", nargs="*", help="dotted config overrides")
    args = p.parse_args(argv)
    if not 0 < args.warmup < args.frames:
        raise SystemExit("--warmup must be between 0 and --frames")
    overrides = ([] if args.full_model else QUICK) + list(args.overrides) + ["train.device=cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        video, weights = Path(tmp) / "long.mp4", Path(tmp) / "random.pth"
        write_video(video, args.frames, args.size)
        random_checkpoint(args.config, overrides, weights)
        model = visionkit.load(weights, score_thresh=0.05)
        samples: list[tuple[int, float]] = [(0, rss_mb())]
        count = detections = 0
        for result in model.predict(video, stream=True, batch_size=args.batch_size):
            count += 1
            detections += len(result)
            if count % args.every == 0 or count == args.warmup:
                samples.append((count, rss_mb()))
    if count != args.frames:
        raise SystemExit(f"decoded {count} of {args.frames} frames")
    base = dict(samples)[args.warmup]
    print(f"{model!r}; {args.frames} frames of {args.size}x{args.size}, batch {args.batch_size}")
    print("| frames | RSS MiB | since warm-up MiB |")
    print("|---:|---:|---:|")
    for frames, rss in samples:
        after = f"{rss - base:+.1f}" if frames >= args.warmup else ""
        print(f"| {frames} | {rss:.1f} | {after} |")
    growth = samples[-1][1] - base
    print(
        f"RSS growth after warm-up (frames {args.warmup} to {args.frames}): {growth:+.1f} MiB "
        f"({detections} detections consumed)"
    )
    return samples


if __name__ == "__main__":
    main()
