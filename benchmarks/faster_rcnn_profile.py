"""Where a Faster R-CNN training step and inference spend their time, stage by stage, visionkit
and torchvision side by side (``benchmarks/faster_rcnn_vs_torchvision.py``'s twin models: the
same backbone weights, FPN, anchors, RPN, RoI max pooling and heads).

Each stage of both models is wrapped in a wall-clock timer (self time: a stage's time less that
of the stages inside it): preprocessing, backbone, FPN, anchors, RPN head, proposal selection
(decode, top-N, NMS), RPN targets and loss, RoI sampling, RoI pooling, box head, the RoI losses,
post-processing; the backward pass and the optimizer step are one stage each, the rest of a step
is "other". Each model runs in its default memory layout (visionkit NHWC, torchvision NCHW as
it ships; ``--torchvision-channels-last`` for both in NHWC). The two models run the same batches in alternation after warm-up steps. Prints a
markdown table: milliseconds per training step (batch of ``--batch`` images) and per inference
batch, each stage's share, and the ratio of the totals; then, with ``--ops``, the top operators
of each model under ``torch.profiler``.

    python benchmarks/faster_rcnn_profile.py                # 3 warm-up + 12 timed steps
    python benchmarks/faster_rcnn_profile.py --steps 2 --warmup 1 --ops 0   # a smoke run
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision.models.detection.roi_heads as tv_roi_heads
from torch.profiler import ProfilerActivity, profile

from visionkit.config import load_config
from visionkit.data import build_dataset
from visionkit.data.build import collate_fn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faster_rcnn_vs_torchvision import SHARED, make_models  # noqa: E402  (the twin models)

STAGES = (
    "preprocess", "backbone", "FPN", "anchors", "RPN head", "proposal selection",
    "RPN targets + loss", "RoI sampling", "RoI pooling", "box head", "RoI losses",
    "post-processing", "backward", "optimizer", "other",
)  # fmt: skip


class StageTimer:
    """Self wall time per stage label: nested stages are subtracted from their parent's."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []  # per open stage: [start, time of its children]

    def wrap(self, label: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self._stack.append([time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                start, children = self._stack.pop()
                spent = time.perf_counter() - start
                self.totals[label] += spent - children
                if self._stack:
                    self._stack[-1][1] += spent

        return timed

    def patch(self, owner: object, attr: str, label: str) -> None:
        """Time ``owner.attr`` (a module's forward or a method) under ``label``."""
        setattr(owner, attr, self.wrap(label, getattr(owner, attr)))


def instrument_visionkit(model, timer: StageTimer) -> None:
    rpn, heads = model.proposer, model.roi_heads
    timer.patch(model.preprocess, "forward", "preprocess")
    timer.patch(model.backbone, "forward", "backbone")
    timer.patch(model.neck, "forward", "FPN")
    timer.patch(rpn.anchor_generator, "forward", "anchors")
    timer.patch(rpn.head, "forward", "RPN head")
    timer.patch(rpn, "select", "proposal selection")
    timer.patch(rpn, "loss", "RPN targets + loss")
    timer.patch(heads, "sample", "RoI sampling")
    timer.patch(heads.pooler, "forward", "RoI pooling")
    timer.patch(heads.box_head, "forward", "box head")
    timer.patch(heads.cls_score, "forward", "box head")
    timer.patch(heads.bbox_pred, "forward", "box head")
    timer.patch(heads, "loss", "RoI losses")  # its sampling and head are nested stages
    timer.patch(heads, "detections", "post-processing")


def instrument_torchvision(wrapper, timer: StageTimer) -> None:
    tv = wrapper.model
    rpn, heads = tv.rpn, tv.roi_heads
    timer.patch(tv.transform, "forward", "preprocess")
    timer.patch(tv.transform, "postprocess", "post-processing")
    timer.patch(tv.backbone.body, "forward", "backbone")
    timer.patch(tv.backbone.fpn, "forward", "FPN")
    timer.patch(rpn.anchor_generator, "forward", "anchors")
    timer.patch(rpn.head, "forward", "RPN head")
    timer.patch(rpn.box_coder, "decode", "proposal selection")
    timer.patch(rpn, "filter_proposals", "proposal selection")
    timer.patch(rpn, "assign_targets_to_anchors", "RPN targets + loss")
    timer.patch(rpn.box_coder, "encode", "RPN targets + loss")
    timer.patch(rpn, "compute_loss", "RPN targets + loss")
    timer.patch(heads, "select_training_samples", "RoI sampling")
    timer.patch(heads.box_roi_pool, "forward", "RoI pooling")
    timer.patch(heads.box_head, "forward", "box head")
    timer.patch(heads.box_predictor, "forward", "box head")
    timer.patch(heads, "postprocess_detections", "post-processing")
    timer.patch(tv_roi_heads, "fastrcnn_loss", "RoI losses")


def table(phase: str, per_model: dict[str, dict[str, float]], unit: str) -> str:
    """Markdown: each stage's milliseconds and share per model, the totals and their ratio."""
    names = list(per_model)
    lines = [
        f"| {phase} stage | " + " | ".join(f"{n} ms | {n} %" for n in names) + " |",
        "|---|" + "---:|---:|" * len(names),
    ]
    totals = {n: sum(per_model[n].values()) for n in names}
    for stage in STAGES:
        if not any(per_model[n].get(stage, 0.0) for n in names):
            continue
        cells = [
            f"{per_model[n].get(stage, 0.0) * 1e3:.1f} | {100 * per_model[n].get(stage, 0.0) / totals[n]:.1f}"
            for n in names
        ]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines.append(
        f"| **total per {unit}** | "
        + " | ".join(f"**{totals[n] * 1e3:.1f}** | 100" for n in names)
        + " |"
    )
    lines.append(
        f"\n{phase}: {names[0]} / {names[1]} = **{totals[names[0]] / totals[names[1]]:.3f}**"
    )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default="faster_rcnn_shapes")
    p.add_argument("overrides", nargs="*", help="dotted config overrides (key=value)")
    p.add_argument("--batch", type=int, default=8, help="images per step and per inference batch")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=12, help="timed steps (and inference batches)")
    p.add_argument("--ops", type=int, default=8, help="top operators per model and phase (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--amp", action="store_true", help="bfloat16 autocast around both models' passes"
    )
    p.add_argument(
        "--torchvision-channels-last",
        action="store_true",
        help="torchvision's model in NHWC too (default: NCHW, as it ships; visionkit: NHWC)",
    )
    args = p.parse_args()
    cfg = load_config(args.config, [*SHARED, *args.overrides])
    ds = build_dataset(cfg.data.train, cfg.data.augment, None, train=True, task="detection")
    n = args.warmup + args.steps
    batches = [collate_fn([ds[i * args.batch + j] for j in range(args.batch)]) for i in range(n)]
    models = dict(zip(("visionkit", "torchvision"), make_models(cfg, args.seed), strict=True))
    instrument = {"visionkit": instrument_visionkit, "torchvision": instrument_torchvision}
    timers, optimizers = {}, {}
    layouts = {"visionkit": cfg.train.channels_last, "torchvision": args.torchvision_channels_last}
    for name, model in models.items():
        if layouts[name]:
            model.to(memory_format=torch.channels_last)
        model.train()
        optimizers[name] = torch.optim.AdamW(model.parameters(), 1e-4)
        timers[name] = StageTimer()
        instrument[name](model, timers[name])

    def step(name: str, phase: str, images, targets) -> None:
        model, timer = models[name], timers[name]
        autocast = torch.autocast("cpu", torch.bfloat16, enabled=args.amp)
        if phase == "predict":
            with torch.inference_mode(), autocast:
                model.predict(images)
            return
        opt = optimizers[name]
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = sum(model.loss(images, targets).values())
        timer.wrap("backward", loss.backward)()
        timer.wrap("optimizer", opt.step)()

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batches of {args.batch}; "
        + ", ".join(f"{n} {'NHWC' if cl else 'NCHW'}" for n, cl in layouts.items())
        + ("; bfloat16 autocast" if args.amp else "; float32")
    )
    for phase in ("train", "predict"):
        for model in models.values():
            model.train(phase == "train")
        spent = dict.fromkeys(models, 0.0)
        for i, (images, targets) in enumerate(batches):
            if i == args.warmup:
                for timer in timers.values():
                    timer.totals.clear()
                spent = dict.fromkeys(models, 0.0)
            for name in list(models)[:: 1 if i % 2 == 0 else -1]:
                start = time.perf_counter()
                step(name, phase, images, targets)
                spent[name] += time.perf_counter() - start
        per_model = {}
        for name, timer in timers.items():
            stages = {k: v / args.steps for k, v in timer.totals.items()}
            stages["other"] = spent[name] / args.steps - sum(stages.values())
            per_model[name] = stages
        print(table(phase, per_model, "step" if phase == "train" else "batch") + "\n")
        if args.ops:
            for name in models:
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for images, targets in batches[args.warmup :][:4]:
                        step(name, phase, images, targets)
                events = prof.key_averages()
                total = sum(e.self_cpu_time_total for e in events)
                top = sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.ops]
                print(
                    f"{name} {phase}, top operators (self CPU): "
                    + ", ".join(f"{e.key} {100 * e.self_cpu_time_total / total:.1f} %" for e in top)
                )
            print()


if __name__ == "__main__":
    main()
