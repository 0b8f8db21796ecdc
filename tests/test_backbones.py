"""Every registered backbone: forward, declared channels/strides, gradients, weights, freezing."""

import pytest
import torch
import torchvision

from visionkit.config import BackboneConfig
from visionkit.errors import CheckpointError, ConfigError
from visionkit.models.backbones import BACKBONES, build_backbone

SIZE = 128


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_levels_match_what_forward_returns_and_gradients_flow(name):
    torch.manual_seed(0)
    probe = build_backbone(BackboneConfig(name=name))
    backbone = build_backbone(BackboneConfig(name=name, out_features=list(probe.levels)))
    out = backbone(torch.rand(1, 3, SIZE, SIZE))
    assert list(out) == list(backbone.levels)
    for level, feat in out.items():
        channels, stride = backbone.levels[level]
        assert feat.shape[1] == channels, level
        # exact for padded nets; AlexNet's valid convs lose one pixel
        tol = 1 if name == "alexnet" else 0
        assert (
            abs(feat.shape[2] - SIZE // stride) <= tol
            and abs(feat.shape[3] - SIZE // stride) <= tol
        )
    sum(f.mean() for f in out.values()).backward()
    first = next(p for p in backbone.parameters() if p.dim() == 4)
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_forward_stops_at_the_deepest_requested_level():
    backbone = build_backbone(BackboneConfig(name="resnet18", out_features=["res3"]))
    calls = []
    backbone.stages["res4"].register_forward_hook(lambda *a: calls.append(1))
    assert list(backbone(torch.rand(1, 3, 64, 64))) == ["res3"]
    assert not calls
    assert build_backbone(BackboneConfig(name="resnet18")).out_features == ["res5"]


TV_TRUNKS = {
    "alexnet": ("alexnet", "features."),
    "vgg11": ("vgg11", "features."),
    "vgg16": ("vgg16", "features."),
    "resnet18": ("resnet18", None),
    "resnet34": ("resnet34", None),
    "resnet50": ("resnet50", None),
    "resnet101": ("resnet101", None),
    "densenet121": ("densenet121", "features."),
    "googlenet": ("googlenet", None),
}


@pytest.mark.parametrize("name", sorted(TV_TRUNKS))
def test_parameter_counts_equal_torchvision_trunks(name):
    tv_name, prefix = TV_TRUNKS[name]
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    tv = getattr(torchvision.models, tv_name)(weights=None, **kwargs)
    expected = sum(
        p.numel()
        for k, p in tv.named_parameters()
        if (k.startswith(prefix) if prefix else not k.startswith("fc."))
    )
    assert (
        sum(p.numel() for p in build_backbone(BackboneConfig(name=name)).parameters()) == expected
    )


def test_xception_parameter_count():
    # Xception has 22.9M parameters with its 2048 x 1000 (+ 1000 bias) classifier: 22.86M - 2.05M.
    n = sum(p.numel() for p in build_backbone(BackboneConfig(name="xception")).parameters())
    assert abs(n - 20.81e6) / 20.81e6 < 0.01


def test_pretrained_from_local_file(tmp_path):
    tv = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    backbone = build_backbone(BackboneConfig(name="resnet18", pretrained=str(path)))
    assert torch.equal(backbone.stages["res2"][0].weight, tv.conv1.weight)
    own = tmp_path / "own.pth"
    torch.save(backbone.state_dict(), own)
    again = build_backbone(BackboneConfig(name="resnet18", pretrained=str(own)))
    assert torch.equal(again.stages["res5"][0].conv1.weight, tv.layer4[0].conv1.weight)


def test_weight_and_name_errors(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.pth"):
        build_backbone(BackboneConfig(name="resnet18", pretrained=str(bad)))
    with pytest.raises(CheckpointError, match="not found"):
        build_backbone(BackboneConfig(name="resnet18", pretrained=str(tmp_path / "nope.pth")))
    vgg = tmp_path / "vgg.pth"
    torch.save(torchvision.models.vgg11(weights=None).state_dict(), vgg)
    with pytest.raises(CheckpointError, match="resnet18"):
        build_backbone(BackboneConfig(name="resnet18", pretrained=str(vgg)))
    with pytest.raises(ConfigError, match="no ImageNet weights for 'xception'"):
        build_backbone(BackboneConfig(name="xception", pretrained=True))
    with pytest.raises(ConfigError, match="unknown backbone 'resnet19'"):
        build_backbone(BackboneConfig(name="resnet19"))
    with pytest.raises(ConfigError, match="no level 'res6'.*res2, res3, res4, res5"):
        build_backbone(BackboneConfig(name="resnet18", out_features=["res6"]))


def test_freeze_stages():
    backbone = build_backbone(BackboneConfig(name="resnet18", freeze_stages=2))
    backbone.train()
    assert not any(
        p.requires_grad for s in ("res2", "res3") for p in backbone.stages[s].parameters()
    )
    assert all(p.requires_grad for p in backbone.stages["res4"].parameters())
    bns = [m for m in backbone.stages["res2"].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert backbone.stages["res4"][0].bn1.training
