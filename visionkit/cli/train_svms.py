"""R-CNN's SVM stage: per-class linear SVMs on a fine-tuned R-CNN's fc7 features."""

from __future__ import annotations

import argparse
from pathlib import Path

from visionkit.config import apply_overrides, load_config
from visionkit.config.diff import trained_config_changes
from visionkit.config.inputs import config_inputs
from visionkit.errors import ConfigError
from visionkit.io.outputs import check_outputs
from visionkit.utils.cli import HelpFormatter, show_progress, take_positionals

EXAMPLES = """\
Fine-tune first (visionkit train on an rcnn config), then fit the SVMs on the training split's
fc7 features: ground-truth boxes are positives, proposals at IoU < model.rcnn.svm.neg_iou_thresh
negatives, with hard negative mining (model.rcnn.svm). Features are cached under
model.rcnn.svm.cache_dir (one file per dataset and checkpoint) and reused by later runs. The
output checkpoint holds the SVMs; its model predicts with the SVM scores (visionkit eval). The config is the one the checkpoint
holds unless one is given.

examples:
  visionkit train rcnn_shapes
  visionkit train-svms --weights runs/rcnn_shapes/last.pth   # writes runs/rcnn_shapes/last_svm.pth
  visionkit train-svms rcnn_shapes --weights W \\
      model.rcnn.svm.C=0.01 model.rcnn.svm.hard_negative_rounds=5
  visionkit eval runs/rcnn_shapes/last_svm.pth
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="visionkit train-svms", description=EXAMPLES, formatter_class=HelpFormatter
    )
    p.add_argument(
        "--config", help="a packaged config's name or a YAML file (or the first positional word)"
    )
    p.add_argument(
        "--weights",
        required=True,
        help="the fine-tuned checkpoint or its run folder (visionkit train)",
    )
    p.add_argument("--out", help="output checkpoint (default: <weights>_svm.pth)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides train.device)")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (they are drawn only when stderr is a terminal)",
    )
    p.add_argument(
        "words",
        nargs="*",
        metavar="CONFIG key=value",
        help="the config (default: the one the checkpoint holds), then overrides "
        "(model.rcnn.svm.C=0.01)",
    )
    args = p.parse_intermixed_args(argv)
    found, args.overrides = take_positionals(args.words, {"config": args.config}, "train-svms")
    args.config = found["config"]  # None: the one the checkpoint holds
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides) + ([f"train.device={args.device}"] if args.device else [])
    from visionkit.checkpoints import (
        load_checkpoint,
        load_model_weights,
        save_checkpoint,
        select_device,
        weights_inputs,
    )
    from visionkit.checkpoints.store import run_files
    from visionkit.data import build_dataset
    from visionkit.engine.rcnn_svm import cached_features, fit_svms
    from visionkit.models import build_model

    weights = run_files(args.weights)[0]  # a run folder: its best.pth, else last.pth
    ckpt = None
    if args.config:
        cfg = load_config(args.config, overrides)
    else:  # the config the checkpoint holds
        ckpt = load_checkpoint(weights)
        if not isinstance(ckpt.get("config"), dict):
            raise ConfigError(f"{weights} holds no config: give one (a name or a YAML file)")
        cfg = apply_overrides(ckpt["config"], overrides, str(weights))
    if cfg.model.name != "rcnn":
        where = args.config or weights
        raise ConfigError(f"SVMs belong to rcnn models; {where} builds '{cfg.model.name}'")
    out = Path(args.out) if args.out else weights.with_name(f"{weights.stem}_svm.pth")
    check_outputs(
        {**config_inputs(args.config, cfg, ["train"]), "--weights": weights_inputs(weights)},
        files={"--out": out},
    )
    if ckpt is None:
        ckpt = load_checkpoint(weights)
        if isinstance(ckpt.get("config"), dict):  # the checkpoint is the truth about its model
            for line in trained_config_changes(ckpt["config"], cfg, str(weights)):
                print(line)
    model = build_model(cfg.model)
    load_model_weights(model, ckpt, cfg.model.name, str(weights), cfg.model.num_classes)
    model = model.to(select_device(cfg.train.device))
    progress = show_progress(args.no_progress)
    dataset = build_dataset(
        cfg.data.train, cfg.data.augment, tuple(cfg.model.input_size), train=False,
        on_bad_image=cfg.data.on_bad_image, progress=progress,
    )  # fmt: skip
    svm = cfg.model.rcnn.svm
    features, path, reused = cached_features(model, dataset, svm, progress=progress)
    print(f"{'read' if reused else 'wrote'} {len(features['labels'])} region features: {path}")
    stats = fit_svms(model, features, svm)
    save_checkpoint({**ckpt, "model": model.cpu().state_dict(), "svm": stats}, out)
    names = getattr(dataset, "class_names", [str(c) for c in range(model.num_classes)])
    for c, name in enumerate(names):
        print(
            f"{name}: {stats['positives'][c]} positives, {stats['negatives'][c]} negatives, "
            f"{stats['hard'][c]} hard, {stats['violators'][c]} still violating"
        )
    print(f"wrote {out}")
    return 0
