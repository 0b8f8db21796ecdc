"""torchvision's COCO models rebuilt by visionkit's configs give torchvision's outputs.

Each test builds the torchvision model with random weights (no download), with its BatchNorm
statistics and classifier drawn away from their identity/flat initialization so that every
converted tensor matters and detections pass the score threshold, converts its state dict with
the explicit key map (``visionkit/checkpoints/torchvision.py``) into the model of the
visionkit config, and compares outputs on the same images.

Deliberate differences in training mode (none changes a loss value):
- torchvision draws its training size from ``min_size`` with torch's RNG even when it holds one
  value; the test fixes that choice so both samplers see the same random stream.
- torchvision keeps the sampled RoIs in index order, visionkit positives first: the same set,
  summed in another order (float rounding only).
- The training images come at the network's size. torchvision normalizes and then resizes,
  visionkit resizes and then normalizes: the same values up to the last float bit, which is
  enough to reorder proposals whose objectness ties in float32 and so to change which
  negatives the seeded sampler draws (the eval test covers the resize).
- torchvision's FCN adds its auxiliary layer3 head's loss (weight 0.5 in its reference); visionkit
  has no auxiliary head (the key map drops it), so the main cross-entropy is compared.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.ops.misc import FrozenBatchNorm2d

from visionkit.checkpoints import load_checkpoint, load_model_weights
from visionkit.checkpoints.torchvision import convert_state_dict
from visionkit.config import load_config
from visionkit.config.schema import BackboneConfig
from visionkit.models import build_model
from visionkit.models.backbones import BACKBONES, build_backbone
from visionkit.structures.labels import IGNORE_LABEL

SMALL = ["model.resize.min_size=320", "model.resize.max_size=533"]


def randomize_norms(model: torch.nn.Module, g: torch.Generator) -> None:
    """BatchNorm statistics and affine away from identity (random init leaves them 1/0)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, FrozenBatchNorm2d | torch.nn.BatchNorm2d):
                n = m.weight.numel()
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 1)


