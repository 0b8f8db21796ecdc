"""Checkpoints written before the one-model-contract change (tests/fixtures/legacy, README there)
load strictly into today's models and give the same losses and predictions."""

from pathlib import Path

import pytest
import torch

from visionkit.config import load_config
from visionkit.models import build_model

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
NAMES = sorted(p.stem for p in LEGACY.glob("*.pth"))


def test_every_model_has_a_fixture():
    assert {n.removesuffix("_fpn") for n in NAMES} == {
        "yolo_v1", "faster_rcnn", "fast_rcnn", "sppnet", "rcnn", "fcn",
    }  # fmt: skip


def load(name):
    fixture = torch.load(LEGACY / f"{name}.pth", weights_only=True)
    model = build_model(load_config(None, fixture["overrides"]).model)
    model.load_state_dict(fixture["model"])  # strict: every key, no extra one
    images = [img.float() / 255 for img in fixture["images"]]
    return model, fixture, images


def assert_same_predictions(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)
        for key in w:
            if w[key].is_floating_point():
                torch.testing.assert_close(g[key], w[key], rtol=1e-5, atol=1e-4)
            else:
                assert torch.equal(g[key], w[key]), key


@pytest.mark.parametrize("name", NAMES)
def test_legacy_checkpoint_same_losses_and_predictions(name):
    # the fixture's weights were saved after its loss (BatchNorm statistics included), so
    # predictions come first here; the loss in training mode uses batch statistics
    # (R-CNN's were saved with its SVMs set: SVM scores first, then the softmax path)
    model, fixture, images = load(name)
    model.eval()
    if "svm_predictions" in fixture:
        got = model.predict(images, **fixture["extras"])
        assert_same_predictions(got, fixture["svm_predictions"])
        model.svm_trained.fill_(False)
    assert_same_predictions(model.predict(images, **fixture["extras"]), fixture["predictions"])
    model.train()
    torch.manual_seed(2)
    losses = model.loss(images, fixture["targets"])
    assert set(losses) == set(fixture["losses"])
    for key, want in fixture["losses"].items():
        torch.testing.assert_close(losses[key].detach(), want, rtol=1e-5, atol=1e-6)
