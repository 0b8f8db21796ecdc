"""Fast R-CNN and SPPNet: the model contract over precomputed proposals (losses, gradients,
predictions in original pixels, selective search when none are given), images without objects,
SPP-only fine-tuning, config choices and proposals passed through evaluation."""

from pathlib import Path

import pytest
import torch
from detection_helpers import check_losses_and_gradients, targets_with_proposals

from visionkit.config import ModelConfig, load_config
from visionkit.errors import ConfigError, DataError
from visionkit.evaluation.loop import evaluate
from visionkit.models import MODELS, build_model

ROOT = Path(__file__).resolve().parents[1]
LOSS_KEYS = {"loss_roi_cls", "loss_roi_box"}


def tiny_cfg(name: str = "fast_rcnn") -> ModelConfig:
    cfg = ModelConfig(name=name, num_classes=3)
    cfg.backbone.name = "lenet"  # c3: 120 channels, stride 8
    cfg.resize.min_size, cfg.resize.max_size = 64, 96
    cfg.roi_head.pooler = "spp" if name == "sppnet" else "roi_pool"
    cfg.roi_head.fc_dim, cfg.roi_head.dropout, cfg.roi_head.batch_size_per_image = 32, 0.0, 32
    cfg.roi_head.score_thresh = 0.0
    cfg.selective_search.mode = "single"
    return cfg


@pytest.mark.parametrize("name", ["fast_rcnn", "sppnet"])
def test_loss_keys_gradients_and_empty_images(name):
    assert name in MODELS
    torch.manual_seed(0)
    model = build_model(tiny_cfg(name))
    images = [torch.rand(3, 80, 120), torch.rand(3, 96, 96)]
    tgts = targets_with_proposals(
        ([[10, 10, 60, 50], [70, 20, 110, 70]], [[12, 8, 58, 52], [0, 0, 120, 80], [60, 20, 100, 60]]),
        ([[5, 5, 90, 90]], [[0, 0, 40, 40], [4, 6, 88, 92]]),
    )  # fmt: skip
    losses = check_losses_and_gradients(model, images, tgts, LOSS_KEYS)
    assert losses["loss_roi_box"] > 0
    # no objects (and no proposals) in one image, none at all in the other
    check_losses_and_gradients(
        model,
        images,
        targets_with_proposals(([[8, 8, 40, 48]], []), ([], [[1, 1, 9, 9]])),
        LOSS_KEYS,
    )
    losses = check_losses_and_gradients(
        model, images, targets_with_proposals(([], [[0, 0, 30, 30]]), ([], [])), LOSS_KEYS
    )
    assert losses["loss_roi_box"] == 0


def test_predict_with_proposals_in_original_pixels():
    torch.manual_seed(0)
    model = build_model(tiny_cfg()).eval()
    images = [torch.rand(3, 80, 120), torch.rand(3, 200, 100)]
    props = [torch.tensor([[10.0, 10.0, 60.0, 50.0], [0, 0, 120, 80]]), torch.zeros(0, 4)]
    outs = model.predict(images, proposals=props)
    assert len(outs[0]["boxes"]) > 0 and outs[1]["boxes"].shape == (0, 4)
    assert outs[0]["boxes"].dtype == torch.float32 and outs[0]["labels"].dtype == torch.int64
    assert (outs[0]["boxes"][:, 2] <= 120).all() and (outs[0]["boxes"][:, 3] <= 80).all()
    seen = {}

    def fake_detections(logits, deltas, rois, image_sizes):
        seen["rois"], seen["sizes"] = rois[:, 1:].tolist(), image_sizes.tolist()
        box = torch.tensor([[32.0, 16.0, 64.0, 48.0]])
        zero = torch.zeros(1, dtype=torch.long)  # flat over the batch: each its image_index
        return {"boxes": box, "scores": torch.ones(1), "labels": zero, "image_index": zero}

    model.roi_heads.detections = fake_detections
    # the 100 x 150 image becomes 64 x 96 (scale 0.64): proposals scale down, detections back up;
    # a degenerate proposal is dropped
    props = [torch.tensor([[50.0, 25.0, 100.0, 75.0], [5.0, 5.0, 5.0, 30.0]])]
    (out,) = model.predict([torch.rand(3, 100, 150)], proposals=props)
    assert seen["sizes"] == [[64.0, 96.0]]
    assert seen["rois"] == [pytest.approx([32.0, 16.0, 64.0, 48.0])]
    assert out["boxes"].tolist() == [pytest.approx([50.0, 25.0, 100.0, 75.0])]


