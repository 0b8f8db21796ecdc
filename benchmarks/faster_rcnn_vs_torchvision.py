"""visionkit's Faster R-CNN against torchvision's ``FasterRCNN``, side by side, in one run.

Both models are built from ``configs/faster_rcnn_shapes.yaml``'s settings: the same backbone
module (Fast YOLO's trunk to ``stage4``, stride 16, copied so both start from the same weights),
images kept at 256 px, the same anchors (8 square sizes 16-181 px), RPN (3x3 conv, 256 anchors
sampled at up to 1:1, 1000 -> NMS 0.7 -> 500 proposals in training, 300 at test), RoI max pooling
7x7 on stride 16 (torchvision gets a ``torchvision.ops.roi_pool`` adapter in place of its
default RoIAlign), two FC-256 layers, 128 RoIs per image at 25 % foreground, background IoU in
[0, 0.5), smooth-L1 with beta 1/9 on both stages (torchvision's), per-class NMS 0.5 at test, and
the same AdamW + warmup + cosine schedule with gradient clipping. Every training batch (shapes
train split, the config's augmentation) goes through both models in lockstep, so drifts in the
machine's load hit both alike. Prints a markdown table: COCO AP and AP50 on shapes val, seconds
per train step and per inference image (batches of ``--eval-batch`` images), and the ratios.

    OMP_NUM_THREADS=2 python benchmarks/faster_rcnn_vs_torchvision.py               # 10 epochs
    python benchmarks/faster_rcnn_vs_torchvision.py --epochs 1 --train-images 32 --val-images 16
"""

from __future__ import annotations

import argparse
import copy
import time
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.nn.utils import clip_grad_norm_
from torch.utils.data import Subset
from torchvision.models.detection import FasterRCNN as TVFasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import roi_pool

from visionkit.config import load_config
from visionkit.data import build_dataloader, build_dataset
from visionkit.data.build import seed_transforms
from visionkit.engine.optim import build_optimizer, build_scheduler
from visionkit.evaluation.coco_eval import CocoEvaluator
from visionkit.models import build_model

CONFIG = "configs/faster_rcnn_shapes.yaml"
SHARED = ["model.roi_head.smooth_l1_beta=0.1111"]  # torchvision's box loss (beta 1/9)


class TrunkAsFeatures(nn.Module):
    """A visionkit backbone returning its one level as torchvision's ``{"0": features}``."""

    def __init__(self, backbone: nn.Module, level: str, channels: int) -> None:
        super().__init__()
        self.body, self.level, self.out_channels = backbone, level, channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict([("0", self.body(x)[self.level])])


class RoIPoolAdapter(nn.Module):
    """``torchvision.ops.roi_pool`` with the call signature of torchvision's RoI heads."""

    def __init__(self, size: int, stride: int) -> None:
        super().__init__()
        self.size, self.scale = size, 1.0 / stride

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes) -> Tensor:
        return roi_pool(features["0"], proposals, self.size, self.scale)


