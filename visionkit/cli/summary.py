"""Summarize a model or a backbone: every leaf layer's output shape, parameters and MACs, the
totals, and the stride and receptive field of each backbone level."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from visionkit.config import load_config
from visionkit.config.inputs import config_inputs
from visionkit.errors import ConfigError
from visionkit.io.atomic import write_text
from visionkit.io.outputs import check_outputs
from visionkit.utils.cli import HelpFormatter, take_positionals

if TYPE_CHECKING:
    from torch import nn

    from visionkit.models.backbones import Backbone

EXAMPLES = """\
Print a table of every leaf layer (name, type, output shape, parameters, multiply-accumulates),
the totals, and each backbone level's channels, stride and receptive field. MACs count
convolutions, linear layers and normalization (one per element); pooling and activations
count 0 (visionkit/analysis/complexity.py). Receptive fields are computed analytically from
the kernels, strides, paddings and dilations (visionkit/analysis/receptive_field.py).

A config's model is summarized on one image of model.input_size (configs with input_size []:
a square image of model.resize.min_size px), through the model's own resizing and padding.
Models are built on PyTorch's meta device (shapes without storage: no weights are initialized,
downloaded or loaded, nothing is computed). Two-stage detectors and R-CNN run their per-region
layers on --rois regions (default: the test-time proposals per image).

examples:
  visionkit summary --backbone alexnet
  visionkit summary --backbone resnet50 --input-size 448 448 --json resnet50.json
  visionkit summary yolo_v1_shapes
  visionkit summary faster_rcnn_vgg16_voc --input-size 375 500 --rois 1
  visionkit summary fcn8s_shapes model.input_size=[256,256]
"""

COLUMNS = ("layer", "type", "output shape", "params", "MACs")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="visionkit summary", description=EXAMPLES, formatter_class=HelpFormatter
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--config", help="a packaged config's name or a YAML file (or the first positional word)"
    )
    src.add_argument("--backbone", help="a registered backbone (all its levels), e.g. alexnet")
    p.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="image height and width (default: the config's, or 224 224 for --backbone)",
    )
    p.add_argument(
        "--rois",
        type=int,
        help="regions the per-region layers of two-stage detectors and R-CNN run on "
        "(default: the model's test-time proposals per image)",
    )
    p.add_argument("--json", help="also write the table and totals as JSON here ('-': stdout only)")
    p.add_argument(
        "words", nargs="*", metavar="CONFIG key=value", help="the config, then dotted overrides"
    )
    args = p.parse_intermixed_args(argv)
    wanted = {"config": args.config} if args.backbone is None else {}
    found, args.overrides = take_positionals(args.words, wanted, "summary")
    args.config = found.get("config")
    if args.config is None and args.backbone is None:
        p.error("give a config (a packaged name or a YAML file) or --backbone NAME")
    return args


def human(n: float) -> str:
    """``1234567`` -> ``1.23 M``."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return str(int(n))


