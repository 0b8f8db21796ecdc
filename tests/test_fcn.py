"""FCN: output size on every backbone and variant, the paper's VGG-16 crops, bilinear upsampling
against F.interpolate, zero-initialized scores, the loss and prediction contract."""

import math

import pytest
import torch
import torch.nn.functional as F

from visionkit.config import BackboneConfig, load_config
from visionkit.errors import ConfigError
from visionkit.models import MODELS, build_model, model_task
from visionkit.models.backbones import BACKBONES, Backbone, build_backbone
from visionkit.models.heads.fcn_head import BilinearUpsample, bilinear_upsampler
from visionkit.models.segmentors.fcn import fcn_on_backbone

ODD = (37, 53)  # not a multiple of any stride


def fcn_config(backbone: str, variant: str = "8s", **fcn):
    cfg = load_config(None).model
    cfg.name, cfg.num_classes, cfg.input_size = "fcn", 3, []
    cfg.backbone.name = backbone
    cfg.fcn.variant, cfg.fcn.head, cfg.fcn.head_channels, cfg.fcn.dropout = variant, "conv", 8, 0.1
    for k, v in fcn.items():
        setattr(cfg.fcn, k, v)
    return cfg


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_variant_on_every_backbone_gives_the_input_size(name):
    torch.manual_seed(0)
    backbone = build_backbone(BackboneConfig(name=name))
    if not {8, 16, 32} <= {s for _, s in backbone.levels.values()}:
        pytest.skip(f"{name} has no levels at strides 8, 16 and 32")
    size = (97, 133) if name == "alexnet" else ODD  # AlexNet's valid layers need ~100 px
    for variant in ("32s", "16s", "8s"):
        model = fcn_on_backbone(backbone, fcn_config(name, variant)).eval()
        with torch.no_grad():
            assert model(torch.rand(1, 3, *size)).shape == (1, 3, *size), variant
        strides = [model.backbone.levels[n][1] for n in model.backbone.out_features]
        assert strides == [32, 16, 8][: len(strides)][::-1], variant


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_odd_333x517_input_through_predict(variant):
    model = build_model(fcn_config("fast_yolo", variant)).eval()
    out = model.predict([torch.rand(3, 333, 517), torch.rand(3, 61, 40)], return_logits=True)
    assert out[0]["sem_seg"].shape == (333, 517) and out[0]["sem_seg"].dtype == torch.int64
    assert out[1]["sem_seg"].shape == (61, 40) and out[1]["logits"].shape == (3, 61, 40)


def test_dilated_resnet_output_stride_8():
    cfg = fcn_config("resnet18", "16s")
    cfg.backbone.output_stride = 8
    model = build_model(cfg).eval()
    assert model.backbone.out_features == ["res2", "res5"]
    with torch.no_grad():
        feats = model.backbone(torch.rand(1, 3, 64, 96))
        assert feats["res5"].shape[-2:] == (8, 12)
        assert model(torch.rand(1, 3, *ODD)).shape == (1, 3, *ODD)
    cfg.fcn.variant = "8s"
    with pytest.raises(ConfigError, match="FCN-8s needs a level at stride 2"):
        build_model(cfg)


