"""visionkit's FCN against torchvision's FCN architecture, side by side, in one run.

``--backbone resnet50`` is torchvision's ``fcn_resnet50`` exactly (dilated ResNet-50 trunk at
output stride 8, 3x3 conv + BN head of 512, 1x1 score, no auxiliary loss); ``resnet18`` (the
default, sized for a CPU) is torchvision's ``FCN`` class on a ResNet-18 trunk at stride 32 (its
BasicBlocks cannot dilate) with ``FCNHead(512, C)``. Both models start from the same weights
(torchvision's random initialization, copied into visionkit's), and every training step feeds the
same batch (shapes train split, torchvision's reference augmentation: rescale, crop, flip) through
the same normalization and padding into both, in lockstep, so drifts in the machine's load hit
both alike; the same loss (per-pixel cross-entropy, 255 ignored) and optimizer (SGD, or
``--optimizer adamw``) with poly decay. Prints markdown tables: mIoU on the shapes val split
(whole images, the two models interleaved on each), seconds per train step and per inference
image, and visionkit / torchvision ratios; then each model's IoU per class.

    OMP_NUM_THREADS=2 python benchmarks/fcn_vs_torchvision.py --steps 1500 --crop 128
    python benchmarks/fcn_vs_torchvision.py --backbone resnet50 --steps 2000 --crop 256  # GPU
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
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.fcn import FCN, FCNHead

from visionkit.config import load_config
from visionkit.data import build_dataloader, build_dataset
from visionkit.engine.optim import build_optimizer, build_scheduler
from visionkit.evaluation import SemSegEvaluator
from visionkit.models import build_model
from visionkit.structures.labels import IGNORE_LABEL


def make_models(num_classes: int, backbone: str) -> tuple[nn.Module, nn.Module]:
    """(visionkit FCN, torchvision FCN) with identical parameters."""
    if backbone == "resnet50":
        tv = torchvision.models.segmentation.fcn_resnet50(
            weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False
        )
        overrides = []
    else:
        trunk = torchvision.models.resnet18(weights=None)
        tv = FCN(IntermediateLayerGetter(trunk, {"layer4": "out"}), FCNHead(512, num_classes))
        overrides = ["model.backbone.name=resnet18", "model.backbone.output_stride=32",
                     "model.fcn.head_channels=128"]  # fmt: skip
    cfg = load_config(
        "visionkit/configs/fcn_resnet50_coco.yaml", ["model.backbone.pretrained=false", *overrides]
    )
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


def train_models(models: dict, forwards: dict, args, loader, preprocess) -> dict[str, float]:
    """Train every model ``args.steps`` steps on the same batches, in lockstep; returns each
    one's seconds per step (after the first)."""
    cfg = load_config(
        "visionkit/configs/fcn_resnet50_coco.yaml",
        [f"train.optimizer={args.optimizer}", f"train.lr={args.lr}", "train.epochs=1"],
    )
    opts = {name: build_optimizer(cfg.train, m) for name, m in models.items()}
    scheds = {name: build_scheduler(cfg.train, opts[name], args.steps) for name in models}
    times: dict[str, list[float]] = {name: [] for name in models}
    step = 0
    while step < args.steps:
        for images, targets in loader:
            for name, model in models.items():
                model.train()
                torch.manual_seed(step)  # the same dropout masks in both models
                start = time.perf_counter()
                batch = preprocess(images)
                target = batch.masks_to_input([t["sem_seg"] for t in targets])
                logits = forwards[name](model, batch.tensor)
                loss = F.cross_entropy(logits, target, ignore_index=IGNORE_LABEL)
                opts[name].zero_grad()
                loss.backward()
                opts[name].step()
                scheds[name].step()
                times[name].append(time.perf_counter() - start)
            step += 1
            if step == args.steps:
                break
    return {name: sum(t[1:]) / max(len(t) - 1, 1) for name, t in times.items()}


@torch.no_grad()
def evaluate(models: dict, forwards: dict, val, preprocess, class_names) -> dict:
    """Per model (metrics, seconds per image) on whole validation images, the models interleaved on
    each image (alternating which goes first) so that the machine's load hits both alike."""
    evs = {name: SemSegEvaluator(class_names) for name in models}
    seconds = dict.fromkeys(models, 0.0)
    for i, (image, target) in enumerate(val):
        for name in list(models)[:: 1 if i % 2 == 0 else -1]:
            model = models[name].eval()
            start = time.perf_counter()
            batch = preprocess([image])
            h, w = batch.image_sizes[0].long().tolist()
            pred = forwards[name](model, batch.tensor)[0, :, :h, :w].argmax(0)
            seconds[name] += time.perf_counter() - start
            evs[name].process([target], [{"sem_seg": pred}])
    return {name: (evs[name].evaluate()["sem_seg"], seconds[name] / len(val)) for name in models}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backbone", choices=["resnet18", "resnet50"], default="resnet18")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--val-images", type=int, default=300)
    p.add_argument("--seed", type=int, default=0, help="start weights and batch order")
    args = p.parse_args()
    cfg = load_config(
        "visionkit/configs/fcn8s_shapes.yaml",
        ["model.input_size=[]", "data.augment.scale_range=[0.5,2.0]", "data.augment.translate=0",
         f"data.augment.crop_size=[{args.crop},{args.crop}]"],
    )  # fmt: skip
    train = build_dataset(cfg.data.train, cfg.data.augment, None, train=True, task="sem_seg")
    val_set = build_dataset(cfg.data.val, cfg.data.augment, None, train=False, task="sem_seg")
    val = [val_set[i] for i in range(min(args.val_images, len(val_set)))]
    torch.manual_seed(args.seed)
    vk, tv = make_models(len(train.class_names), args.backbone)
    preprocess = copy.deepcopy(vk.preprocess)
    models = {"visionkit": vk, "torchvision": tv}
    forwards = {"visionkit": lambda m, b: m(b), "torchvision": tv_logits}
    for model in models.values():
        model.to(memory_format=torch.channels_last)
    loader = build_dataloader(
        train, args.batch_size, 0, shuffle=True, drop_last=True, seed=args.seed + 1
    )
    steps = train_models(models, forwards, args, loader, preprocess)
    scores = evaluate(models, forwards, val, preprocess, train.class_names)
    rows = {name: (scores[name][0]["mIoU"], steps[name], scores[name][1]) for name in models}
    print("| model | mIoU | train s/step | inference s/image |\n|---|---|---|---|")
    for name, (miou, step, infer) in rows.items():
        print(f"| {name} | {miou:.1f} | {step:.3f} | {infer:.3f} |")
    (m1, s1, i1), (m0, s0, i0) = rows["visionkit"], rows["torchvision"]
    print(f"| ratio visionkit / torchvision | {m1 - m0:+.1f} | {s1 / s0:.3f} | {i1 / i0:.3f} |")
    names = train.class_names
    print(f"\n| IoU per class | {' | '.join(names)} |\n|---|{'---|' * len(names)}")
    for name in models:
        ious = " | ".join(f"{scores[name][0][f'IoU-{c}']:.1f}" for c in names)
        print(f"| {name} | {ious} |")


if __name__ == "__main__":
    main()
