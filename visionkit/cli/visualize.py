"""Look inside a model: its first-layer filters and, for one image, its feature maps."""

from __future__ import annotations

import argparse

from visionkit.config import apply_overrides, load_config
from visionkit.config.diff import trained_config_changes
from visionkit.config.inputs import config_inputs
from visionkit.errors import ConfigError
from visionkit.io.outputs import check_outputs
from visionkit.utils.cli import HelpFormatter, take_positionals

EXAMPLES = """\
Writes <output>/filters.png: the first conv layer's filters, each min-max normalized, RGB when
the layer reads the 3 image channels. With --image, also <output>/input.png (the image as the
model sees it, after its own resizing) and <output>/features_<layer>.png for each layer (default:
each backbone level the model computes): the first --max-channels channels, each normalized,
colour-mapped (viridis). Without --weights the model is randomly initialized (seeded by
train.seed), to compare with a trained checkpoint; the config's pretrained backbone weights are
not loaded unless an override asks (model.backbone.pretrained=true). Put config overrides before
--layers.

examples:
  visionkit visualize yolo_v1_shapes --output vis/init
  visionkit visualize yolo_v1_shapes \\
      --weights runs/yolo_v1_shapes/best.pth --output vis/trained --image photo.jpg
  visionkit visualize yolo_v1_shapes --list-layers
  visionkit visualize --weights runs/yolo_v1_shapes --output vis/run --image photo.jpg
  visionkit visualize fcn8s_shapes --weights W --output vis/fcn \\
      --image photo.jpg --layers stage2 head.score
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="visionkit visualize", description=EXAMPLES, formatter_class=HelpFormatter
    )
    p.add_argument(
        "--config", help="a packaged config's name or a YAML file (or the first positional word)"
    )
    p.add_argument(
        "--weights",
        help="run folder or checkpoint (its config is used when no config is given); none: random "
        "initialization",
    )
    p.add_argument("--output", help="folder for the PNGs")
    p.add_argument("--image", help="an image file whose feature maps to draw")
    p.add_argument(
        "--layers", nargs="+", help="module names or backbone levels (default: backbone levels)"
    )
    p.add_argument("--list-layers", action="store_true", help="print the layer names and stop")
    p.add_argument("--max-channels", type=int, default=32, help="channels drawn per feature map")
    p.add_argument(
        "--filter-size", type=int, default=32, help="px a filter is enlarged to (integer factor)"
    )
    p.add_argument(
        "--map-size", type=int, default=64, help="px a smaller feature map is enlarged to"
    )
    p.add_argument(
        "words", nargs="*", metavar="CONFIG key=value", help="the config, then dotted overrides"
    )
    args = p.parse_intermixed_args(argv)
    found, args.overrides = take_positionals(args.words, {"config": args.config}, "visualize")
    if found["config"] is None and args.weights is None:
        p.error(
            "give a config (a packaged name such as yolo_v1_shapes, or a YAML file) or --weights"
        )
    args.config = found["config"]
    if not args.list_layers and not args.output:
        p.error("--output is required (or --list-layers)")
    if args.layers and not args.image:
        p.error("--layers needs --image")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = ["model.backbone.pretrained=false", *args.overrides]
    cfg = load_config(args.config, overrides) if args.config else None

    import torch

    from visionkit.analysis import visualize as vis
    from visionkit.checkpoints import load_checkpoint, load_model_weights, weights_inputs
    from visionkit.checkpoints.store import run_files
    from visionkit.io.image import read_image_tensor
    from visionkit.models import build_model

    for flag, value, most in (
        ("--max-channels", args.max_channels, vis.MAX_CHANNELS),
        ("--filter-size", args.filter_size, vis.MAX_TILE),
        ("--map-size", args.map_size, vis.MAX_TILE),
    ):
        if not 1 <= value <= most:
            raise ConfigError(f"{flag} must be in [1, {most}], got {value}")

    check_outputs(
        {**config_inputs(args.config), "--weights": weights_inputs(args.weights),
         "--image": args.image},
        folders={"--output": args.output},
    )  # fmt: skip
    weights = run_files(args.weights)[0] if args.weights else None  # a run folder: its best
    ckpt = load_checkpoint(weights) if weights else None
    stored = ckpt.get("config") if ckpt is not None else None
    if cfg is None:  # the checkpoint's own config
        if not isinstance(stored, dict):
            raise ConfigError(f"{args.weights} holds no config: give one (a name or a YAML file)")
        cfg = apply_overrides(stored, overrides, str(weights))
    elif isinstance(stored, dict):  # the checkpoint's model
        for line in trained_config_changes(stored, cfg, str(weights)):
            print(line)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model).eval()
    if args.list_layers:
        levels = vis.backbone_levels(model)
        print("backbone levels (each stands for its module):")
        for level, module in levels.items():
            print(f"  {level:<12} {module}")
        print("modules:")
        names = vis.layer_names(model)
        width = max(len(n) for n, _ in names)
        for name, desc in names:
            print(f"  {name:<{width}}  {desc}".rstrip())
        return 0
    layers = vis.resolve_layers(model, args.layers) if args.layers else None
    image = read_image_tensor(args.image) if args.image else None
    if ckpt is not None:
        load_model_weights(model, ckpt, cfg.model.name, str(weights), cfg.model.num_classes)
    source = str(weights) if weights else f"random init, seed {cfg.train.seed}"

    name, conv = vis.first_conv(model)
    grid = vis.filter_grid(conv.weight, args.filter_size)
    vis.write_png(f"{args.output}/filters.png", grid)
    o, i, kh, kw = conv.weight.shape
    print(f"{args.output}/filters.png: {name}, {o} filters of {i}x{kh}x{kw} ({source})")
    if image is None:
        return 0
    layers = layers or list(vis.backbone_levels(model).values())
    batch, maps = vis.feature_maps(model, image, layers)
    vis.write_png(f"{args.output}/input.png", vis.input_image(model, batch))
    for layer, fmap in maps.items():
        path = f"{args.output}/features_{layer}.png"
        vis.write_png(path, vis.feature_grid(fmap, args.max_channels, args.map_size))
        c, h, w = fmap.shape
        print(f"{path}: {min(c, args.max_channels)} of {c} channels, {h}x{w}")
    return 0
