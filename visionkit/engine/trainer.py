"""The training loop: epochs of SGD/AdamW steps, evaluation, checkpoints, logs, resumption."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Sampler
from tqdm import tqdm

from visionkit.config.loader import config_to_dict, save_config
from visionkit.config.schema import Config
from visionkit.data import build_dataloader, build_dataset
from visionkit.data.build import seed_transforms
from visionkit.engine.checkpoint import (
    load_checkpoint,
    load_model_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from visionkit.engine.inference import evaluate
from visionkit.engine.logger import MetricsLogger
from visionkit.engine.optim import build_optimizer, build_scheduler
from visionkit.errors import VisionkitError
from visionkit.evaluation import build_evaluator
from visionkit.models import build_model, model_task


class TrainingError(VisionkitError):
    """Training cannot go on (e.g. the loss became NaN or infinite)."""


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VisionkitError(
            f"device '{name}' requested but CUDA is not available; use --device cpu"
        )
    return torch.device(name)


def place_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """Move ``model`` to ``device``, in NHWC layout when ``channels_last`` (faster convolutions)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


class EpochSampler(Sampler[int]):
    """A shuffling sampler whose order depends only on ``seed`` and the epoch (resumable)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        return iter(torch.randperm(self.size, generator=g).tolist())

    def __len__(self) -> int:
        return self.size


class Trainer:
    """Trains ``cfg``'s model on its data and writes everything under ``output_dir``.

    Writes ``config.yaml`` (the resolved config), ``last.pth`` each epoch, ``best.pth`` when the
    metric ``cfg.train.best_metric`` improves, ``metrics.jsonl`` and ``tensorboard/`` events.
    """

    def __init__(
        self, cfg: Config, output_dir: str | Path, resume: bool = False, progress: bool = True
    ):
        self.cfg, self.progress = cfg, progress
        self.out = Path(output_dir)
        self.device = select_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed)
        input_size = tuple(cfg.model.input_size)
        self.task = model_task(cfg.model.name)
        train_set = build_dataset(
            cfg.data.train, cfg.data.augment, input_size, train=True, task=self.task
        )
        self.val_set = build_dataset(
            cfg.data.val, cfg.data.augment, input_size, train=False, task=self.task
        )
        if len(train_set.class_names) != cfg.model.num_classes:
            raise VisionkitError(
                f"model.num_classes is {cfg.model.num_classes} but the training data has "
                f"{len(train_set.class_names)} classes"
            )
        self.sampler = EpochSampler(len(train_set), cfg.train.seed)
        self.train_loader = build_dataloader(
            train_set, cfg.data.batch_size, cfg.data.num_workers, shuffle=False,
            sampler=self.sampler, drop_last=len(train_set) > cfg.data.batch_size,
            seed=cfg.train.seed,
        )  # fmt: skip
        self.val_loader = build_dataloader(
            self.val_set, cfg.eval.batch_size, cfg.data.num_workers, shuffle=False
        )
        self.model = place_model(build_model(cfg.model), self.device, cfg.train.channels_last)
        self.optimizer = build_optimizer(cfg.train, self.model)
        self.iters_per_epoch = len(self.train_loader)
        self.scheduler = build_scheduler(cfg.train, self.optimizer, self.iters_per_epoch)
        self.amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.train.amp)
        use_amp = self.device.type == "cuda" and self.amp_dtype is not None
        self.amp_dtype = self.amp_dtype if use_amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.start_epoch, self.best = 0, -math.inf
        if resume:
            self._resume()
        elif (self.out / "last.pth").exists():
            raise VisionkitError(
                f"{self.out} already holds a run; pass --resume to continue it or --output-dir"
            )
        save_config(cfg, self.out / "config.yaml")
        self.logger = MetricsLogger(self.out)

    def _resume(self) -> None:
        path = self.out / "last.pth"
        ckpt = load_checkpoint(path)
        load_model_weights(self.model, ckpt, self.cfg.model.name, str(path))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.start_epoch, self.best = ckpt["epoch"], ckpt["best"]

    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "model_name": self.cfg.model.name,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "iteration": epoch * self.iters_per_epoch,
            "best": self.best,
            "rng": rng_state(),
            "config": config_to_dict(self.cfg),
            "class_names": list(self.val_set.class_names),
            "cat_ids": list(self.val_set.cat_ids),
        }

    def evaluate(self) -> dict[str, dict[str, float]]:
        evaluator = build_evaluator(self.task, self.val_set)
        return evaluate(self.model, self.val_loader, evaluator, self.device, self.progress)

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.sampler.set_epoch(epoch)
        if self.cfg.data.num_workers == 0:  # augmentation in this process: seeded per epoch
            seed_transforms(self.train_loader.dataset, self.cfg.train.seed * 1000003 + epoch)
        sums: dict[str, float] = {}
        bar = tqdm(
            self.train_loader, desc=f"epoch {epoch + 1}/{self.cfg.train.epochs}",
            disable=not self.progress, leave=False,
        )  # fmt: skip
        for i, (images, targets) in enumerate(bar):
            it = epoch * self.iters_per_epoch + i
            images = [img.to(self.device, non_blocking=True) for img in images]
            targets = [{k: _to(v, self.device) for k, v in t.items()} for t in targets]
            with torch.autocast(
                self.device.type, self.amp_dtype, enabled=self.amp_dtype is not None
            ):
                losses = self.model.loss(images, targets)
            total = sum(losses.values())
            if not torch.isfinite(total):
                values = {k: round(float(v.detach()), 4) for k, v in losses.items()}
                ids = [int(t["image_id"]) for t in targets]
                raise TrainingError(
                    f"non-finite loss at epoch {epoch + 1} iteration {i}: {values}; image ids {ids};"
                    f" last good checkpoint: {self.out / 'last.pth'}"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            if self.cfg.train.clip_grad_norm > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(
                    self.model.parameters(), self.cfg.train.clip_grad_norm
                )
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            record = {k: float(v.detach()) for k, v in losses.items()} | {
                "loss": float(total.detach())
            }
            for k, v in record.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            if it % self.cfg.train.log_every == 0:
                lr = self.optimizer.param_groups[0]["lr"]
                self.logger.log({f"train/{k}": v for k, v in record.items()} | {"lr": lr}, it)
        return {k: v / max(len(self.train_loader), 1) for k, v in sums.items()}

    def train(self) -> dict[str, dict[str, float]]:
        """Run the remaining epochs; returns the last evaluation's metrics."""
        cfg, start = self.cfg.train, time.time()
        task, _, name = cfg.best_metric.partition("/")
        metrics: dict[str, dict[str, float]] = {}
        for epoch in range(self.start_epoch, cfg.epochs):
            t0 = time.time()
            mean = self.train_one_epoch(epoch)
            last = epoch + 1 == cfg.epochs
            line = f"epoch {epoch + 1}/{cfg.epochs} loss {mean.get('loss', math.nan):.4f}"
            if last or (cfg.eval_every > 0 and (epoch + 1) % cfg.eval_every == 0):
                metrics = self.evaluate()
                flat = {f"{t}/{k}": v for t, d in metrics.items() for k, v in d.items()}
                self.logger.log(flat | {"epoch": epoch + 1}, (epoch + 1) * self.iters_per_epoch)
                score = metrics.get(task, {}).get(name, math.nan)
                line += f" {cfg.best_metric} {score:.2f}"
                if score > self.best:
                    self.best = score
                    save_checkpoint(self._state(epoch + 1), self.out / "best.pth")
            save_checkpoint(self._state(epoch + 1), self.out / "last.pth")
            tqdm.write(f"{line} ({time.time() - t0:.0f}s)")
        minutes = (time.time() - start) / 60
        tqdm.write(
            f"done: {cfg.epochs} epochs in {minutes:.1f} min; best {cfg.best_metric} "
            f"{self.best:.2f}; outputs in {self.out}"
        )
        self.logger.close()
        return metrics


def _to(v: Any, device: torch.device) -> Any:
    return v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