def torchvision_faster_rcnn() -> FasterRCNN:
    """torchvision's fasterrcnn_resnet50_fpn as its COCO weights build it (frozen BN of eps 0,
    3 trainable layers), random, its class scores peaked so that detections pass 0.05."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    trunk = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    tv = FasterRCNN(_resnet_fpn_extractor(trunk, 3), num_classes=91)
    overwrite_eps(tv, 0.0)
    randomize_norms(tv, g)
    with torch.no_grad():
        tv.roi_heads.box_predictor.cls_score.weight.normal_(0, 1.0, generator=g)
        tv.roi_heads.box_predictor.bbox_pred.weight.normal_(0, 0.05, generator=g)
    return tv


def faster_rcnn_pair(overrides: list[str]) -> tuple[FasterRCNN, torch.nn.Module]:
    """:func:`torchvision_faster_rcnn` at the config's sizes, and visionkit's model of the config
    with its converted weights."""
    tv = torchvision_faster_rcnn()
    cfg = load_config("visionkit/configs/faster_rcnn_r50_fpn_coco.yaml", overrides)
    tv.transform.min_size = (cfg.model.resize.min_size,)
    tv.transform.max_size = cfg.model.resize.max_size
    vk = build_model(cfg.model)
    vk.load_state_dict(convert_state_dict("fasterrcnn_resnet50_fpn", tv.state_dict()))
    return tv, vk


def assert_same_detections(theirs: list[dict], ours: list[dict]) -> None:
    """The same detections per image: count, and one-to-one the same label, box within 0.01 px
    and score within 1e-4. Matched as sets: two detections whose scores differ by float noise
    (~1e-7) may swap ranks."""
    for t, o in zip(theirs, ours, strict=True):
        assert len(o["boxes"]) == len(t["boxes"]) > 0
        box_gap = (o["boxes"][:, None] - t["boxes"][None]).abs().amax(-1)  # (ours, theirs)
        same_label = o["labels"][:, None] == t["labels"][None] - 1  # torchvision: bg slot 0
        match = (
            (box_gap <= 0.01) & same_label & ((o["scores"][:, None] - t["scores"]).abs() <= 1e-4)
        )
        assert match.any(1).all() and match.any(0).all()
        assert torch.equal(o["labels"].sort().values, (t["labels"] - 1).sort().values)


@pytest.mark.parametrize("overrides", [[], SMALL], ids=["800px", "320px"])
def test_faster_rcnn_detections_equal_torchvisions(overrides):
    tv, vk = faster_rcnn_pair(overrides)
    tv.eval(), vk.eval()
    g = torch.Generator().manual_seed(2)
    # 832 x 1100 -> floor rounding: 800 x 1057; 300 x 451 -> 800 x 1202 (padded 800 x 1216)
    images = [torch.rand(3, 832, 1100, generator=g), torch.rand(3, 300, 451, generator=g)]
    with torch.no_grad():
        theirs = tv(images)
    assert_same_detections(theirs, vk.predict(images))


def test_faster_rcnn_training_losses_equal_torchvisions():
    tv, vk = faster_rcnn_pair(SMALL)
    tv.train(), vk.train()
    tv.transform.torch_choice = lambda sizes: sizes[0]  # no RNG draw (see the module)
    g = torch.Generator().manual_seed(3)
    # at the network's size (shorter side 320): see the module on the resize's order
    images = [torch.rand(3, 320, 400, generator=g), torch.rand(3, 480, 320, generator=g)]
    boxes = [
        torch.tensor([[10.0, 20.0, 120.0, 200.0], [150.0, 30.0, 390.0, 100.0]]),
        torch.tensor([[5.0, 5.0, 60.0, 90.0], [100.0, 200.0, 300.0, 470.0]]),
    ]
    labels = [torch.tensor([0, 17]), torch.tensor([55, 89])]
    torch.manual_seed(7)
    theirs = tv(
        images, [{"boxes": b, "labels": lb + 1} for b, lb in zip(boxes, labels, strict=True)]
    )
    torch.manual_seed(7)
    ours = vk.loss(
        images, [{"boxes": b, "labels": lb} for b, lb in zip(boxes, labels, strict=True)]
    )
    pairs = {
        "loss_rpn_cls": "loss_objectness",
        "loss_rpn_box": "loss_rpn_box_reg",
        "loss_roi_cls": "loss_classifier",
        "loss_roi_box": "loss_box_reg",
    }
    for o, t in pairs.items():
        assert abs(ours[o].item() - theirs[t].item()) <= 1e-4, (o, ours[o], theirs[t])
    assert ours["loss_roi_box"] > 0 and ours["loss_rpn_box"] > 0


@pytest.mark.parametrize("name", ["fcn_resnet50", "fcn_resnet101"])
def test_fcn_logits_and_loss_equal_torchvisions(name):
    torch.manual_seed(0)
    tv = getattr(torchvision.models.segmentation, name)(
        weights=None, weights_backbone=None, aux_loss=True
    )
    randomize_norms(tv, torch.Generator().manual_seed(1))
    cfg = load_config(f"visionkit/configs/{name}_coco.yaml", ["model.backbone.pretrained=false"])
    vk = build_model(cfg.model)
    vk.load_state_dict(convert_state_dict(name, tv.state_dict()))
    g = torch.Generator().manual_seed(2)
    images = [torch.rand(3, 90, 120, generator=g), torch.rand(3, 75, 64, generator=g)]
    batch = vk.preprocess(images)  # normalized, padded to a multiple of 8
    tv.eval(), vk.eval()
    with torch.no_grad():
        assert (vk(batch.tensor) - tv(batch.tensor)["out"]).abs().max() <= 1e-4
    tv.train(), vk.train()
    masks = [torch.randint(0, 21, im.shape[-2:], generator=g) for im in images]
    torch.manual_seed(5)  # the same dropout mask in both heads
    out = tv(batch.tensor)["out"]
    theirs = F.cross_entropy(out, batch.masks_to_input(masks), ignore_index=IGNORE_LABEL)
    torch.manual_seed(5)
    ours = vk.loss(images, [{"sem_seg": m} for m in masks])["loss_fcn_ce"]
    assert abs(ours.item() - theirs.item()) <= 1e-4


PLAIN_BATCHNORM = {  # torchvision builds these untrained with plain BatchNorm2d
    "fasterrcnn_resnet50_fpn": (
        torchvision.models.detection.fasterrcnn_resnet50_fpn,
        "visionkit/configs/faster_rcnn_r50_fpn_coco.yaml",
        "backbone.body.bn1.running_mean",
    ),
    "fcn_resnet50": (
        torchvision.models.segmentation.fcn_resnet50,
        "visionkit/configs/fcn_resnet50_coco.yaml",
        "backbone.bn1.running_mean",
    ),
}


@pytest.mark.parametrize("name", sorted(PLAIN_BATCHNORM))
def test_num_batches_tracked_of_a_plain_batchnorm_file_is_ignored(name, tmp_path):
    build, config, bn1 = PLAIN_BATCHNORM[name]
    torch.manual_seed(0)
    tv = build(weights=None, weights_backbone=None)
    randomize_norms(tv, torch.Generator().manual_seed(1))
    norms = [m for m in tv.modules() if type(m) is torch.nn.BatchNorm2d]
    for m in norms:
        m.num_batches_tracked.fill_(7)  # as after training steps
    state = tv.state_dict()
    assert len([k for k in state if k.endswith(".num_batches_tracked")]) == len(norms) >= 53
    torch.save(state, tmp_path / "tv.pth")
    ckpt = load_checkpoint(f"torchvision:{name}={tmp_path / 'tv.pth'}")
    cfg = load_config(config, ["model.backbone.pretrained=false"])
    vk = build_model(cfg.model)
    load_model_weights(vk, ckpt, cfg.model.name, "tv.pth", cfg.model.num_classes)  # strict
    ours = vk.state_dict()
    assert torch.equal(ours["backbone.stages.res2.1.running_mean"], state[bn1])
    assert all(int(v) == 0 for k, v in ours.items() if k.endswith(".num_batches_tracked"))


def torchvision_levels(name: str, model: torch.nn.Module) -> dict[str, str]:
    """visionkit level -> the torchvision node whose output it is."""
    if name.startswith("resnet"):
        return {f"res{i + 2}": f"layer{i + 1}" for i in range(4)}
    if name.startswith("vgg"):
        pools = [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.MaxPool2d)]
        nodes = {f"pool{i + 1}": f"features.{p}" for i, p in enumerate(pools[:4])}
        return nodes | {"conv5": f"features.{pools[4] - 1}", "pool5": f"features.{pools[4]}"}
    if name == "alexnet":
        return {"conv1": "features.2", "conv2": "features.5", "conv5": "features.11",
                "pool5": "features.12"}  # fmt: skip
    if name == "googlenet":
        return {"conv3": "conv3", "inception3": "inception3b", "inception4": "inception4e",
                "inception5": "inception5b"}  # fmt: skip
    return {"block1": "features.denseblock1", "block2": "features.denseblock2",
            "block3": "features.denseblock3", "block4": "relu"}  # fmt: skip


TORCHVISION_BACKED = [name for name, (_, weights) in BACKBONES.items() if weights is not None]


@pytest.mark.parametrize("name", TORCHVISION_BACKED)
def test_backbone_from_a_torchvision_classifier_file_gives_its_features(name, tmp_path):
    torch.manual_seed(0)
    extra = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    model = getattr(torchvision.models, name)(weights=None, **extra).eval()
    randomize_norms(model, torch.Generator().manual_seed(1))
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    nodes = torchvision_levels(name, model)
    backbone = build_backbone(
        BackboneConfig(name=name, pretrained=str(path), out_features=list(nodes))
    ).eval()
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = backbone(x)
        theirs = create_feature_extractor(model, {n: level for level, n in nodes.items()})(x)
    assert set(ours) == set(nodes)
    for level in nodes:
        assert ours[level].shape == theirs[level].shape
        assert (ours[level] - theirs[level]).abs().max() <= 1e-5 * theirs[level].abs().max(), level
