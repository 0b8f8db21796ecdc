"""Faster R-CNN: the model contract (losses, gradients, predictions in original pixels), edge
cases (no objects, objects smaller than every anchor) and the config choices."""

from pathlib import Path

import pytest
import torch
from detection_helpers import check_losses_and_gradients

from visionkit.checkpoints.weights import load_matching_weights, load_model_weights
from visionkit.config import ModelConfig, load_config
from visionkit.errors import ConfigError
from visionkit.models import MODELS, build_model
from visionkit.models.base import upgrade_state_dict

ROOT = Path(__file__).resolve().parents[1]
LOSS_KEYS = {"loss_rpn_cls", "loss_rpn_box", "loss_roi_cls", "loss_roi_box"}


def tiny_cfg() -> ModelConfig:
    cfg = ModelConfig(name="faster_rcnn", num_classes=3)
    cfg.backbone.name = "lenet"  # c3: 120 channels, stride 8
    cfg.resize.min_size, cfg.resize.max_size = 64, 96
    cfg.anchors.sizes = [[16.0, 32.0]]
    cfg.rpn.conv_channels = 16
    cfg.rpn.pre_nms_top_n_train, cfg.rpn.post_nms_top_n_train = 200, 50
    cfg.rpn.pre_nms_top_n_test, cfg.rpn.post_nms_top_n_test = 100, 20
    cfg.roi_head.fc_dim, cfg.roi_head.dropout, cfg.roi_head.batch_size_per_image = 32, 0.0, 32
    cfg.roi_head.score_thresh = 0.0
    return cfg


def targets(*boxes_per_image):
    return [
        {
            "boxes": torch.tensor(b, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.arange(len(b), dtype=torch.int64) % 3,
        }
        for b in boxes_per_image
    ]


def test_registered_and_loss_keys_finite_gradients():
    assert "faster_rcnn" in MODELS
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    images = [torch.rand(3, 80, 120), torch.rand(3, 96, 96)]
    tgts = targets([[10.0, 10.0, 60.0, 50.0], [70.0, 20.0, 110.0, 70.0]], [[5.0, 5.0, 90.0, 90.0]])
    losses = check_losses_and_gradients(model, images, tgts, LOSS_KEYS)
    assert losses["loss_roi_box"] > 0 and losses["loss_rpn_box"] > 0
    check_losses_and_gradients(
        model, torch.rand(2, 3, 64, 64), targets([[1, 2, 30, 40]], []), LOSS_KEYS
    )


def test_predict_contract_and_original_pixels():
    torch.manual_seed(0)
    model = build_model(tiny_cfg()).eval()
    images = [torch.rand(3, 80, 120), torch.rand(3, 200, 100)]
    outs = model.predict(images)
    assert len(outs) == 2
    for out, img in zip(outs, images, strict=True):
        assert out["boxes"].dtype == torch.float32 and out["labels"].dtype == torch.int64
        assert len(out["boxes"]) > 0 and (out["labels"] < 3).all() and (out["labels"] >= 0).all()
        assert (out["boxes"][:, 2] <= img.shape[2]).all() and (
            out["boxes"][:, 3] <= img.shape[1]
        ).all()
        assert (out["scores"][:-1] >= out["scores"][1:]).all()
    # a detection at (32, 16, 64, 48) in input pixels of the 100 x 150 image (-> 64 x 96, scale
    # 0.64) is at (50, 25, 100, 75) in its original pixels
    seen = {}

    def fake_detections(logits, deltas, rois, image_sizes):
        seen["sizes"] = image_sizes.tolist()
        box = torch.tensor([[32.0, 16.0, 64.0, 48.0]])
        zero = torch.zeros(1, dtype=torch.long)  # flat over the batch: each its image_index
        return {"boxes": box, "scores": torch.ones(1), "labels": zero, "image_index": zero}

    model.roi_heads.detections = fake_detections
    (out,) = model.predict([torch.rand(3, 100, 150)])
    assert seen["sizes"] == [[64.0, 96.0]]
    assert out["boxes"].tolist() == [pytest.approx([50.0, 25.0, 100.0, 75.0])]


def test_no_objects_and_objects_smaller_than_any_anchor_train():
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    # image 0: no objects; image 1: a 3 x 2 px object (anchors are >= 16 px) and a degenerate
    # zero-width box, which is dropped
    tgts = targets([], [[30.0, 30.0, 33.0, 32.0], [5.0, 5.0, 5.0, 20.0]])
    losses = check_losses_and_gradients(model, images, tgts, LOSS_KEYS)
    assert losses["loss_rpn_box"] > 0  # the tiny object still gets its best anchor
    losses = check_losses_and_gradients(model, images, targets([], []), LOSS_KEYS)
    assert losses["loss_rpn_box"] == 0 and losses["loss_roi_box"] == 0


@pytest.mark.parametrize("pooler", ["roi_align", "spp"])
def test_pooler_choices_train(pooler):
    cfg = tiny_cfg()
    cfg.roi_head.pooler = pooler
    cfg.roi_head.spp_levels = [1, 2, 4]
    model = build_model(cfg)
    check_losses_and_gradients(model, [torch.rand(3, 64, 64)], targets([[8, 8, 40, 48]]), LOSS_KEYS)


def test_res5_box_head_moves_the_stage_out_of_the_backbone():
    cfg = tiny_cfg()
    cfg.backbone.name, cfg.backbone.out_features = "resnet18", ["res4"]
    cfg.roi_head.box_head, cfg.roi_head.pooler, cfg.roi_head.pool_size = "res5", "roi_align", 8
    cfg.roi_head.batch_size_per_image = 8
    cfg.resize.mode, cfg.input_size = "fixed", [64, 64]
    model = build_model(cfg)
    assert "res5" not in model.backbone.stages and model.roi_heads.box_head.out_dim == 512
    check_losses_and_gradients(model, [torch.rand(3, 50, 70)], targets([[8, 8, 40, 48]]), LOSS_KEYS)
    model.eval()
    (out,) = model.predict([torch.rand(3, 50, 70)])
    assert (out["boxes"][:, 2] <= 70).all() and (out["boxes"][:, 3] <= 50).all()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"roi_head.box_head": "res5", "roi_head.pooler": "spp"}, "k x k pooler"),
        ({"roi_head.box_head": "res5"}, "needs a backbone stage after 'c3'"),
        ({"anchors.sizes": [[16.0], [32.0]]}, "2 lists for 1 feature levels"),
        ({"backbone.out_features": ["c2", "c3"]}, "without model.fpn takes one backbone level"),
        ({"resize.mode": "fixed", "input_size": []}, "input_size"),
    ],
)
def test_config_errors(changes, message):
    cfg = tiny_cfg()
    for key, value in changes.items():
        section, _, name = key.rpartition(".")
        setattr(getattr(cfg, section) if section else cfg, name, value)
    with pytest.raises(ConfigError, match=message):
        build_model(cfg)


