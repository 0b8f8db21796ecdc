"""The training loop: epochs of SGD/AdamW steps, evaluation, checkpoints, logs, resumption.

One process, or several under torchrun (``engine/distributed.py``, docs/distributed.md). SIGINT
and SIGTERM stop it at the next optimizer step with a checkpoint that ``resume`` continues from
the same batch of the same epoch (``engine/signals.py``).
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from visionkit.checkpoints.device import place_model, select_device
from visionkit.checkpoints.store import save_checkpoint
from visionkit.checkpoints.weights import init_from_checkpoint, load_model_weights
from visionkit.config.loader import config_to_dict, save_config
from visionkit.config.schema import Config
from visionkit.data import build_dataloader, build_dataset
from visionkit.engine.amp import mixed_precision
from visionkit.engine.distributed import (
    EpochSampler,
    GatheredEvaluator,
    ShardSampler,
    any_rank,
    barrier,
    gradient_sync,
    init_distributed,
    local_main_first,
    mean_over_ranks,
    rank_seed,
    wrap_for_training,
)
from visionkit.engine.logger import MetricsLogger
from visionkit.engine.optim import build_optimizer, build_scheduler, lr_factor, scaled_lr
from visionkit.engine.resume import start_run
from visionkit.engine.rng import rng_state, set_rng_state
from visionkit.engine.signals import StopOnSignal, TrainingInterrupted
from visionkit.engine.training_curves import write_run_plots
from visionkit.errors import ConfigError, VisionkitError
from visionkit.evaluation import build_evaluator
from visionkit.evaluation.build import check_best_metric
from visionkit.evaluation.direction import improves, worst_value
from visionkit.evaluation.loop import evaluate
from visionkit.evaluation.units import format_value
from visionkit.io.atomic import leftover_temporaries
from visionkit.io.heap import keep_large_blocks
from visionkit.models import build_model, model_task
from visionkit.utils.comm import broadcast_from_main, gather_to_main
from visionkit.utils.warn import warnings_part


class TrainingError(VisionkitError):
    """Training cannot go on (e.g. the loss became NaN or infinite)."""


PLAIN_LINE_SECONDS = 30  # without progress bars, a line of training progress this often


class Trainer:
    """Trains ``cfg``'s model on its data and writes everything under ``output_dir``.

    Writes ``config.yaml`` (the resolved config), ``last.pth`` each epoch (and when stopped by a
    signal), ``best.pth`` when the metric ``cfg.train.best_metric`` improves, ``metrics.jsonl``
    and ``tensorboard/`` events, and at the end of training ``plots/`` (the last evaluation's and
    the training curves: ``engine/training_curves.py``); under torchrun only rank 0 writes.
    """

    def __init__(
        self, cfg: Config, output_dir: str | Path, resume: bool = False, progress: bool = True
    ):
        tc, self.cfg, self.out = cfg.train, cfg, Path(output_dir)
        keep_large_blocks()  # each step's large tensors reuse freed memory (io/heap.py)
        if tc.accumulate_steps < 1:
            raise ConfigError(f"train.accumulate_steps must be >= 1, got {tc.accumulate_steps}")
        # before any long work: a fresh run never writes over another run's files; a resumed
        # one continues its checkpoint's config (engine/resume.py)
        start = start_run(self.out, cfg, resume)
        check_best_metric(tc.best_metric, model_task(cfg.model.name))
        self.dist, self.device = init_distributed(tc.dist_backend, select_device(tc.device))
        rank, world, bs = self.dist.rank, self.dist.world_size, cfg.data.batch_size
        self.progress = progress and self.dist.is_main
        self.last_line = time.time()
        torch.manual_seed(tc.seed)
        input_size = tuple(cfg.model.input_size)
        self.task = model_task(cfg.model.name)
        on_bad = cfg.data.on_bad_image  # unreadable images: skip or stop (data/bad_images.py)
        with local_main_first(self.dist):  # generated data and caches: written once per node
            train_set = build_dataset(
                cfg.data.train, cfg.data.augment, input_size, True, self.task, on_bad, self.progress
            )
            self.val_set = build_dataset(
                cfg.data.val, cfg.data.augment, input_size, False, self.task, on_bad, self.progress
            )
        if len(train_set.class_names) != cfg.model.num_classes:
            raise VisionkitError(
                f"model.num_classes is {cfg.model.num_classes} but the training data has "
                f"{len(train_set.class_names)} classes"
            )
        self.sampler = EpochSampler(len(train_set), tc.seed, rank, world)
        self.train_loader = build_dataloader(
            train_set, bs, cfg.data.num_workers, shuffle=False, sampler=self.sampler,
            drop_last=len(self.sampler) > bs, seed=rank_seed(tc.seed, rank),
        )  # fmt: skip
        val_sampler = ShardSampler(len(self.val_set), rank, world) if self.dist.enabled else None
        self.val_loader = build_dataloader(
            self.val_set, cfg.eval.batch_size, cfg.data.num_workers, False, val_sampler
        )
        model = build_model(cfg.model)
        if cfg.model.init_weights and not resume:  # fine-tuning: the tensors that fit
            line = init_from_checkpoint(model, cfg.model.init_weights)
            if self.dist.is_main:
                tqdm.write(line)
        if tc.sync_bn and self.dist.enabled:
            if self.device.type != "cuda":
                raise ConfigError("train.sync_bn needs CUDA: SyncBatchNorm has no CPU kernel")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = place_model(model, self.device, tc.channels_last)
        self.net = wrap_for_training(self.model, self.dist, self.device, tc.find_unused_parameters)
        if self.dist.enabled:  # same initial weights, then each rank its own random stream
            torch.manual_seed(rank_seed(tc.seed, rank))
        self.lr = scaled_lr(tc, bs, world)
        self.optimizer = build_optimizer(tc, self.model, self.lr)
        self.iters_per_epoch = len(self.train_loader)  # batches per rank
        self.steps_per_epoch = math.ceil(self.iters_per_epoch / tc.accumulate_steps)
        self.scheduler = build_scheduler(tc, self.optimizer, self.steps_per_epoch)
        self.layout = {
            "world_size": world,
            "batch_size": bs,
            "accumulate_steps": tc.accumulate_steps,
        }
        self.amp_dtype, amp_line = mixed_precision(tc.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.start_epoch, self.start_batch = 0, 0
        self.best = worst_value(tc.best_metric)
        self.evaluator: Any = None  # the last evaluation's, for the end-of-training plots
        self.stop = StopOnSignal()
        if start.checkpoint is not None:
            self._resume(start.checkpoint)
        self.logger: MetricsLogger | None = None
        if self.dist.is_main:
            for line in start.changes + ([amp_line] if amp_line else []):
                tqdm.write(line)
            for orphan in leftover_temporaries(self.out):  # a write cut by a kill
                orphan.unlink()
            save_config(cfg, self.out / "config.yaml")
            log_position = start.log_position(self.iters_per_epoch)
            self.logger = MetricsLogger(self.out, resume_from=log_position)
            if tc.lr_scaling == "linear":
                tqdm.write(
                    f"lr {tc.lr:g} x {world} processes x {tc.accumulate_steps} steps x {bs} "
                    f"images / {tc.base_batch_size or bs} = {self.lr:g} (train.lr_scaling)"
                )

    def _resume(self, ckpt: dict[str, Any]) -> None:
        """Load ``ckpt`` (the run's ``last.pth``) into the model, optimizer, scaler, scheduler
        and RNGs."""
        path = self.out / "last.pth"
        load_model_weights(self.model, ckpt, self.cfg.model.name, str(path))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt["scaler"]:  # empty from a run without fp16 (train.amp may change on resume)
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch, self.best = ckpt["epoch"], ckpt["best"]
        self.start_batch = ckpt.get("epoch_iteration", 0)
        same = ckpt.get("layout", self.layout) == self.layout
        if self.start_batch and not same:
            raise VisionkitError(
                f"{path} was written mid-epoch by a run with {ckpt['layout']}; resume it with the "
                "same number of processes, data.batch_size and train.accumulate_steps"
            )
        if same:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        else:  # another batch layout from an epoch boundary: its own lr and schedule
            step = self.start_epoch * self.steps_per_epoch
            self.scheduler.last_epoch = step
            for group, base in zip(
                self.optimizer.param_groups, self.scheduler.base_lrs, strict=True
            ):
                group["initial_lr"] = base
                group["lr"] = base * lr_factor(self.cfg.train, step, self.steps_per_epoch)
        states = ckpt.get("rank_states") or [{"rng": ckpt["rng"]}]
        own = states[self.dist.rank] if same and len(states) == self.dist.world_size else states[0]
        set_rng_state(own["rng"])

    def _save(self, epoch: int, batch: int, *names: str) -> None:
        """Checkpoint after ``batch`` batches of epoch ``epoch`` (0-based; ``batch`` 0: the epoch
        has not started); collective: every rank's RNG states go into rank 0's file."""
        states = gather_to_main({"rng": rng_state()})
        if not self.dist.is_main:
            return
        start = batch * self.cfg.data.batch_size * self.dist.world_size
        state = {
            "model_name": self.cfg.model.name,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "epoch_iteration": batch,
            "log_position": epoch * self.iters_per_epoch + batch,  # metrics.jsonl's "iter"
            "iteration": self.scheduler.last_epoch,  # optimizer steps so far
            "sampler": {"epoch": epoch, "start": start},
            "layout": self.layout,
            "best": float(self.best),
            "rank_states": states,
            "config": config_to_dict(self.cfg),
            "class_names": list(self.val_set.class_names),
            "cat_ids": [int(c) for c in self.val_set.cat_ids],
        }
        for name in names:
            save_checkpoint(state, self.out / name)

    def _stop(self, epoch: int, batch: int) -> None:
        """Checkpoint, wait for every rank, and raise :class:`TrainingInterrupted`."""
        self._save(epoch, batch, "last.pth")
        barrier(self.dist)
        signum = self.stop.signum or signal.SIGTERM  # another rank may have got the signal
        raise TrainingInterrupted(
            f"stopped by {signal.Signals(signum).name} after {batch}/{self.iters_per_epoch} "
            f"batches of epoch {epoch + 1}; saved {self.out / 'last.pth'}, continue with --resume",
            signum,
        )

    def _non_finite(
        self, epoch: int, i: int, losses: dict[str, torch.Tensor], targets: list, finite: bool
    ) -> None:
        """Raise :class:`TrainingError` naming the loss terms and image ids of the bad batch
        (distributed: of the first rank whose loss is not ``finite``)."""
        detail = None
        if not finite:
            values = {k: round(float(v.detach()), 4) for k, v in losses.items()}
            ids = [int(t["image_id"]) for t in targets]
            where = f" on rank {self.dist.rank}" if self.dist.enabled else ""
            detail = f"{values}; image ids {ids}{where}"
        details = gather_to_main(detail)
        if details is not None:
            detail = next(d for d in details if d is not None)
        detail = broadcast_from_main(detail)
        raise TrainingError(
            f"non-finite loss at epoch {epoch + 1} iteration {i}: {detail};"
            f" last good checkpoint: {self.out / 'last.pth'}"
        )

    def _log(self, record: dict[str, Any], step: int) -> None:
        """Log ``record`` at ``step`` (rank 0 only)."""
        if self.logger is not None:
            self.logger.log(record, step)

    def _step(self) -> None:
        """One optimizer step on the accumulated (and, distributed, averaged) gradients."""
        if self.cfg.train.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Evaluate on the validation set (distributed: each rank its shard, scored on rank 0)."""
        self.evaluator = build_evaluator(
            self.task, self.val_set, coco_backend=self.cfg.eval.coco_backend
        )
        evaluator = GatheredEvaluator(self.evaluator) if self.dist.enabled else self.evaluator
        return evaluate(self.model, self.val_loader, evaluator, self.device, self.progress)

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        """Train epoch ``epoch`` (0-based) from where a resumed run stopped; the mean losses."""
        cfg, accum = self.cfg, self.cfg.train.accumulate_steps
        first = self.start_batch if epoch == self.start_epoch else 0
        if any_rank(self.dist, self.device, self.stop.signum is not None)[0]:
            self._stop(epoch, first)
        self.net.train()
        self.sampler.set_epoch(epoch, first * cfg.data.batch_size * self.dist.world_size)
        sums: dict[str, float] = {}
        bar = tqdm(
            self.train_loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", initial=first,
            total=self.iters_per_epoch, disable=not self.progress, leave=False,
        )  # fmt: skip
        for i, (images, targets) in enumerate(bar, start=first):
            it = epoch * self.iters_per_epoch + i
            group_start = i - i % accum
            group = min(accum, self.iters_per_epoch - group_start)  # micro-batches of this step
            last = i + 1 == group_start + group
            images = [img.to(self.device, non_blocking=True) for img in images]
            targets = [{k: _to(v, self.device) for k, v in t.items()} for t in targets]
            if i == group_start:
                self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(
                self.device.type, self.amp_dtype, enabled=self.amp_dtype is not None
            ):
                losses = self.net(images, targets)
            total = sum(losses.values())
            finite = bool(torch.isfinite(total))
            stop, bad = any_rank(self.dist, self.device, self.stop.signum is not None, not finite)
            if bad:
                self._non_finite(epoch, i, losses, targets, finite)
            with gradient_sync(self.net, last):
                self.scaler.scale(total / group).backward()
            if last:
                self._step()
            record = {k: float(v.detach()) for k, v in losses.items()} | {
                "loss": float(total.detach())
            }
            for key, v in record.items():
                sums[key] = sums.get(key, 0.0) + v
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            if not self.progress and time.time() - self.last_line >= PLAIN_LINE_SECONDS:
                self.last_line = time.time()  # no bar (a log file): one plain line instead
                self._write(
                    f"epoch {epoch + 1}/{cfg.train.epochs} batch {i + 1}/{self.iters_per_epoch} "
                    f"loss {record['loss']:.4f} lr {self.optimizer.param_groups[0]['lr']:.3g}"
                )
            if it % cfg.train.log_every == 0:
                lr = self.optimizer.param_groups[0]["lr"]
                record = mean_over_ranks(self.dist, self.device, record)
                self._log({f"train/{key}": v for key, v in record.items()} | {"lr": lr}, it)
            if last and stop:
                self._stop(epoch, i + 1)
        done = max(self.iters_per_epoch - first, 1)
        return mean_over_ranks(self.dist, self.device, {k: v / done for k, v in sums.items()})

    def train(self) -> dict[str, dict[str, float]]:
        """Run the remaining epochs; returns the last evaluation's metrics.

        Raises :class:`TrainingInterrupted` after checkpointing when SIGINT or SIGTERM came.
        """
        cfg, start = self.cfg.train, time.time()
        task, _, name = cfg.best_metric.partition("/")
        metrics: dict[str, dict[str, float]] = {}
        try:
            with self.stop:
                for epoch in range(self.start_epoch, cfg.epochs):
                    t0 = time.time()
                    mean = self.train_one_epoch(epoch)
                    last = epoch + 1 == cfg.epochs
                    line = f"epoch {epoch + 1}/{cfg.epochs} loss {mean.get('loss', math.nan):.4f}"
                    names = ["last.pth"]
                    if last or (cfg.eval_every > 0 and (epoch + 1) % cfg.eval_every == 0):
                        metrics = self.evaluate()
                        flat = {f"{t}/{k}": v for t, d in metrics.items() for k, v in d.items()}
                        self._log(flat | {"epoch": epoch + 1}, (epoch + 1) * self.iters_per_epoch)
                        score = metrics.get(task, {}).get(name, math.nan)
                        line += f" {cfg.best_metric} {format_value(score, cfg.best_metric)}"
                        if improves(cfg.best_metric, score, self.best):
                            self.best = score
                            names.append("best.pth")
                    self._save(epoch + 1, 0, *names)
                    self._write(f"{line} ({time.time() - t0:.0f}s)")
            minutes = (time.time() - start) / 60
            skipped = len(self.train_loader.skipped.keys() | self.val_loader.skipped.keys())
            if self.dist.is_main:  # before the summary, which stays the last line
                e = self.cfg.eval
                plots = write_run_plots(
                    self.out, self.evaluator, e.confusion_score_thresh, e.confusion_iou_thresh,
                    also=[cfg.best_metric],
                )  # fmt: skip
                self._write(f"plots: {plots}")
            self._write(
                f"done: {cfg.epochs} epochs in {minutes:.1f} min; best {cfg.best_metric} "
                f"{format_value(self.best, cfg.best_metric)}; outputs in {self.out}"
                + (f"; unreadable images skipped: {skipped}" if skipped else "")
                + warnings_part()
            )
        finally:
            if self.logger is not None:
                self.logger.close()
        return metrics

    def _write(self, line: str) -> None:
        """Print ``line`` above the progress bars (rank 0 only)."""
        if self.dist.is_main:
            tqdm.write(line)


def _to(v: Any, device: torch.device) -> Any:
    return v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
