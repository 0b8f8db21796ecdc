"""Mask R-CNN (``visionkit/models/detectors/mask_rcnn.py``, ``heads/mask_head.py``): the mask
loss on the positive RoIs' ground-truth class only, predict's pasted masks, and torchvision's
``maskrcnn_resnet50_fpn`` rebuilt by ``mask_rcnn_r50_fpn_coco.yaml`` with its weights converted
giving torchvision's detections, masks and training losses (the deliberate differences of
``tests/test_torchvision_weights.py`` hold here too)."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from test_model_contract import build, images, targets
from test_torchvision_weights import SMALL, assert_same_detections, randomize_norms
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.misc import FrozenBatchNorm2d

from visionkit.checkpoints.torchvision import convert_state_dict
from visionkit.config import load_config
from visionkit.models import build_model
from visionkit.models.heads.mask_head import MaskHead
from visionkit.structures.masks import InstanceMasks, paste_masks

C = 3


def test_mask_loss_on_positive_rois_and_their_classes_map_only():
    model = build("mask_rcnn").train()
    heads, seen = model.roi_heads, {}
    sample = heads.sample

    def recording_sample(*args):
        out = sample(*args)
        seen["positives"] = [(p.clone(), m.clone()) for p, m in heads._positives]
        seen["classes"] = out[1]
        return out

    def keep_logits(module, inputs, output):
        output.retain_grad()
        seen["logits"] = output

    heads.sample = recording_sample
    heads.mask_head.register_forward_hook(keep_logits)
    ims, tgts = images(), targets(model)
    losses = model.loss(ims, tgts)
    logits = seen["logits"]  # (P, C, M, M)
    num_pos = int((seen["classes"] < C).sum())
    assert logits.shape == (num_pos, C, 8, 8) and num_pos > 0
    # the targets by hand: each positive's instance cropped to it in original pixels
    scales = model.preprocess(ims).scales
    crops, labels = [], []
    for (pos, match), t, scale in zip(seen["positives"], tgts, scales, strict=True):
        crops.append(t["masks"].crop_and_resize(pos / scale, 8, match))
        labels.append(t["labels"][match])
    labels = torch.cat(labels)
    own = logits[torch.arange(num_pos), labels]
    expected = F.binary_cross_entropy_with_logits(own, torch.cat(crops))
    assert torch.allclose(losses["loss_mask_bce"], expected)
    losses["loss_mask_bce"].backward()
    grad = logits.grad.abs().sum((2, 3))  # (P, C)
    assert (grad[torch.arange(num_pos), labels] > 0).all()
    grad[torch.arange(num_pos), labels] = 0
    assert (grad == 0).all()  # no other class's map learns from a positive


def test_no_ground_truth_gives_a_zero_mask_loss_with_a_gradient_path():
    model = build("mask_rcnn").train()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
              "masks": InstanceMasks.from_polygons([], h, w)}
             for h, w in [im.shape[1:] for im in images()]]  # fmt: skip
    losses = model.loss(images(), empty)
    assert losses["loss_mask_bce"].item() == 0.0
    losses["loss_mask_bce"].backward()
    assert model.roi_heads.mask_head.predictor.weight.grad is not None
    with pytest.raises(ValueError, match="2 instance masks for 1 boxes"):
        bad = targets(model)
        bad[1]["masks"] = bad[0]["masks"]
        model.loss(images(), bad)


def test_predict_pastes_detects_masks_into_the_original_image():
    model = build("mask_rcnn").eval()
    batch = model.preprocess(images())
    with torch.no_grad():
        flat = model.detect(batch.tensor, batch.image_sizes)
        outs = model.predict(images())
    assert flat["masks"].shape == (len(flat["boxes"]), 1, 8, 8)
    assert ((flat["masks"] >= 0) & (flat["masks"] <= 1)).all()
    for i, (out, (h, w)) in enumerate(zip(outs, [im.shape[1:] for im in images()], strict=True)):
        mine = flat["image_index"] == i
        boxes = flat["boxes"][mine] / batch.scales[i]
        assert torch.allclose(out["boxes"], boxes.clamp(min=0), atol=1e-4)
        assert torch.equal(out["masks"], paste_masks(flat["masks"][mine], out["boxes"], h, w))


def test_mask_head_shapes_and_initialization():
    head = MaskHead(16, 5, conv_channels=32, num_convs=4)
    assert head(torch.zeros(3, 16, 14, 14)).shape == (3, 5, 28, 28)
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    assert len(convs) == 6 and all(not m.bias.detach().any() for m in convs)
    assert MaskHead(16, 5, 8, num_convs=0)(torch.zeros(1, 16, 7, 7)).shape == (1, 5, 14, 14)


# ---- torchvision's maskrcnn_resnet50_fpn, converted ----
def torchvision_mask_rcnn() -> MaskRCNN:
    """torchvision's maskrcnn_resnet50_fpn as its COCO weights build it (frozen BN of eps 0, 3
    trainable layers), random, its class scores peaked so that detections pass 0.05."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    trunk = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    tv = MaskRCNN(_resnet_fpn_extractor(trunk, 3), num_classes=91)
    overwrite_eps(tv, 0.0)
    randomize_norms(tv, g)
    with torch.no_grad():
        tv.roi_heads.box_predictor.cls_score.weight.normal_(0, 1.0, generator=g)
        tv.roi_heads.box_predictor.bbox_pred.weight.normal_(0, 0.05, generator=g)
        tv.roi_heads.mask_predictor.mask_fcn_logits.weight.normal_(0, 1.0, generator=g)
    return tv