def test_fpn_faster_rcnn_trains_and_predicts():
    cfg = tiny_cfg()
    cfg.backbone.out_features = ["c1", "c2", "c3"]  # strides 2, 4, 8 -> P1-P3 and P4 (pool)
    cfg.fpn.enabled, cfg.fpn.out_channels = True, 16
    cfg.fpn.canonical_size, cfg.fpn.canonical_level = 32.0, 3
    cfg.anchors.sizes, cfg.anchors.aspect_ratios = [[8.0], [16.0], [32.0], [64.0]], [0.5, 1.0, 2.0]
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.neck.strides == [2, 4, 8, 16] and model.roi_heads.pooler.strides == [2, 4, 8]
    images = [torch.rand(3, 64, 80), torch.rand(3, 64, 64)]
    check_losses_and_gradients(
        model, images, targets([[4, 4, 12, 12], [10, 10, 60, 50]], []), LOSS_KEYS
    )
    assert all(p.grad is not None for p in model.neck.parameters())
    (out, _) = model.eval().predict(images)
    assert (out["boxes"][:, 2] <= 80).all() and (out["boxes"][:, 3] <= 64).all()


def test_shapes_config_builds_and_trains_one_step():
    cfg = load_config(ROOT / "visionkit" / "configs" / "faster_rcnn_shapes.yaml")
    model = build_model(cfg.model)
    check_losses_and_gradients(
        model,
        [torch.rand(3, 256, 256)],
        targets([[20, 30, 60, 80], [100, 100, 230, 200]]),
        LOSS_KEYS,
    )
    vgg = load_config(ROOT / "visionkit" / "configs" / "faster_rcnn_vgg16_voc.yaml").model
    assert vgg.backbone.name == "vgg16" and vgg.resize.min_size == 600


def test_images_without_proposals():
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    rpn_forward = model.proposer.forward

    def no_proposals(features, image_sizes, gt_boxes=None):
        proposals, losses = rpn_forward(features, image_sizes, gt_boxes)
        return [p[:0] for p in proposals], losses

    model.proposer.forward = no_proposals  # training and prediction (Proposer.propose)
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    # training still has the ground-truth boxes as RoIs; the empty image has none at all
    check_losses_and_gradients(model, images, targets([[8, 8, 40, 48]], []), LOSS_KEYS)
    outs = model.eval().predict(images)
    assert [len(o["boxes"]) for o in outs] == [0, 0]
    assert outs[0]["boxes"].shape == (0, 4)


def test_state_dicts_from_before_the_proposer_slot_load():
    # checkpoints written before models/proposers/ name the RPN's tensors `rpn.*`
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    new = model.state_dict()
    old = {k.replace("proposer.", "rpn.", 1): v + 1 for k, v in new.items()}
    assert any(k.startswith("rpn.head.") for k in old)
    fresh = build_model(tiny_cfg())
    fresh.load_state_dict(old)  # strict: every key, no extra one
    assert all(torch.equal(fresh.state_dict()[k], v + 1) for k, v in new.items())
    assert upgrade_state_dict(fresh, old).keys() == new.keys()
    loaded, skipped = load_matching_weights(build_model(tiny_cfg()), {"model": old})
    assert loaded == list(new) and skipped == []
    other = build_model(tiny_cfg())
    load_model_weights(other, {"model": old, "model_name": "faster_rcnn"}, "faster_rcnn", "old.pth")
    assert all(torch.equal(other.state_dict()[k], v + 1) for k, v in new.items())
