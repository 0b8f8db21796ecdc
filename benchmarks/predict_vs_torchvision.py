"""``visionkit.load(run).predict`` end to end against torchvision's ``FasterRCNN`` on the same
weights: single images and batches of 8, from image files to detections in original pixels.

The twin models of ``benchmarks/faster_rcnn_vs_torchvision.py`` (faster_rcnn_shapes' setting,
seeded random weights; what is timed does not depend on training beyond the number of
detections, which is the same for both). visionkit's is saved as a run's checkpoint and loaded
with ``visionkit.load`` (the whole user path: reading and decoding the files, preprocessing,
the model in its default layout, post-processing, results in original pixels) at each
``--precision``; torchvision's runs as its users run it: ``torchvision.io.decode_image`` of the
file, ``convert_image_dtype``, ``model(images)`` under ``torch.inference_mode`` in NCHW float32
(as it ships). Shapes val images; each row interleaves the models call by call (alternating
which goes first); median milliseconds per image over ``--calls`` calls after 2 warm-up calls.

    python benchmarks/predict_vs_torchvision.py
    python benchmarks/predict_vs_torchvision.py --calls 3 --precision float32   # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.io import decode_image, read_file
from torchvision.transforms.functional import convert_image_dtype

import visionkit
from visionkit.checkpoints.store import save_checkpoint
from visionkit.config import load_config
from visionkit.config.loader import config_to_dict
from visionkit.data import build_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faster_rcnn_vs_torchvision import SHARED, make_models  # noqa: E402  (the twin models)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default="faster_rcnn_shapes")
    p.add_argument("overrides", nargs="*", help="dotted config overrides (key=value)")
    p.add_argument("--calls", type=int, default=20, help="timed calls per batch size")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument(
        "--precision", nargs="+", default=["float32", "auto"], help="visionkit's precisions"
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    cfg = load_config(args.config, [*SHARED, *args.overrides])
    val = build_dataset(cfg.data.val, cfg.data.augment, None, train=False, task="detection")
    files = [str(val.image_path(i)) for i in range(len(val))]
    vk, tv = make_models(cfg, args.seed)
    tv.eval()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "best.pth"
        save_checkpoint(
            {"model_name": cfg.model.name, "model": vk.state_dict(), "epoch": 1,
             "config": config_to_dict(cfg)},
            ckpt,
        )  # fmt: skip
        loaded = {
            prec: visionkit.load(ckpt, precision=prec, score_thresh=cfg.model.roi_head.score_thresh)
            for prec in args.precision
        }

        def torchvision_predict(paths: list[str]) -> None:
            images = [convert_image_dtype(decode_image(read_file(f))) for f in paths]
            with torch.inference_mode():
                tv.model(images)

        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"{len(files)} shapes val images, {args.calls} calls per row"
        )
        print("| batch | visionkit precision | visionkit ms/image | torchvision ms/image | ratio |")
        print("|---|---|---:|---:|---:|")
        for batch in args.batch_sizes:
            for prec, model in loaded.items():
                calls = {"visionkit": lambda paths, m=model, b=batch: m.predict(paths, batch_size=b),
                         "torchvision": torchvision_predict}  # fmt: skip
                times = {name: [] for name in calls}
                for i in range(args.calls + 2):
                    paths = [files[(i * batch + j) % len(files)] for j in range(batch)]
                    for name in list(calls)[:: 1 if i % 2 == 0 else -1]:
                        start = time.perf_counter()
                        calls[name](paths)
                        if i >= 2:
                            times[name].append((time.perf_counter() - start) / batch)
                ours, theirs = (statistics.median(times[n]) * 1e3 for n in calls)
                print(f"| {batch} | {prec} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.3f} |")


if __name__ == "__main__":
    main()
