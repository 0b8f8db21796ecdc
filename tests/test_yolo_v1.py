"""YOLOv1: the loss against hand-computed values, decoding against a hand-built output."""

import math

import pytest
import torch

from visionkit.config import ModelConfig, load_config
from visionkit.models import MODELS, build_model

S, B, C = 2, 2, 2


def tiny_yolo(**yolo) -> torch.nn.Module:
    cfg = load_config(None).model
    cfg.num_classes, cfg.input_size = C, [64, 64]
    cfg.backbone.name = "lenet"
    cfg.yolo.grid_size, cfg.yolo.boxes_per_cell = S, B
    cfg.yolo.extra_convs, cfg.yolo.head_channels, cfg.yolo.hidden_dim = 1, 8, 16
    for k, v in yolo.items():
        setattr(cfg.yolo, k, v)
    return build_model(cfg)


def raw_output(cells: dict, default_conf: float = 0.2) -> torch.Tensor:
    """Raw (pre-activation) output whose activations equal the given values.

    ``cells[(row, col)] = (boxes, class_probs)``, boxes = B tuples (x, y, sqrt w, sqrt h, conf).
    """
    act = torch.full((1, S, S, B * 5 + C), 0.5)
    act[..., 4 : B * 5 : 5] = default_conf
    for (r, c), (boxes, probs) in cells.items():
        for b, vals in enumerate(boxes):
            act[0, r, c, b * 5 : b * 5 + 5] = torch.tensor(vals)
        act[0, r, c, B * 5 :] = torch.tensor(probs)
    raw = torch.logit(act)
    # softmax(log p) = p for a distribution; cells left at 0.5 get a uniform one
    raw[..., B * 5 :] = act[..., B * 5 :].log()
    return raw


def test_loss_matches_hand_computation():
    model = tiny_yolo()
    # one object centred at (16, 24), 16 x 32 px, in a 64 x 64 image: cell (row 0, col 0),
    # targets x=0.5, y=0.75, sqrt w = sqrt(16/64) = 0.5, sqrt h = sqrt(32/64).
    target = {"boxes": torch.tensor([[8.0, 8.0, 24.0, 40.0]]), "labels": torch.tensor([0])}
    # predictor 0: box (8,16,24,32), IoU 256/512 = 0.5, conf 0.6 -> responsible.
    # predictor 1: box (6,6,10,10), IoU 4/524, conf 0.3.
    raw = raw_output(
        {(0, 0): ([(0.5, 0.75, 0.5, 0.5, 0.6), (0.25, 0.25, 0.25, 0.25, 0.3)], (0.8, 0.2))}
    )
    model.forward = lambda x: raw
    losses = model.loss(torch.zeros(1, 3, 64, 64), [target])
    assert set(losses) == {"loss_yolo_box", "loss_yolo_obj", "loss_yolo_noobj", "loss_yolo_cls"}
    assert losses["loss_yolo_box"].item() == pytest.approx(
        5 * (0.5 - math.sqrt(0.5)) ** 2, rel=1e-4
    )
    assert losses["loss_yolo_obj"].item() == pytest.approx((0.6 - 0.5) ** 2, rel=1e-4)
    # noobj: predictor 1 (0.3^2) + the 6 predictors of the 3 empty cells (0.2^2 each), x 0.5
    assert losses["loss_yolo_noobj"].item() == pytest.approx(0.5 * (0.09 + 6 * 0.04), rel=1e-4)
    assert losses["loss_yolo_cls"].item() == pytest.approx(0.2**2 + 0.2**2, rel=1e-4)