def format_layers(layers: list[dict[str, Any]]) -> str:
    """The per-layer table, numbers right-aligned with thousands separators."""
    rows = [
        (
            r["name"],
            r["type"],
            "not run" if r["output_shape"] is None else str(r["output_shape"]),
            f"{r['params']:,}",
            f"{r['macs']:,}",
        )
        for r in layers
    ]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(COLUMNS)]
    lines = []
    for row in [COLUMNS, *rows]:
        left = [f"{v:<{w}}" for v, w in zip(row[:3], widths, strict=False)]
        right = [f"{v:>{w}}" for v, w in zip(row[3:], widths[3:], strict=True)]
        lines.append("  ".join(left + right).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_levels(levels: list[dict[str, Any]]) -> str:
    """Each level's channels, stride and receptive field (one number when both axes agree)."""

    def pair(v: list[Any] | None) -> str:
        if v is None:
            return "-"
        return f"{v[0]:g}" if v[0] == v[1] else f"{v[0]:g}x{v[1]:g}"

    header = (
        f"{'level':<12}  {'channels':>8}  {'stride':>6}  {'receptive field':>15}  centre of pixel 0"
    )
    lines = [header, "-" * len(header)]
    for lv in levels:
        lines.append(
            f"{lv['name']:<12}  {lv['channels']:>8}  {pair(lv['stride']):>6}  "
            f"{pair(lv['receptive_field']):>15}  {pair(lv['centre'])}"
        )
    return "\n".join(lines)


def level_report(backbone: Backbone) -> list[dict[str, Any]]:
    """Per level of a Backbone: channels, and per axis its stride, receptive field and the
    centre of its first pixel's field in input pixels (None where not computable)."""
    from visionkit.analysis.receptive_field import level_fields

    rows, h, w = [], level_fields(backbone, 0), level_fields(backbone, 1)
    for name in backbone.stages:
        fh, fw = h[name], w[name]
        known = fh is not None and fw is not None
        rows.append({
            "name": name,
            "channels": backbone.levels[name][0],
            "stride": [fh.jump, fw.jump] if known else None,
            "receptive_field": [fh.size, fw.size] if known else None,
            "centre": [fh.centre, fw.centre] if known else None,
        })  # fmt: skip
    return rows


def build(args: argparse.Namespace) -> tuple[nn.Module, tuple[int, int], str]:
    """The model (or backbone) on the meta device, the image size and a one-line description."""
    import torch

    from visionkit.analysis.paths import default_image_size
    from visionkit.config import BackboneConfig
    from visionkit.models import build_model
    from visionkit.models.backbones import build_backbone

    if args.backbone:
        if args.overrides:
            raise ConfigError("config overrides need --config")
        with torch.device("meta"):
            model = build_backbone(BackboneConfig(name=args.backbone))
        model.set_out_features(list(model.levels))
        size = tuple(args.input_size or (224, 224))
        return model, size, f"backbone {args.backbone} (all levels)"
    # weights change no count: never download or read them
    cfg = load_config(args.config, [*args.overrides, "model.backbone.pretrained=false"])
    size = tuple(args.input_size) if args.input_size else default_image_size(cfg.model)
    with torch.device("meta"):
        model = build_model(cfg.model)
    return model, size, f"{cfg.model.name} ({args.config})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.input_size and min(args.input_size) < 1:
        raise ConfigError(f"--input-size must be positive; got {args.input_size}")
    if args.rois is not None and args.rois < 0:
        raise ConfigError(f"--rois must be >= 0; got {args.rois}")
    json_file = args.json if args.json != "-" else None
    check_outputs(config_inputs(args.config), files={"--json": json_file})
    from visionkit.analysis.complexity import summarize
    from visionkit.models.backbones import Backbone

    model, size, what = build(args)
    try:
        stats = summarize(model, size, args.rois)
    except RuntimeError as e:  # the shapes do not fit (an image too small for the network)
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"{what} cannot run on a {size[0]}x{size[1]} image: {first}") from None
    backbone = model if isinstance(model, Backbone) else getattr(model, "backbone", None)
    report = {
        "model": what,
        "image_size": list(size),
        "input_shape": list(stats.input_shape),
        "rois": stats.rois,
        "layers": [asdict(layer) for layer in stats.layers],
        "totals": {
            "params": stats.params,
            "trainable_params": stats.trainable_params,
            "macs": stats.macs,
            "idle_params": stats.idle_params,
        },
        "levels": level_report(backbone) if isinstance(backbone, Backbone) else [],
    }
    if args.json:
        text = json.dumps(report, indent=2)
        if args.json == "-":
            sys.stdout.write(text + "\n")
            return 0
        write_text(args.json, text + "\n")
    rois = f"; per-region layers on {stats.rois} regions" if stats.rois is not None else ""
    print(f"{what}: image {size[0]}x{size[1]} -> input {list(stats.input_shape)}{rois}")
    print(format_layers(report["layers"]))
    print(
        f"total params: {stats.params:,} ({human(stats.params)})  trainable: "
        f"{stats.trainable_params:,}  MACs: {stats.macs:,} ({human(stats.macs)})"
    )
    if stats.idle_params:
        print(f"{stats.idle_params:,} of the params are in layers the forward never runs")
    if report["levels"]:
        print()
        print(format_levels(report["levels"]))
    return 0