def test_paper_vgg16_crops_and_output_size():
    cfg = fcn_config("vgg16", "8s", head="fc", input_pad=100, dropout=0.5)
    backbone = build_backbone(cfg.backbone)
    expected = {"32s": ([], 19), "16s": ([5], 27), "8s": ([5, 9], 31)}  # the paper's crop offsets
    for variant, (shifts, final) in expected.items():
        cfg.fcn.variant = variant
        cfg.fcn.learn_final_upsample = True  # the paper's deconvolution and its crop
        model = fcn_on_backbone(backbone, cfg).eval()
        assert model.head.shifts == shifts and model.head.final_start == final
        cfg.fcn.learn_final_upsample = False  # F.interpolate starts f/2 pixels earlier
        model = fcn_on_backbone(backbone, cfg).eval()
        factor = {"32s": 32, "16s": 16, "8s": 8}[variant]
        assert model.head.final_start == final - factor // 2
    assert model.backbone.out_features == ["pool3", "pool4", "pool5"]
    assert model.backbone.stages["pool1"][0].padding == (100, 100)
    assert model.backbone.stages["pool5"].ceil_mode  # Caffe's pooling: any input reaches fc6
    assert model.head.layers[0].kernel_size == (7, 7) and model.head.layers[0].padding == (0, 0)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 1, 3)).shape == (1, 3, 1, 3)


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_bilinear_init_equals_interpolate(factor):
    up = bilinear_upsampler(3, factor)
    x = torch.rand(2, 3, 5, 7)
    with torch.no_grad():
        y = up(x)[..., factor // 2 :, factor // 2 :]  # no padding: shift by f/2
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    a = factor // 2  # away from the borders, where interpolate replicates and the conv sees zeros
    inner = (..., slice(a, 4 * factor + a), slice(a, 6 * factor + a))
    assert torch.allclose(y[inner], ref[inner], atol=1e-5)
    assert up.weight.requires_grad
    assert torch.equal(BilinearUpsample(factor)(x), ref)


@pytest.mark.parametrize("variant", ["32s", "8s"])
def test_fixed_final_interpolation_equals_the_deconvolution_inside(variant):
    """The same weights with the final upsampling fixed (F.interpolate) or learned (initialized
    bilinear): identical scores away from the borders, and the interpolation replicates the edge
    where the deconvolution fades to zero."""
    torch.manual_seed(0)
    fixed = build_model(fcn_config("fast_yolo", variant)).eval()
    learned = build_model(fcn_config("fast_yolo", variant, learn_final_upsample=True)).eval()
    with torch.no_grad():  # non-zero scores, so that the comparison means something
        for score in [fixed.head.score, *fixed.head.skip_scores]:
            torch.nn.init.normal_(score.weight, std=0.1)
    missing = learned.load_state_dict(fixed.state_dict(), strict=False).missing_keys
    assert missing == [f"head.upsamplers.{len(learned.head.upsamplers) - 1}.weight"]
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        a, b = fixed(x), learned(x)
    assert a.shape == b.shape == (1, 3, 96, 128)
    h = {"32s": 16, "8s": 4}[variant]  # half the final upsampling factor
    inside = (..., slice(h, -h), slice(h, -h))
    assert torch.allclose(a[inside], b[inside], atol=1e-9, rtol=1e-4)
    for k in range(h):  # top rows: a replicates row 0, b weighs it by the kernel's coverage
        assert torch.equal(a[..., k, h:-h], a[..., 0, h:-h])
        coverage = (k + h + 0.5) / (2 * h)
        assert torch.allclose(b[..., k, h:-h], coverage * a[..., k, h:-h], atol=1e-9, rtol=1e-4)
    assert isinstance(fixed.head.upsamplers[-1], BilinearUpsample)


def test_checkpoints_with_the_old_fixed_deconvolution_load():
    model = build_model(fcn_config("fast_yolo", "8s"))
    state = model.state_dict()
    key = f"head.upsamplers.{len(model.head.upsamplers) - 1}.weight"
    assert key not in state
    state[key] = torch.zeros(3, 1, 16, 16)
    model.load_state_dict(state)  # strict


def test_loss_keys_gradients_and_zero_initialized_scores():
    torch.manual_seed(0)
    model = build_model(fcn_config("lenet", "8s"))
    assert model_task("fcn") == "sem_seg" and MODELS["fcn"] is not None
    assert isinstance(model.head.upsamplers[-1], BilinearUpsample)  # the paper's fixed last one
    images = [torch.rand(3, 30, 41), torch.rand(3, 17, 24)]
    targets = [
        {"sem_seg": torch.randint(0, 3, (30, 41))},
        {"sem_seg": torch.full((17, 24), 255, dtype=torch.long)},  # nothing labelled
    ]
    losses = model.loss(images, targets)
    assert list(losses) == ["loss_fcn_ce"]
    # zero scores: uniform logits, so the mean cross-entropy over labelled pixels is log C
    assert losses["loss_fcn_ce"].item() == pytest.approx(math.log(3), rel=1e-5)
    losses["loss_fcn_ce"].backward()
    assert model.head.score.weight.grad.abs().sum() > 0
    assert all(s.weight.grad.abs().sum() > 0 for s in model.head.skip_scores)
    first = model.backbone.stages["c1"][0].weight
    assert first.grad is None or first.grad.abs().sum() == 0  # nothing reaches it through zeros
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.step()
    opt.zero_grad()
    model.loss(images, targets)["loss_fcn_ce"].backward()
    assert first.grad.abs().sum() > 0
    empty = model.loss(images[1:], targets[1:])["loss_fcn_ce"]
    assert empty.item() == 0 and empty.requires_grad


def test_config_errors():
    cfg = fcn_config("resnet18", "8s")
    cfg.backbone.out_features = ["res4", "res5"]
    with pytest.raises(ConfigError, match="FCN-8s fuses 3 levels"):
        build_model(cfg)
    odd_start = Backbone([("s1", torch.nn.Sequential(torch.nn.BatchNorm2d(3)), 3, 1)])
    with pytest.raises(ConfigError, match="input_pad needs a backbone that starts with a conv"):
        fcn_on_backbone(odd_start, fcn_config("lenet", "32s", input_pad=100))
    with pytest.raises(ConfigError, match="output_stride < 32 needs a ResNet"):
        build_backbone(BackboneConfig(name="vgg11", output_stride=16))
