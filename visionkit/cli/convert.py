"""``visionkit convert``: write a config's datasets as COCO, Pascal VOC or YOLO."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from visionkit.config import load_config
from visionkit.config.inputs import config_inputs
from visionkit.errors import ConfigError
from visionkit.io.outputs import check_outputs
from visionkit.utils.cli import HelpFormatter, show_progress

EXAMPLES = """\
Writes the datasets a config's data.train and data.val read (COCO, VOC, YOLO or the embedded
shapes) in another layout: images copied byte for byte, boxes converted, every file written
whole. Prints what the format could not hold (YOLO has no crowd or difficult flag, VOC no crowd
flag) and the overrides that train on the result.

  coco:  OUT/images/<split>/, OUT/annotations/instances_<split>.json
  voc:   OUT/VOCdata/{JPEGImages,Annotations,ImageSets/Main/<split>.txt}
  yolo:  OUT/images/<split>/, OUT/labels/<split>/<stem>.txt, OUT/data.yaml

examples:
  visionkit convert yolo_v1_shapes --to yolo --output shapes_yolo
  visionkit convert faster_rcnn_r50_fpn_coco --to yolo --output coco_yolo \\
      data.train.root=data/coco/train2017 data.val.root=data/coco/val2017
  visionkit convert my_yolo.yaml --to coco --output my_coco --splits val
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="visionkit convert", description=EXAMPLES, formatter_class=HelpFormatter
    )
    p.add_argument("config", metavar="CONFIG", help="config whose data.train / data.val to read")
    p.add_argument("--to", required=True, choices=("coco", "voc", "yolo"), help="layout to write")
    p.add_argument("--output", required=True, metavar="DIR", help="folder to write it into")
    p.add_argument(
        "--splits",
        nargs="+",
        default=["train", "val"],
        metavar="{train,val}",
        help="which of data.train and data.val to convert",
    )
    p.add_argument(
        "--exist-ok",
        action="store_true",
        help="write into a non-empty --output (files of the same name are replaced)",
    )
    p.add_argument(
        "--link",
        action="store_true",
        help="hard-link the images instead of copying them (same file system; no space used, "
        "but editing one file then edits the other)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (drawn only when stderr is a terminal)",
    )
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.val.root=...")
    args = p.parse_intermixed_args(argv)
    # "--splits val data.x=1": the overrides after the splits are overrides
    args.overrides += [s for s in args.splits if "=" in s]
    args.splits = list(dict.fromkeys(s for s in args.splits if "=" not in s))
    for split in args.splits:
        if split not in ("train", "val"):
            p.error(f"argument --splits: invalid choice: {split!r} (choose from 'train', 'val')")
    if not args.splits:
        p.error("argument --splits: expected train, val or both")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    splits = args.splits
    cfg = load_config(args.config, args.overrides)
    out = Path(args.output)
    inputs = config_inputs(args.config, cfg, splits)
    check_outputs(inputs, folders={"--output": out})
    if not args.exist_ok and any(out.iterdir()):
        raise ConfigError(
            f"--output {out} is not empty; give a new or empty folder, or --exist-ok to write "
            "into it"
        )
    from visionkit.data.build import detection_reader
    from visionkit.data.writers import convert_datasets, count_lines

    progress = show_progress(args.no_progress)
    datasets = {s: detection_reader(getattr(cfg.data, s), None, cfg.data.on_bad_image, progress)
                for s in splits}  # fmt: skip
    # what the readers found (a shapes cache, a data.yaml's image folders) is read too
    folders = {p.parent for d in datasets.values() for p in map(d.image_path, range(len(d)))}
    check_outputs({**inputs, "the images": sorted(folders)}, folders={"--output": out})
    report = convert_datasets(datasets, args.to, out, args.link, progress, cfg.data.on_bad_image)
    parts = [f"{s} {report.images[s]} images ({report.objects[s]} objects)" for s in splits]
    print(f"converted to {args.to} in {out}: {', '.join(parts)}")
    if report.missing:
        print(f"left out {len(report.missing)} missing image files (first: {report.missing[0]})")
    for line in count_lines(report.dropped):
        print(f"dropped {line}")
    for line in count_lines(report.changed):
        print(f"changed {line}")
    overrides = " ".join(shlex.quote(o) for o in report.overrides)
    print(f"train on it with these overrides:\n  {overrides}")
    print(f"e.g. visionkit train {shlex.quote(args.config)} {overrides}")
    return 0
