"""Look at a dataset before training on it: its ground truth drawn on the images, and counts."""

from __future__ import annotations

import argparse
from pathlib import Path

from visionkit.config import load_config
from visionkit.config.inputs import config_inputs
from visionkit.io.outputs import check_outputs
from visionkit.utils.cli import HelpFormatter, take_positionals

EXAMPLES = """\
Draws the ground truth of the first --num images of a config's split (boxes tagged with their
class, crowd regions / VOC difficult objects in grey; label maps for segmentation models, ignored
pixels white) as the model sees them: as read, or after the training augmentation (--augment).
Writes <index>_id<image id>.jpg per image and contact_sheet.png into --output, and prints a
summary: images, objects per class, images without objects, boxes dropped as degenerate or
outside the image, image sizes, box sizes (COCO small / medium / large).

examples:
  visionkit browse yolo_v1_shapes --output browse/
  visionkit browse yolo_v1_shapes --augment --num 32 \\
      --output browse_aug/
  visionkit browse faster_rcnn_r50_fpn_coco --split val \\
      --output browse_coco/ data.val.root=data/coco/val2017
  visionkit browse fcn8s_shapes --output browse_seg/
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="visionkit browse", description=EXAMPLES, formatter_class=HelpFormatter
    )
    p.add_argument(
        "--config", help="a packaged config's name or a YAML file (or the first positional word)"
    )
    p.add_argument("--split", choices=("train", "val"), default="train", help="data.train or .val")
    p.add_argument("--augment", action="store_true", help="draw after the training augmentation")
    p.add_argument("--num", type=int, default=16, help="images drawn (the first N)")
    p.add_argument("--seed", type=int, default=0, help="the augmentation's seed (--augment)")
    p.add_argument("--output", required=True, help="folder for the drawings and contact sheet")
    p.add_argument(
        "words",
        nargs="*",
        metavar="CONFIG key=value",
        help="the config, then dotted config overrides, e.g. data.val.root=...",
    )
    args = p.parse_intermixed_args(argv)
    found, args.overrides = take_positionals(args.words, {"config": args.config}, "browse")
    if found["config"] is None:
        p.error("give a config (a packaged name such as yolo_v1_shapes, or a YAML file)")
    args.config = found["config"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    from visionkit.errors import ConfigError

    if args.num < 1:
        raise ConfigError(f"--num must be >= 1, got {args.num}")
    check_outputs(config_inputs(args.config, cfg, [args.split]), folders={"--output": args.output})
    from visionkit.analysis.browse import (
        contact_sheet,
        draw_detection_sample,
        draw_segmentation_sample,
    )
    from visionkit.analysis.dataset_summary import (
        detection_summary,
        format_summary,
        segmentation_summary,
    )
    from visionkit.data import build_dataset
    from visionkit.inference.writers import write_image
    from visionkit.models import model_task

    task = model_task(cfg.model.name)
    split = cfg.data.train if args.split == "train" else cfg.data.val
    size = tuple(cfg.model.input_size)

    def dataset(train: bool):
        return build_dataset(split, cfg.data.augment, size, train, task, cfg.data.on_bad_image)

    shown = dataset(args.augment)
    # the summary counts the annotations; only label maps are read through the transform
    plain = dataset(False) if args.augment and task == "sem_seg" else shown
    draw = draw_segmentation_sample if task == "sem_seg" else draw_detection_sample
    out, drawn = Path(args.output), []
    for index in range(min(args.num, len(shown))):
        image, image_id = draw(shown, index, args.seed + index)
        write_image(out / f"{index:04d}_id{image_id}.jpg", image)
        drawn.append(image)
    sheet = out / "contact_sheet.png"
    write_image(sheet, contact_sheet(drawn))
    summary = segmentation_summary(plain) if task == "sem_seg" else detection_summary(plain)
    print(format_summary(summary))
    print(f"drawn: {len(drawn)} images in {out}; contact sheet {sheet}")
    return 0