def mask_rcnn_pair() -> tuple[MaskRCNN, torch.nn.Module]:
    tv = torchvision_mask_rcnn()
    cfg = load_config("visionkit/configs/mask_rcnn_r50_fpn_coco.yaml", SMALL)
    tv.transform.min_size = (cfg.model.resize.min_size,)
    tv.transform.max_size = cfg.model.resize.max_size
    vk = build_model(cfg.model)
    vk.load_state_dict(convert_state_dict("maskrcnn_resnet50_fpn", tv.state_dict()))
    return tv, vk


def pairs(theirs: dict, ours: dict) -> list[tuple[int, int]]:
    """(ours, theirs) index pairs of the same detection (label, box within 0.01 px, score
    within 1e-4; the closest box where several qualify)."""
    gap = (ours["boxes"][:, None] - theirs["boxes"][None]).abs().amax(-1)
    same = (ours["labels"][:, None] == theirs["labels"][None] - 1) & (gap <= 0.01)
    same &= (ours["scores"][:, None] - theirs["scores"][None]).abs() <= 1e-4
    gap[~same] = float("inf")
    return [(i, int(gap[i].argmin())) for i in range(len(gap))]


def test_mask_rcnn_detections_and_masks_equal_torchvisions():
    tv, vk = mask_rcnn_pair()
    tv.eval(), vk.eval()
    tv_heads, vk_detect = [], vk.detect
    # the heads' results before the transform pastes their masks (in place)
    tv.roi_heads.register_forward_hook(
        lambda m, i, out: tv_heads.append([{k: v.clone() for k, v in r.items()} for r in out[0]])
    )
    flat = []
    vk.detect = lambda *a, **k: flat.append(vk_detect(*a, **k)) or flat[-1]
    g = torch.Generator().manual_seed(2)
    # two sizes in one batch: 416 x 550 -> 320 x 423; 300 x 451 -> 320 x 481 (padded 320 x 512)
    ims = [torch.rand(3, 416, 550, generator=g), torch.rand(3, 300, 451, generator=g)]
    with torch.no_grad():
        theirs = tv(ims)
        ours = vk.predict(ims)
    assert_same_detections(theirs, ours)
    equal = total = 0
    for i, (t, o) in enumerate(zip(theirs, ours, strict=True)):
        small = flat[0]["masks"][flat[0]["image_index"] == i]  # (D, 1, 28, 28)
        for a, b in pairs(t, o):
            assert (small[a] - tv_heads[0][i]["masks"][b]).abs().max() <= 1e-4
            equal += int((o["masks"][a] == (t["masks"][b, 0] > 0.5)).sum())
            total += o["masks"][a].numel()
        assert o["masks"].shape == (len(o["boxes"]), *ims[i].shape[1:])
    assert equal >= 0.999 * total and total > 0


