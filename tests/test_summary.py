"""Parameter and MAC counts, receptive fields, and tools/summary.py."""

import json
from pathlib import Path

import pytest
import torch
import torchvision
from script_loader import load_script
from torch import nn

from visionkit.analysis.complexity import count_params_and_macs, layer_macs, summarize
from visionkit.analysis.receptive_field import Field, level_fields, receptive_field
from visionkit.config import BackboneConfig
from visionkit.models.backbones import build_backbone
from visionkit.models.backbones.geometry import level_geometry

ROOT = Path(__file__).resolve().parents[1]


def all_levels(name: str):
    backbone = build_backbone(BackboneConfig(name=name))
    backbone.set_out_features(list(backbone.levels))
    return backbone


@pytest.fixture(scope="module")
def tool():
    return load_script("tools/summary.py")


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "resnet50"])
def test_total_params_are_every_parameter_once(name):
    backbone = all_levels(name)
    stats = summarize(backbone, (64, 64))
    expected = sum(p.numel() for p in backbone.parameters())
    assert stats.params == expected
    assert sum(layer.params for layer in stats.layers) == expected  # all in leaf layers
    assert count_params_and_macs(backbone, (64, 64)) == (expected, stats.macs)


def test_alexnet_per_layer_counts_by_hand():
    stats = summarize(all_levels("alexnet"), (224, 224))
    conv1 = stats.layers[0]
    assert conv1.name == "stages.conv1.0" and conv1.output_shape == (1, 64, 55, 55)
    assert conv1.params == 11 * 11 * 3 * 64 + 64  # torchvision's single-GPU AlexNet: 64 filters
    # Cout * H_out * W_out * Cin * k * k / groups, H_out = (224 + 2*2 - 11) // 4 + 1 = 55
    assert conv1.macs == 64 * 55 * 55 * 3 * 11 * 11 == 70_276_800
    convs = [layer for layer in stats.layers if layer.type == "Conv2d"]
    assert [c.params for c in convs] == [23_296, 307_392, 663_936, 884_992, 590_080]
    assert stats.params == 2_469_696


def test_layers_the_forward_never_runs_keep_their_parameters():
    backbone = build_backbone(BackboneConfig(name="alexnet", out_features=["conv2"]))
    stats = summarize(backbone, (224, 224))
    idle = [layer for layer in stats.layers if layer.output_shape is None]
    assert [layer.name for layer in idle] == ["stages.conv5.0", "stages.conv5.2", "stages.conv5.4"]
    assert stats.idle_params == 663_936 + 884_992 + 590_080
    assert stats.params == 2_469_696 and stats.macs == 70_276_800 + 223_948_800


def test_grouped_dilated_conv_and_other_layers():
    conv = nn.Conv2d(8, 16, 3, stride=2, dilation=2, groups=4, bias=False)
    x = torch.zeros(1, 8, 20, 20)
    y = conv(x)
    # H_out = (20 - 2 * (3 - 1) - 1) // 2 + 1 = 8; each output sees 8 / 4 input channels
    assert y.shape == (1, 16, 8, 8)
    assert layer_macs(conv, (x,), y) == 16 * 8 * 8 * (8 // 4) * 3 * 3
    up = nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1)
    z = torch.zeros(1, 6, 5, 5)
    assert layer_macs(up, (z,), up(z)) == 6 * 5 * 5 * 4 * 4 * 4  # each input scattered
    conv1d = nn.Conv1d(4, 6, 5, padding=2)
    s = torch.zeros(2, 4, 10)
    assert layer_macs(conv1d, (s,), conv1d(s)) == 2 * 6 * 10 * 4 * 5
    bn = nn.BatchNorm2d(16)
    assert layer_macs(bn, (y,), y) == y.numel()  # one per element
    pool = nn.MaxPool2d(2)
    assert layer_macs(pool, (y,), pool(y)) == 0


def test_tiny_net_total_macs_exactly():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)
    )
    params, macs = count_params_and_macs(net, (8, 8))
    assert params == (3 * 3 * 3 * 4 + 4) + (256 * 10 + 10)
    assert macs == 4 * 8 * 8 * 3 * 3 * 3 + 10 * 256 == 9472
    assert next(net.parameters()).device.type == "cpu"  # the model itself is left alone


