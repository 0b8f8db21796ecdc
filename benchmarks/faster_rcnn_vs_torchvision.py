"""visionkit's Faster R-CNN against torchvision's ``FasterRCNN``, side by side, in one run.

Both models are built from ``visionkit/configs/faster_rcnn_shapes.yaml``'s settings (or ``--config``'s): the
same backbone module (copied, so both start from the same weights), FPN (torchvision's
``FeaturePyramidNetwork`` with visionkit's start weights) when the config has one, images kept at
their 256 px, the same anchors, RPN (3x3 conv, 256 anchors sampled at up to 1:1, top-N per level
-> NMS 0.7 -> post-NMS top-N), RoI max pooling 7x7 (torchvision gets a ``torchvision.ops.roi_pool``
adapter with its own ``LevelMapper`` in place of its default RoIAlign, which is 4-7x slower on
CPU), two FC layers, the same RoI sampling, smooth-L1 with beta 1/9 on both stages
(torchvision's), per-class NMS at test, and the same AdamW + warmup + cosine schedule with
gradient clipping. Each model runs in its own default memory layout: visionkit in NHWC
(``train.channels_last``, its default), torchvision in NCHW, as it ships; a third model, a copy
of torchvision's converted to NHWC, trains beside them for the comparison at equal layouts
(``--nchw-only`` leaves it out). Every training batch (shapes train split, the config's augmentation) goes
through both models in lockstep, so drifts in the machine's load hit both alike. Prints a
markdown table: COCO AP and AP50 on shapes val, seconds per train step and per inference image
(batches of ``--eval-batch`` images, the two models interleaved batch by batch), and the ratios.
``--seed`` draws the start weights and the batch order.

    python benchmarks/faster_rcnn_vs_torchvision.py --epochs 1 --seed 0
    python benchmarks/faster_rcnn_vs_torchvision.py --epochs 1 --train-images 32 --val-images 16
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.nn.utils import clip_grad_norm_
from torch.utils.data import Subset
from torchvision.models.detection import FasterRCNN as TVFasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import FeaturePyramidNetwork, roi_pool
from torchvision.ops.poolers import initLevelMapper

from visionkit.config import load_config
from visionkit.data import build_dataloader, build_dataset
from visionkit.data.transforms import seed_transforms
from visionkit.engine.optim import build_optimizer, build_scheduler
from visionkit.evaluation.coco_eval import CocoEvaluator
from visionkit.models import build_model

SHARED = ["model.roi_head.smooth_l1_beta=0.1111"]  # torchvision's box loss (beta 1/9)


class TrunkAsFeatures(nn.Module):
    """A visionkit backbone's levels as torchvision's ``{"0": ..., "1": ...}``, through a
    torchvision ``FeaturePyramidNetwork`` when one is given."""

    def __init__(self, backbone: nn.Module, out_channels: int, fpn: nn.Module | None) -> None:
        super().__init__()
        self.body, self.fpn, self.out_channels = backbone, fpn, out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        out = self.body(x)
        levels = OrderedDict((str(i), out[n]) for i, n in enumerate(self.body.out_features))
        return self.fpn(levels) if self.fpn is not None else levels


class RoIPoolAdapter(nn.Module):
    """``torchvision.ops.roi_pool`` on one or more levels, each RoI on the level torchvision's
    ``LevelMapper`` picks, with the call signature of torchvision's RoI heads."""

    def __init__(
        self, size: int, strides: list[int], canonical_size: float, canonical_level: int
    ) -> None:
        super().__init__()
        self.size, self.strides = size, strides
        k_min, k_max = int(math.log2(strides[0])), int(math.log2(strides[-1]))
        self.mapper = initLevelMapper(k_min, k_max, canonical_size, canonical_level)

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes) -> Tensor:
        # float32 (a no-op there): torchvision's CPU kernel has no bfloat16 under autocast
        feats = [f.float() for f in list(features.values())[: len(self.strides)]]
        index = torch.cat(
            [torch.full((len(p), 1), i, dtype=p.dtype) for i, p in enumerate(proposals)]
        )
        rois = torch.cat([index.to(proposals[0].device), torch.cat(proposals)], dim=1).float()
        if len(feats) == 1:
            return roi_pool(feats[0], rois, self.size, 1.0 / self.strides[0])
        levels = self.mapper(proposals)
        out = rois.new_zeros(len(rois), feats[0].shape[1], self.size, self.size)
        for level, (f, stride) in enumerate(zip(feats, self.strides, strict=True)):
            idx = torch.nonzero(levels == level).squeeze(1)
            out[idx] = roi_pool(f, rois[idx], self.size, 1.0 / stride)
        return out


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