def test_loss_scales_boxes_from_original_pixels_and_picks_best_iou_predictor():
    model = tiny_yolo(lambda_coord=1.0, lambda_noobj=0.0)
    # the same object in a 128 x 128 image (boxes doubled) gives the same targets; now
    # predictor 1 has the higher IoU, so it is responsible and predictor 0 is penalised as noobj.
    target = {"boxes": torch.tensor([[16.0, 16.0, 48.0, 80.0]]), "labels": torch.tensor([1])}
    raw = raw_output(
        {(0, 0): ([(0.1, 0.1, 0.1, 0.1, 0.6), (0.5, 0.75, 0.5, 0.6, 0.4)], (0.5, 0.5))}
    )
    model.forward = lambda x: raw
    losses = model.loss([torch.zeros(3, 128, 128)], [target])
    assert losses["loss_yolo_box"].item() == pytest.approx((0.6 - math.sqrt(0.5)) ** 2, rel=1e-4)
    # predicted box 16 x 23.04 centred at (16, 24): IoU = 16*23.04 / (16*32)
    assert losses["loss_yolo_obj"].item() == pytest.approx((0.4 - 23.04 / 32) ** 2, rel=1e-3)
    assert losses["loss_yolo_cls"].item() == pytest.approx(0.5**2 * 2, rel=1e-4)


def test_empty_targets_give_only_noobj_loss():
    model = tiny_yolo()
    model.forward = lambda x: raw_output({})
    losses = model.loss(
        torch.zeros(1, 3, 64, 64),
        [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}],
    )
    assert losses["loss_yolo_box"].item() == 0 and losses["loss_yolo_cls"].item() == 0
    assert losses["loss_yolo_noobj"].item() == pytest.approx(0.5 * 8 * 0.04, rel=1e-4)


def test_decode_hand_built_output():
    model = tiny_yolo(score_thresh=0.05)
    # cell (row 1, col 0), predictor 0: centre (16, 48) in the 64 x 64 input, 32 x 32 px,
    # sqrt w = sqrt h = sqrt(0.5), conf 0.9, classes (0.1, 0.9) -> scores 0.81 (class 1)
    # and 0.09 (class 0). Others ~0.
    raw = raw_output(
        {(1, 0): ([(0.5, 0.5, 0.5**0.5, 0.5**0.5, 0.9), (0.5, 0.5, 0.5, 0.5, 1e-6)], (0.1, 0.9))},
        1e-6,
    )
    model.forward = lambda x: raw
    (out,) = model.predict([torch.zeros(3, 128, 256)])  # original image: H=128, W=256
    assert out["labels"].tolist() == [1, 0]
    assert out["scores"] == pytest.approx(torch.tensor([0.81, 0.09]), rel=1e-4)
    expected = torch.tensor([[0.0, 64.0, 128.0, 128.0]] * 2)  # (0,32,32,64) scaled by (4, 2)
    assert torch.allclose(out["boxes"], expected, atol=1e-3)


def test_decode_nms_suppresses_same_class_duplicates():
    model = tiny_yolo(score_thresh=0.05, nms_thresh=0.5)
    box = (0.5, 0.5, 0.5, 0.5)
    raw = raw_output({(0, 0): ([(*box, 0.9), (*box, 0.8)], (1.0 - 1e-6, 1e-6))}, 1e-6)
    model.forward = lambda x: raw
    (out,) = model.predict(torch.zeros(1, 3, 64, 64))
    assert out["labels"].tolist() == [0]
    assert out["scores"].item() == pytest.approx(0.9, rel=1e-4)


# YOLO-specific fields; each other model family tests its own contract (tests/test_faster_rcnn.py)
@pytest.mark.parametrize("name", sorted(n for n in MODELS if n.startswith("yolo")))
@pytest.mark.parametrize("head", ["fc", "conv"])
def test_registry_models_loss_keys_gradients_and_predict(name, head):
    cfg = ModelConfig(name=name, num_classes=3, input_size=[96, 96])
    cfg.backbone.name = "lenet"
    cfg.yolo.head, cfg.yolo.extra_convs, cfg.yolo.head_channels, cfg.yolo.hidden_dim = (
        head,
        2,
        16,
        32,
    )
    model = build_model(cfg)
    images = [torch.rand(3, 80, 120), torch.rand(3, 96, 96)]
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    losses = model.loss(images, targets)
    assert all(k.startswith("loss_") and v.dim() == 0 for k, v in losses.items())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    model.eval()
    outs = model.predict(images)
    assert len(outs) == 2
    for out, img in zip(outs, images, strict=True):
        assert out["boxes"].dtype == torch.float32 and out["labels"].dtype == torch.int64
        assert (out["boxes"][:, 2] <= img.shape[2]).all() and (
            out["boxes"][:, 3] <= img.shape[1]
        ).all()
