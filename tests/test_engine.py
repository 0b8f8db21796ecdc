"""The training engine: learning-rate schedules by hand, and the stop on a non-finite loss."""

import math

import pytest
import torch

from visionkit.checkpoints import load_checkpoint
from visionkit.config import TrainConfig, load_config
from visionkit.engine.optim import lr_factor
from visionkit.engine.trainer import Trainer, TrainingError


def test_step_schedule_with_linear_warmup():
    cfg = TrainConfig(epochs=10, scheduler="step", milestones=[4, 8], gamma=0.1,
                      warmup_epochs=1, warmup_factor=0.1)  # fmt: skip
    # 10 iterations per epoch: warmup goes 0.1 -> 1 over the first 10 iterations
    assert lr_factor(cfg, 0, 10) == pytest.approx(0.1)
    assert lr_factor(cfg, 5, 10) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(cfg, 10, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 39, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 40, 10) == pytest.approx(0.1)
    assert lr_factor(cfg, 80, 10) == pytest.approx(0.01)


def test_cosine_schedule_decays_to_zero():
    cfg = TrainConfig(epochs=4, scheduler="cosine", warmup_epochs=0)
    assert lr_factor(cfg, 0, 5) == pytest.approx(1.0)
    assert lr_factor(cfg, 10, 5) == pytest.approx(0.5)  # half-way: (1 + cos(pi/2)) / 2
    assert lr_factor(cfg, 5, 5) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(cfg, 20, 5) == pytest.approx(0.0, abs=1e-12)


def test_nan_loss_stops_with_the_loss_dict_and_keeps_the_last_checkpoint(tmp_path):
    cfg = load_config(None, [
        "model.num_classes=5", "model.input_size=[64,64]", "model.backbone.name=lenet",
        "model.yolo.head=conv", "model.yolo.extra_convs=1", "model.yolo.head_channels=8",
        f"data.train.root={tmp_path}", "data.train.num_images=8", "data.train.image_size=64",
        f"data.val.root={tmp_path}", "data.val.num_images=4", "data.val.image_size=64",
        "data.batch_size=4", "data.num_workers=0", "train.epochs=2", "train.eval_every=0",
    ])  # fmt: skip
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    loss, calls = trainer.model.loss, []

    def poisoned(images, targets):
        out = loss(images, targets)
        calls.append(1)
        if len(calls) == 3:  # the first iteration of epoch 2
            out["loss_yolo_box"] = out["loss_yolo_box"] * torch.nan
        return out

    trainer.model.loss = poisoned
    with pytest.raises(TrainingError) as err:
        trainer.train()
    message = str(err.value)
    assert "non-finite loss at epoch 2 iteration 0" in message
    assert "'loss_yolo_box': nan" in message and "image ids [" in message
    assert "\n" not in message
    assert load_checkpoint(tmp_path / "run" / "last.pth")["epoch"] == 1
