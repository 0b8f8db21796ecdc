"""The fuzz suite's tiny session assets, built once per session: a 4-image COCO dataset of
64 px JPEGs with 2 classes, a tiny YOLOv1 config on it, a random-weight checkpoint written with
visionkit's own checkpoint writer (as the trainer stores it), and its ONNX export (on demand)."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, ImageDraw
from script_loader import ROOT

CLASS_NAMES = ["box", "disc"]
CAT_IDS = [3, 7]  # non-contiguous on purpose
SIZE = 64
NUM_IMAGES = 4
BASE_CONFIG = ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml"


def tiny_overrides(images: Path, ann: Path) -> list[str]:
    """A lenet YOLOv1 at 64 px on the tiny COCO dataset, on the CPU, one epoch."""
    data = [
        f"data.{s}.{k}={v}"
        for s in ("train", "val")
        for k, v in (("type", "coco"), ("root", images), ("ann_file", ann))
    ]
    return [
        *data,
        "data.batch_size=2",
        "data.num_workers=0",
        "eval.batch_size=2",
        f"model.num_classes={len(CLASS_NAMES)}",
        f"model.input_size=[{SIZE},{SIZE}]",
        "model.backbone.name=lenet",
        "model.backbone.out_features=[]",
        "model.yolo.head_channels=8",
        "model.yolo.extra_convs=1",
        "train.epochs=1",
        "train.eval_every=1",
        "train.device=cpu",
    ]


def draw_image(seed: int) -> tuple[Image.Image, list[tuple[int, list[float]]]]:
    """A 64 px RGB image with a rectangle and a disc; its boxes as (class index, xywh)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in rng.integers(0, 80, 3)))
    draw = ImageDraw.Draw(image)
    x, y = (int(v) for v in rng.integers(2, 20, 2))
    draw.rectangle((x, y, x + 20, y + 14), fill=(220, 40, 40))
    draw.ellipse((36, 30, 58, 52), fill=(40, 220, 40))
    return image, [(0, [x, y, 21.0, 15.0]), (1, [36.0, 30.0, 23.0, 23.0])]


def coco_dataset(folder: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Write the tiny COCO dataset under ``folder``: (images folder, annotation file, its dict)."""
    images = folder / "images"
    images.mkdir(parents=True)
    data: dict[str, Any] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": c, "name": n} for c, n in zip(CAT_IDS, CLASS_NAMES, strict=True)],
    }
    for i in range(NUM_IMAGES):
        image, boxes = draw_image(i)
        name = f"img{i}.jpg"
        image.save(images / name, quality=95)
        data["images"].append({"id": i + 1, "file_name": name, "width": SIZE, "height": SIZE})
        for label, box in boxes:
            data["annotations"].append({
                "id": len(data["annotations"]) + 1, "image_id": i + 1,
                "category_id": CAT_IDS[label], "bbox": box, "area": box[2] * box[3],
                "iscrowd": 0,
            })  # fmt: skip
    ann = folder / "instances.json"
    ann.write_text(json.dumps(data))
    return images, ann, data


@dataclass
class Assets:
    """Paths and contents of the session's assets (every one an input: never changed)."""

    root: Path
    images: Path
    ann: Path
    coco: dict[str, Any]
    config: Path
    config_dict: dict[str, Any]
    overrides: list[str]
    checkpoint: Path

    @functools.cached_property
    def onnx(self) -> Path:
        """The checkpoint exported to ONNX (float32 input), written once on first use."""
        from visionkit.config import config_from_dict
        from visionkit.export import export_onnx
        from visionkit.inference import load_predictor

        cfg = config_from_dict(self.config_dict)
        predictor = load_predictor(cfg, str(self.checkpoint))
        path = self.root / "model.onnx"
        export_onnx(predictor.model, cfg, path, CLASS_NAMES, CAT_IDS)
        return path


@functools.cache
def session_assets() -> Assets:
    """Build the assets in a fresh temporary folder (once per process); shapes caches go to
    a temporary VISIONKIT_CACHE, never the user's."""
    import torch

    from visionkit.checkpoints import save_checkpoint
    from visionkit.config import config_to_dict, load_config
    from visionkit.models import build_model

    root = Path(tempfile.mkdtemp(prefix="visionkit-fuzz-assets-"))
    os.environ["VISIONKIT_CACHE"] = str(Path(tempfile.mkdtemp(prefix="visionkit-fuzz-cache-")))
    images, ann, coco = coco_dataset(root / "coco")
    overrides = tiny_overrides(images, ann)
    cfg = load_config(BASE_CONFIG, overrides)
    config_dict = config_to_dict(cfg)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(config_dict, sort_keys=False))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    checkpoint = root / "tiny.pth"
    save_checkpoint(
        {
            "model_name": cfg.model.name,
            "model": model.state_dict(),
            "epoch": 1,
            "config": config_dict,
            "class_names": list(CLASS_NAMES),
            "cat_ids": list(CAT_IDS),
        },
        checkpoint,
    )
    return Assets(root, images, ann, coco, config, config_dict, overrides, checkpoint)