def make_models(cfg, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """(visionkit's Faster R-CNN, torchvision's FasterRCNN) with the same settings and start
    weights (drawn with ``seed``)."""
    torch.manual_seed(seed)
    vk = build_model(cfg.model)
    m, r, rh = cfg.model, cfg.model.rpn, cfg.model.roi_head
    levels = [vk.backbone.levels[n] for n in vk.backbone.out_features]
    fpn, strides, channels = None, [s for _, s in levels], levels[0][0]
    if vk.neck is not None:
        fpn = FeaturePyramidNetwork([c for c, _ in levels], m.fpn.out_channels)
        for ours, theirs in zip(vk.neck.lateral, fpn.inner_blocks, strict=True):
            theirs[0].load_state_dict(ours.state_dict())
        for ours, theirs in zip(vk.neck.output, fpn.layer_blocks, strict=True):
            theirs[0].load_state_dict(ours.state_dict())
        channels = m.fpn.out_channels
    tv = TVFasterRCNN(
        TrunkAsFeatures(copy.deepcopy(vk.backbone), channels, fpn),
        min_size=m.resize.min_size,
        max_size=m.resize.max_size,
        image_mean=list(m.pixel_mean),
        image_std=list(m.pixel_std),
        rpn_anchor_generator=TVAnchorGenerator(
            tuple(tuple(sizes) for sizes in m.anchors.sizes),
            (tuple(m.anchors.aspect_ratios),) * len(m.anchors.sizes),
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
    # the constructor's type check admits only MultiScaleRoIAlign
    tv.roi_heads.box_roi_pool = RoIPoolAdapter(
        rh.pool_size, strides, m.fpn.canonical_size, m.fpn.canonical_level
    )
    rpn = tv.rpn.head
    rpn.conv[0][0].load_state_dict(vk.proposer.head.conv.state_dict())
    rpn.cls_logits.load_state_dict(vk.proposer.head.objectness.state_dict())
    rpn.bbox_pred.load_state_dict(vk.proposer.head.deltas.state_dict())
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


def evaluate(
    models: dict[str, nn.Module], dataset, batch_size: int
) -> dict[str, tuple[dict[str, float], float]]:
    """Per model (COCO box metrics in percent, seconds per image) on ``dataset``, the models
    interleaved batch by batch (alternating which goes first), so that drifts in the machine's
    load hit both alike."""
    loader = build_dataloader(dataset, batch_size, 0, shuffle=False)
    coco, cat_ids = dataset.dataset.coco, dataset.dataset.cat_ids
    evaluators = {name: CocoEvaluator(coco, cat_ids) for name in models}
    seconds = dict.fromkeys(models, 0.0)
    for model in models.values():
        model.eval()
    with torch.inference_mode():
        for i, (images, targets) in enumerate(loader):
            for name in list(models)[:: 1 if i % 2 == 0 else -1]:
                start = time.perf_counter()
                predictions = models[name].predict(images)
                seconds[name] += time.perf_counter() - start
                evaluators[name].process(targets, predictions)
    for model in models.values():
        model.train()
    return {
        name: (evaluators[name].evaluate()["bbox"], seconds[name] / len(dataset)) for name in models
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default="visionkit/configs/faster_rcnn_shapes.yaml")
    p.add_argument("--epochs", type=int, default=0, help="0 = the config's train.epochs")
    p.add_argument("--train-images", type=int, default=0, help="use the first N (0 = all)")
    p.add_argument("--val-images", type=int, default=0, help="use the first N (0 = all)")
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument(
        "--nchw-only",
        action="store_true",
        help="leave out the third model (torchvision converted to NHWC)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="start weights and batch order (default: train.seed)"
    )
    args = p.parse_args()
    overrides = [*SHARED] + ([f"train.seed={args.seed}"] if args.seed is not None else [])
    cfg = load_config(
        args.config, overrides + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    )
    train = build_dataset(cfg.data.train, cfg.data.augment, None, train=True, task="detection")
    val = build_dataset(cfg.data.val, cfg.data.augment, None, train=False, task="detection")
    seed_transforms(train, cfg.train.seed)
    train = Subset(train, range(args.train_images or len(train)))
    val = Subset(val, range(args.val_images or len(val)))
    vk, tv = make_models(cfg, cfg.train.seed)
    models = {"visionkit": vk, "torchvision": tv}
    if not args.nchw_only:  # torchvision converted to NHWC too: the comparison at equal layouts
        models["torchvision NHWC"] = copy.deepcopy(tv).to(memory_format=torch.channels_last)
    if cfg.train.channels_last:  # visionkit's default layout (train.channels_last)
        vk.to(memory_format=torch.channels_last)
    opts, scheds, step_times = {}, {}, {name: [] for name in models}
    loader = build_dataloader(
        train, cfg.data.batch_size, 0, shuffle=True, drop_last=True, seed=cfg.train.seed
    )
    for name, model in models.items():
        model.train()
        opts[name] = build_optimizer(cfg.train, model)
        scheds[name] = build_scheduler(cfg.train, opts[name], len(loader))
    for epoch in range(cfg.train.epochs):
        for i, (images, targets) in enumerate(loader):
            for name in list(models)[:: 1 if i % 2 == 0 else -1]:  # who goes first alternates
                model = models[name]
                start = time.perf_counter()
                loss = sum(model.loss(images, targets).values())
                opts[name].zero_grad()
                loss.backward()
                clip_grad_norm_(model.parameters(), cfg.train.clip_grad_norm)
                opts[name].step()
                scheds[name].step()
                step_times[name].append(time.perf_counter() - start)
        print(f"epoch {epoch + 1}/{cfg.train.epochs} done", flush=True)
    rows = {}
    for name, (metrics, infer) in evaluate(models, val, args.eval_batch).items():
        times = step_times[name][1:]
        rows[name] = (metrics["AP"], metrics["AP50"], sum(times) / max(len(times), 1), infer)
    print("| model | AP | AP50 | train s/step | inference s/image |\n|---|---|---|---|---|")
    for name, (ap, ap50, step, infer) in rows.items():
        print(f"| {name} | {ap:.1f} | {ap50:.1f} | {step:.3f} | {infer:.4f} |")
    a1, b1, s1, i1 = rows["visionkit"]
    for name in list(rows)[1:]:
        a0, b0, s0, i0 = rows[name]
        print(
            f"| visionkit - {name} (AP), / (times) | {a1 - a0:+.1f} | {b1 - b0:+.1f} | "
            f"{s1 / s0:.3f} | {i1 / i0:.3f} |"
        )


if __name__ == "__main__":
    main()