def test_predict_without_proposals_runs_selective_search():
    torch.manual_seed(0)
    model = build_model(tiny_cfg("sppnet")).eval()
    image = torch.full((3, 64, 80), 0.5)
    image[:, 10:40, 20:60] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    proposals = model.proposer.search(image)
    assert proposals.dtype == torch.float32 and proposals.shape[1] == 4
    assert [20.0, 10.0, 60.0, 40.0] in proposals.tolist()
    (out,) = model.predict([image])
    assert len(out["boxes"]) > 0 and (out["boxes"][:, 2] <= 80).all()


def test_training_without_proposals_is_a_data_error():
    model = build_model(tiny_cfg())
    tgts = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    with pytest.raises(DataError, match="data.train.proposals.method"):
        model.loss([torch.rand(3, 64, 64)], tgts)


def test_spp_only_fine_tuning_freezes_the_trunk():
    cfg = tiny_cfg("sppnet")
    cfg.backbone.name = "fast_yolo"  # has BatchNorm
    cfg.backbone.out_features = ["stage4"]
    cfg.roi_head.freeze_backbone = True
    model = build_model(cfg).train()
    assert model.roi_heads.pooler.kind == "spp"
    assert not any(p.requires_grad for p in model.backbone.parameters())
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    images = [torch.rand(3, 64, 64)]
    check_losses_and_gradients(
        model, images, targets_with_proposals(([[8, 8, 40, 48]], [[10, 6, 44, 50]])), LOSS_KEYS
    )
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.roi_heads.parameters())


@pytest.mark.parametrize(
    ("name", "changes", "message"),
    [
        ("sppnet", {"roi_head.pooler": "roi_pool"}, "set model.roi_head.pooler to spp"),
        ("fast_rcnn", {"fpn.enabled": True}, "one feature level"),
        ("fast_rcnn", {"backbone.out_features": ["c2", "c3"]}, "one backbone level"),
    ],
)
def test_config_errors(name, changes, message):
    cfg = tiny_cfg(name)
    for key, value in changes.items():
        section, _, field = key.rpartition(".")
        setattr(getattr(cfg, section), field, value)
    with pytest.raises(ConfigError, match=message):
        build_model(cfg)


@pytest.mark.parametrize("config", ["fast_rcnn_shapes", "sppnet_shapes"])
def test_shapes_configs_build_and_train_one_step(config):
    cfg = load_config(ROOT / "visionkit" / "configs" / f"{config}.yaml")
    assert cfg.data.train.proposals.method == "selective_search"
    model = build_model(cfg.model)
    boxes = [[20, 30, 60, 80], [100, 100, 230, 200]]
    props = [[18, 28, 62, 84], [0, 0, 256, 256], [90, 110, 220, 190]]
    check_losses_and_gradients(
        model, [torch.rand(3, 256, 256)] * 2, targets_with_proposals((boxes, props)) * 2, LOSS_KEYS
    )


def test_voc_configs_load():
    fast = load_config(ROOT / "visionkit" / "configs" / "fast_rcnn_vgg16_voc.yaml")
    spp = load_config(ROOT / "visionkit" / "configs" / "sppnet_vgg16_voc.yaml")
    assert fast.model.roi_head.batch_size_per_image == 64 and fast.data.batch_size == 2
    assert spp.model.roi_head.pooler == "spp" and spp.model.roi_head.freeze_backbone


def test_evaluation_passes_target_proposals():
    model = build_model(tiny_cfg())
    seen = {}

    class Recorder:
        def process(self, tgts, predictions):
            seen["predictions"] = predictions

        def evaluate(self):
            return {}

    def fake_predict(images, proposals=None):
        seen["proposals"] = proposals
        return [{} for _ in images]

    model.predict = fake_predict
    tgts = targets_with_proposals(([[1, 1, 9, 9]], [[0, 0, 8, 8]]))
    evaluate(model, [([torch.rand(3, 16, 16)], tgts)], Recorder(), torch.device("cpu"), False)
    assert seen["proposals"][0].tolist() == [[0.0, 0.0, 8.0, 8.0]]
