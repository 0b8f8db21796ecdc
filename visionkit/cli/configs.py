"""``visionkit configs``: the packaged configs, with their model, data and measured figures."""

from __future__ import annotations

import argparse

from visionkit.config import load_config
from visionkit.config.packaged import CONFIG_DIR, packaged_configs
from visionkit.utils.cli import HelpFormatter

EXAMPLES = """\
Every config shipped with visionkit, by the name `visionkit train NAME` takes. The *_shapes
configs need no data (the embedded shapes dataset is generated on first use); the others read
COCO or Pascal VOC from disk (docs/data.md). A config of your own is a YAML file with
`base: NAME.yaml` and the keys you change.

examples:
  visionkit configs
  visionkit configs --show yolo_v1_shapes      # the file itself
"""

# The quick configs' figures, trained from scratch alone on the project's 2-core CPU (AMD EPYC,
# torch 2.14.1) and scored on shapes val (300 images): README.md's tables, docs/benchmarks.md.
# "(bf16)": trained with the default train.amp=auto, bfloat16 autocast on that CPU.
MEASURED = {
    "yolo_v1_shapes": "AP50 81.2 %, AP 48.6 %; 16 epochs in 5.4 min on 2 CPU cores (bf16)",
    "faster_rcnn_shapes": "AP50 94.2 %, AP 60.8 %; 8 epochs in 7.0 min on 2 CPU cores (bf16)",
    "fast_rcnn_shapes": "AP50 68.8 %, AP 43.9 %; 4 epochs in 9.6 min (+ proposals)",
    "sppnet_shapes": "AP50 69.5 %, AP 43.8 %; 4 epochs in 10.1 min (+ proposals)",
    "rcnn_shapes": "AP50 94.4 %, AP 78.9 %; 4 epochs in 34.3 min (+ proposals)",
    "fcn8s_shapes": "mean IU 82.7 %; 14 epochs in 8.0 min on 2 CPU cores (bf16)",
    "mask_rcnn_shapes": "AP50 93.2 % (boxes), mask AP50 92.1 %; 7 epochs in 8.4 min on 2 CPU cores (bf16)",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="visionkit configs", description=EXAMPLES, formatter_class=HelpFormatter
    )
    p.add_argument("--show", metavar="NAME", help="print this packaged config's file")
    return p.parse_args(argv)


def table() -> str:
    """One line per packaged config: name, model and backbone, training data, figures."""
    rows = [("name", "model", "data", "measured (shapes val)")]
    for name in packaged_configs():
        cfg = load_config(name)
        model = f"{cfg.model.name} / {cfg.model.backbone.name}"
        rows.append((name, model, cfg.data.train.type, MEASURED.get(name, "")))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(f"{c:<{w}}" for c, w in zip(r, [*widths, 0], strict=True)).rstrip() for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.show:
        from visionkit.config.packaged import find_config

        print(find_config(args.show).read_text(encoding="utf-8"), end="")
        return 0
    print(table())
    print(f"\n({len(packaged_configs())} configs in {CONFIG_DIR})")
    return 0