def test_mask_rcnn_training_losses_equal_torchvisions():
    tv, vk = mask_rcnn_pair()
    tv.train(), vk.train()
    tv.transform.torch_choice = lambda sizes: sizes[0]  # no RNG draw
    g = torch.Generator().manual_seed(3)
    ims = [torch.rand(3, 320, 400, generator=g), torch.rand(3, 480, 320, generator=g)]
    boxes = [
        torch.tensor([[10.0, 20.0, 120.0, 200.0], [150.0, 30.0, 390.0, 100.0]]),
        torch.tensor([[5.0, 5.0, 60.0, 90.0], [100.0, 200.0, 300.0, 470.0]]),
    ]
    labels = [torch.tensor([0, 17]), torch.tensor([55, 89])]
    bitmaps = []
    for b, im in zip(boxes, ims, strict=True):  # an ellipse inside each box
        y, x = torch.meshgrid(torch.arange(im.shape[1]) + 0.5, torch.arange(im.shape[2]) + 0.5,
                              indexing="ij")  # fmt: skip
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        rx, ry = (b[:, 2] - b[:, 0]) / 2, (b[:, 3] - b[:, 1]) / 2
        inside = ((x - cx[:, None, None]) / rx[:, None, None]) ** 2 + (
            (y - cy[:, None, None]) / ry[:, None, None]) ** 2 <= 1  # fmt: skip
        bitmaps.append(inside.to(torch.uint8))
    torch.manual_seed(7)
    theirs = tv(ims, [{"boxes": b, "labels": lb + 1, "masks": m}
                      for b, lb, m in zip(boxes, labels, bitmaps, strict=True)])  # fmt: skip
    torch.manual_seed(7)
    ours = vk.loss(ims, [{"boxes": b, "labels": lb, "masks": InstanceMasks.from_bitmaps(m)}
                         for b, lb, m in zip(boxes, labels, bitmaps, strict=True)])  # fmt: skip
    names = {"loss_rpn_cls": "loss_objectness", "loss_rpn_box": "loss_rpn_box_reg",
             "loss_roi_cls": "loss_classifier", "loss_roi_box": "loss_box_reg",
             "loss_mask_bce": "loss_mask"}  # fmt: skip
    assert set(ours) == set(names)
    for o, t in names.items():
        assert abs(ours[o].item() - theirs[t].item()) <= 1e-4, (o, ours[o], theirs[t])
    assert ours["loss_mask_bce"] > 0.1


def test_the_published_files_older_mask_head_names_convert_alike():
    state = torchvision_mask_rcnn().state_dict()
    old = {}
    for key, value in state.items():
        for i in range(4):
            key = key.replace(
                f"roi_heads.mask_head.{i}.0.", f"roi_heads.mask_head.mask_fcn{i + 1}."
            )
        old[key] = value
    assert any("mask_fcn4" in k for k in old)
    new, converted = convert_state_dict("maskrcnn_resnet50_fpn", state), convert_state_dict(
        "maskrcnn_resnet50_fpn", old)  # fmt: skip
    assert new.keys() == converted.keys() and all(torch.equal(new[k], converted[k]) for k in new)
    assert new["roi_heads.mask_head.predictor.weight"].shape == (90, 256, 1, 1)