class TorchvisionPredictor(nn.Module):
    """torchvision's detector behind visionkit's ``loss``/``predict`` contract (labels 0..C-1)."""

    def __init__(self, model: TVFasterRCNN) -> None:
        super().__init__()
        self.model = model

    def loss(self, images: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        tv_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
        return self.model(images, tv_targets)

    @torch.no_grad()
    def predict(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        out = self.model(images)
        return [
            {"boxes": o["boxes"], "scores": o["scores"], "labels": o["labels"] - 1} for o in out
        ]


def make_models(cfg) -> tuple[nn.Module, nn.Module]:
    """(visionkit FasterRCNN, torchvision FasterRCNN) with the same settings and start weights."""
    torch.manual_seed(0)
    vk = build_model(cfg.model)
    m, r, rh = cfg.model, cfg.model.rpn, cfg.model.roi_head
    level = vk.backbone.out_features[0]
    channels, stride = vk.backbone.levels[level]
    tv = TVFasterRCNN(
        TrunkAsFeatures(copy.deepcopy(vk.backbone), level, channels),
        min_size=m.resize.min_size,
        max_size=m.resize.max_size,
        image_mean=list(m.pixel_mean),
        image_std=list(m.pixel_std),
        rpn_anchor_generator=TVAnchorGenerator(
            (tuple(m.anchors.sizes[0]),), (tuple(m.anchors.aspect_ratios),)
        ),
        rpn_pre_nms_top_n_train=r.pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=r.pre_nms_top_n_test,
        rpn_post_nms_top_n_train=r.post_nms_top_n_train,
        rpn_post_nms_top_n_test=r.post_nms_top_n_test,
        rpn_nms_thresh=r.nms_thresh,
        rpn_fg_iou_thresh=r.pos_iou_thresh,
        rpn_bg_iou_thresh=r.neg_iou_thresh,
        rpn_batch_size_per_image=r.batch_size_per_image,
        rpn_positive_fraction=r.positive_fraction,
        box_head=TwoMLPHead(channels * rh.pool_size**2, rh.fc_dim),
        box_predictor=FastRCNNPredictor(rh.fc_dim, m.num_classes + 1),
        box_score_thresh=rh.score_thresh,
        box_nms_thresh=rh.nms_thresh,
        box_detections_per_img=rh.max_detections,
        box_fg_iou_thresh=rh.fg_iou_thresh,
        box_bg_iou_thresh=rh.fg_iou_thresh,
        box_batch_size_per_image=rh.batch_size_per_image,
        box_positive_fraction=rh.positive_fraction,
        bbox_reg_weights=tuple(rh.box_coder_weights),
    )
    tv.roi_heads.box_roi_pool = RoIPoolAdapter(rh.pool_size, stride)  # the type check forbids it
    rpn = tv.rpn.head
    rpn.conv[0][0].load_state_dict(vk.rpn.head.conv.state_dict())
    rpn.cls_logits.load_state_dict(vk.rpn.head.objectness.state_dict())
    rpn.bbox_pred.load_state_dict(vk.rpn.head.deltas.state_dict())
    fc = [layer for layer in vk.roi_heads.box_head.layers if isinstance(layer, nn.Linear)]
    tv.roi_heads.box_head.fc6.load_state_dict(fc[0].state_dict())
    tv.roi_heads.box_head.fc7.load_state_dict(fc[1].state_dict())
    predictor = tv.roi_heads.box_predictor
    with torch.no_grad():  # torchvision: background is class 0; visionkit: class C
        c = m.num_classes
        predictor.cls_score.weight.copy_(vk.roi_heads.cls_score.weight.roll(1, 0))
        predictor.cls_score.bias.copy_(vk.roi_heads.cls_score.bias.roll(1, 0))
        predictor.bbox_pred.weight[4:].copy_(vk.roi_heads.bbox_pred.weight)
        predictor.bbox_pred.bias[4:].copy_(vk.roi_heads.bbox_pred.bias)
        predictor.bbox_pred.weight[:4].zero_()
        predictor.bbox_pred.bias[:4].zero_()
        assert predictor.cls_score.out_features == c + 1
    return vk, TorchvisionPredictor(tv)


def evaluate(model: nn.Module, dataset, batch_size: int) -> tuple[dict[str, float], float]:
    """(COCO box metrics in percent, seconds per image) on ``dataset``."""
    loader = build_dataloader(dataset, batch_size, 0, shuffle=False)
    evaluator = CocoEvaluator(dataset.dataset.coco, dataset.dataset.cat_ids)
    model.eval()
    seconds = 0.0
    with torch.inference_mode():
        for images, targets in loader:
            start = time.perf_counter()
            predictions = model.predict(images)
            seconds += time.perf_counter() - start
            evaluator.process(targets, predictions)
    model.train()
    return evaluator.evaluate()["bbox"], seconds / len(dataset)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=10, help="the quick config's schedule")
    p.add_argument("--train-images", type=int, default=0, help="use the first N (0 = all)")
    p.add_argument("--val-images", type=int, default=0, help="use the first N (0 = all)")
    p.add_argument("--eval-batch", type=int, default=8)
    args = p.parse_args()
    cfg = load_config(CONFIG, [*SHARED, f"train.epochs={args.epochs}"])
    train = build_dataset(cfg.data.train, cfg.data.augment, None, train=True, task="detection")
    val = build_dataset(cfg.data.val, cfg.data.augment, None, train=False, task="detection")
    seed_transforms(train, cfg.train.seed)
    train = Subset(train, range(args.train_images or len(train)))
    val = Subset(val, range(args.val_images or len(val)))
    models = dict(zip(("visionkit", "torchvision"), make_models(cfg), strict=True))
    opts, scheds, step_times = {}, {}, {name: [] for name in models}
    loader = build_dataloader(
        train, cfg.data.batch_size, 0, shuffle=True, drop_last=True, seed=cfg.train.seed
    )
    for name, model in models.items():
        model.to(memory_format=torch.channels_last).train()
        opts[name] = build_optimizer(cfg.train, model)
        scheds[name] = build_scheduler(cfg.train, opts[name], len(loader))
    for epoch in range(args.epochs):
        for images, targets in loader:
            for name, model in models.items():
                start = time.perf_counter()
                loss = sum(model.loss(images, targets).values())
                opts[name].zero_grad()
                loss.backward()
                clip_grad_norm_(model.parameters(), cfg.train.clip_grad_norm)
                opts[name].step()
                scheds[name].step()
                step_times[name].append(time.perf_counter() - start)
        print(f"epoch {epoch + 1}/{args.epochs} done", flush=True)
    rows = {}
    for name, model in models.items():
        metrics, infer = evaluate(model, val, args.eval_batch)
        times = step_times[name][1:]
        rows[name] = (metrics["AP"], metrics["AP50"], sum(times) / max(len(times), 1), infer)
    print("| model | AP | AP50 | train s/step | inference s/image |\n|---|---|---|---|---|")
    for name, (ap, ap50, step, infer) in rows.items():
        print(f"| {name} | {ap:.1f} | {ap50:.1f} | {step:.3f} | {infer:.4f} |")
    (a1, b1, s1, i1), (a0, b0, s0, i0) = rows["visionkit"], rows["torchvision"]
    print(
        f"| visionkit - torchvision (AP), / (times) | {a1 - a0:+.1f} | {b1 - b0:+.1f} | "
        f"{s1 / s0:.3f} | {i1 / i0:.3f} |"
    )


if __name__ == "__main__":
    main()
