"""visionkit's FCN-ResNet50 against torchvision's ``fcn_resnet50`` architecture, side by side.

Both start from the same weights (torchvision's randomly initialized model, copied into
visionkit's: dilated ResNet-50 trunk, 3x3 conv + BN head, 1x1 score; no auxiliary loss), see the
same batches (shapes train split, torchvision's reference augmentation: rescale 0.5-2.0, crop,
flip) through the same normalization and padding, the same loss (per-pixel cross-entropy, 255
ignored) and the same SGD + poly schedule. Prints a markdown table: mIoU on the shapes val split,
seconds per train step and per inference image, and visionkit / torchvision ratios.

    OMP_NUM_THREADS=2 python benchmarks/fcn_vs_torchvision.py --steps 2000 --crop 256
    python benchmarks/fcn_vs_torchvision.py --steps 5 --val-images 8   # timing only, quick
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from visionkit.config import load_config
from visionkit.data import build_dataloader, build_dataset
from visionkit.engine.optim import build_optimizer, build_scheduler
from visionkit.evaluation import SemSegEvaluator
from visionkit.models import build_model

IGNORE = 255


def make_models(num_classes: int) -> tuple[nn.Module, nn.Module]:
    """(visionkit FCN, torchvision FCN) with identical parameters."""
    tv = torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False
    )
    cfg = load_config("configs/fcn_resnet50_coco.yaml", ["model.backbone.pretrained=false"])
    cfg.model.num_classes = num_classes
    vk = build_model(cfg.model)
    names = {"conv1": "res2.0", "bn1": "res2.1", "layer1": "res2.4", "layer2": "res3",
             "layer3": "res4", "layer4": "res5"}  # fmt: skip
    own = {}
    for key, value in tv.backbone.state_dict().items():
        head, _, rest = key.partition(".")
        own[f"stages.{names[head]}.{rest}" if rest else names[head]] = value
    vk.backbone.load_state_dict(own)
    c = tv.classifier
    vk.head.layers[0].load_state_dict(c[0].state_dict())
    vk.head.layers[1].load_state_dict(c[1].state_dict())
    vk.head.score.load_state_dict(c[4].state_dict())
    return vk, tv


def tv_logits(tv: nn.Module, batch: Tensor) -> Tensor:
    return tv(batch)["out"]


def run(model: nn.Module, forward, args, loader, preprocess) -> tuple[float, list]:
    """Train ``args.steps`` steps; returns seconds per step (after the first) and the model."""
    cfg = load_config("configs/fcn_resnet50_coco.yaml", [f"train.lr={args.lr}", "train.epochs=1"])
    opt = build_optimizer(cfg.train, model)
    sched = build_scheduler(cfg.train, opt, args.steps)
    model.train()
    times, step = [], 0
    while step < args.steps:
        for images, targets in loader:
            start = time.perf_counter()
            batch, _, _ = preprocess(images)
            target = preprocess.masks([t["sem_seg"] for t in targets], batch.shape, IGNORE)
            loss = F.cross_entropy(forward(model, batch), target, ignore_index=IGNORE)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            times.append(time.perf_counter() - start)
            step += 1
            if step == args.steps:
                break
    return sum(times[1:]) / max(len(times) - 1, 1), model


@torch.no_grad()
def evaluate(model: nn.Module, forward, val, preprocess, class_names) -> tuple[float, float]:
    """(mIoU, seconds per image) on whole validation images."""
    model.eval()
    ev, seconds = SemSegEvaluator(class_names), 0.0
    for image, target in val:
        start = time.perf_counter()
        batch, sizes, _ = preprocess([image])
        h, w = sizes[0]
        pred = forward(model, batch)[0, :, :h, :w].argmax(0)
        seconds += time.perf_counter() - start
        ev.process([target], [{"sem_seg": pred}])
    return ev.evaluate()["sem_seg"]["mIoU"], seconds / len(val)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--val-images", type=int, default=300)
    args = p.parse_args()
    cfg = load_config(
        "configs/fcn8s_shapes.yaml",
        ["model.input_size=[]", "data.augment.scale_range=[0.5,2.0]", "data.augment.translate=0",
         f"data.augment.crop_size=[{args.crop},{args.crop}]"],
    )  # fmt: skip
    train = build_dataset(cfg.data.train, cfg.data.augment, None, train=True, task="sem_seg")
    val_set = build_dataset(cfg.data.val, cfg.data.augment, None, train=False, task="sem_seg")
    val = [val_set[i] for i in range(min(args.val_images, len(val_set)))]
    torch.manual_seed(0)
    vk, tv = make_models(len(train.class_names))
    preprocess = copy.deepcopy(vk.preprocess)
    rows = {}
    for name, model, forward in (
        ("visionkit", vk, lambda m, b: m(b)),
        ("torchvision", tv, tv_logits),
    ):
        torch.manual_seed(1)
        loader = build_dataloader(train, args.batch_size, 1, shuffle=True, drop_last=True, seed=1)
        step, model = run(model, forward, args, loader, preprocess)
        miou, infer = evaluate(model, forward, val, preprocess, train.class_names)
        rows[name] = (miou, step, infer)
    print("| model | mIoU | train s/step | inference s/image |\n|---|---|---|---|")
    for name, (miou, step, infer) in rows.items():
        print(f"| {name} | {miou:.1f} | {step:.3f} | {infer:.3f} |")
    (m1, s1, i1), (m0, s0, i0) = rows["visionkit"], rows["torchvision"]
    print(f"| ratio visionkit / torchvision | {m1 - m0:+.1f} | {s1 / s0:.3f} | {i1 / i0:.3f} |")


if __name__ == "__main__":
    main()