def test_receptive_field_of_hand_built_stacks():
    two = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.Conv2d(1, 1, 3, padding=1))
    assert receptive_field(two).size == 5 and receptive_field(two).jump == 1
    strided = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.Conv2d(1, 1, 3))
    f = receptive_field(strided)
    assert (f.size, f.jump) == (3 + (3 - 1) * 2, 2) == (7, 2)
    dilated = nn.Conv2d(1, 1, 3, dilation=2)
    assert receptive_field(dilated, Field()).size == 5


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 2, 3, padding=1)
        self.b = nn.Conv2d(2, 2, 3, padding=1)
        self.skip = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.b(self.a(x)) + self.skip(x)


def test_receptive_field_of_a_branching_block_matches_the_gradient():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), Residual(), nn.AvgPool2d(2))
    field = receptive_field(net)
    assert (field.size, field.jump) == (3 + 2 * 2 + 2 * 2 + 1 * 2, 4) == (13, 4)
    with torch.no_grad():  # all-positive weights: no cancellation in the gradient
        for p in net.parameters():
            p.copy_(p.abs() + 0.1)
    x = torch.zeros(1, 1, 64, 64, requires_grad=True)
    out = net(x)
    out[0, 0, 8, 8].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero().squeeze(1)
    assert int(rows[-1] - rows[0] + 1) == field.size
    assert int(rows[0]) == field.jump * 8 + field.start


def test_backbone_levels_known_values_and_geometry():
    for name, level, size, stride in [
        ("alexnet", "pool5", 195, 32),
        ("vgg16", "conv5", 196, 16),
        ("vgg16", "pool5", 212, 32),
        ("resnet50", "res5", 427, 32),
    ]:
        with torch.device("meta"):
            backbone = build_backbone(BackboneConfig(name=name))
        fields = level_fields(backbone)
        assert (fields[level].size, fields[level].jump) == (size, stride), name
        geometry = level_geometry(backbone)  # the strides and centres of geometry.py
        assert all((fields[n].jump, fields[n].centre) == g for n, g in geometry.items()), name


def test_cli_backbone_prints_table_totals_and_fields(tool, capsys, tmp_path):
    assert tool.main(["--backbone", "alexnet", "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "stages.conv1.0" in out and "70,276,800" in out and "23,296" in out
    assert "total params: 2,469,696" in out and "MACs: 655,566,528" in out
    assert [ln.split()[:4] for ln in out.splitlines() if ln.startswith("pool5 ")] == [
        ["pool5", "256", "32", "195"]
    ]
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["totals"]["params"] == 2_469_696
    assert report["layers"][0]["output_shape"] == [1, 64, 55, 55]
    assert report["levels"][-1]["receptive_field"] == [195, 195]


def test_cli_config_prints_totals_without_downloads(tool, capsys, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("summary.py must not load pretrained weights")

    monkeypatch.setattr(torchvision.models, "get_weight", no_download)
    assert tool.main(["--config", str(ROOT / "visionkit/configs/yolo_v1_shapes.yaml")]) == 0
    out = capsys.readouterr().out
    assert "input [1, 3, 192, 192]" in out and "total params:" in out and "head.out" in out
    # pretrained: true in the config; 5 regions keep R-CNN's per-region AlexNet cheap
    args = [
        "--config",
        str(ROOT / "visionkit/configs/rcnn_alexnet_voc.yaml"),
        "--rois",
        "5",
        "--json",
        "-",
    ]
    assert tool.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input_shape"] == [5, 3, 227, 227] and report["rois"] == 5
    fc6 = next(r for r in report["layers"] if r["name"] == "head.layers.1")
    assert fc6["macs"] == 5 * 4096 * 256 * 6 * 6


@pytest.mark.parametrize(
    "config", sorted(p.name for p in (ROOT / "visionkit" / "configs").glob("*.yaml"))
)
def test_cli_runs_on_every_config(tool, capsys, config):
    assert tool.main(["--config", str(ROOT / "visionkit" / "configs" / config)]) == 0
    assert "total params:" in capsys.readouterr().out


def test_help_shows_examples(tool, capsys):
    with pytest.raises(SystemExit) as e:
        tool.main(["--help"])
    assert e.value.code == 0
    assert "visionkit summary --backbone alexnet" in capsys.readouterr().out
