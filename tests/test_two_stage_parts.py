"""The shared two-stage parts against hand-computed values: anchors, box coder, matcher,
sampler, poolers, RPN targets, the aspect-preserving preprocessor."""

import math

import pytest
import torch

from visionkit.models.anchors import AnchorGenerator
from visionkit.models.heads.rpn import RPNHead
from visionkit.models.matching import BalancedSampler, Matcher
from visionkit.models.necks import FPN
from visionkit.models.poolers import RoIPooler, boxes_to_rois
from visionkit.models.preprocess import Preprocessor
from visionkit.models.proposers import RegionProposalNetwork
from visionkit.structures.box_coder import BoxCoder


def test_anchors_hand_computed_centres_sizes_and_order():
    gen = AnchorGenerator(sizes=[[16.0, 32.0]], aspect_ratios=[0.5, 1.0], strides=[16])
    assert gen.num_anchors == [4]
    anchors = gen([torch.zeros(1, 1, 2, 3)])[0]
    assert anchors.shape == (2 * 3 * 4, 4) and anchors.dtype == torch.float32
    w, h = 16 / math.sqrt(0.5), 16 * math.sqrt(0.5)  # ratio h/w = 0.5, area 16^2
    # cell (row 0, col 0): centre (8, 8); anchors ratio-major: (0.5, 16), (0.5, 32), (1, 16), ...
    assert anchors[0].tolist() == pytest.approx([8 - w / 2, 8 - h / 2, 8 + w / 2, 8 + h / 2])
    assert anchors[2].tolist() == pytest.approx([0.0, 0.0, 16.0, 16.0])
    assert anchors[3].tolist() == pytest.approx([-8.0, -8.0, 24.0, 24.0])
    # cell (row 1, col 2) -> index (1 * 3 + 2) * 4; centre (40, 24)
    assert anchors[5 * 4 + 2].tolist() == pytest.approx([32.0, 16.0, 48.0, 32.0])


def test_anchors_are_computed_once_per_feature_map_size():
    gen = AnchorGenerator([[32.0], [64.0]], [0.5, 1.0], [8, 16])
    feats = [torch.zeros(2, 1, 4, 6), torch.zeros(2, 1, 2, 3)]
    first, again = gen(feats), gen(feats)
    assert all(a is b for a, b in zip(first, again, strict=True))  # the cached grids
    for level, a in enumerate(first):  # and they are what grid_anchors computes
        h, w = feats[level].shape[-2:]
        assert torch.equal(a, gen.grid_anchors(level, h, w, a.device, (32, 48)))
    other = gen([torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 3, 3)])
    assert other[0].shape == (5 * 5 * 2, 4) and len(gen._grids) == 4
    for size in range(1, 80):  # many input sizes: the cache stays bounded
        gen([torch.zeros(1, 1, size, size), torch.zeros(1, 1, size, size)])
    assert len(gen._grids) <= 64


def test_paper_default_anchors_have_the_paper_areas():
    gen = AnchorGenerator()
    cell = gen([torch.zeros(1, 1, 1, 1)])[0]
    assert gen.num_anchors == [9] and gen.strides == [16]
    wh = cell[:, 2:] - cell[:, :2]
    assert wh.prod(1).tolist() == pytest.approx([128.0**2, 256.0**2, 512.0**2] * 3, rel=1e-5)
    assert (wh[:, 1] / wh[:, 0]).tolist() == pytest.approx([0.5] * 3 + [1.0] * 3 + [2.0] * 3)
    two_levels = AnchorGenerator([[32.0], [64.0]], [1.0], [8, 16])
    a8, a16 = two_levels([torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)])
    assert a8.shape == (16, 4) and a16.shape == (4, 4)
    assert a16[0].tolist() == pytest.approx([-24.0, -24.0, 40.0, 40.0])


def test_box_coder_hand_computed_delta_round_trip_and_clamp():
    ref = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), 10 x 20
    tgt = torch.tensor([[5.0, 0.0, 25.0, 40.0]])  # centre (15, 20), 20 x 40
    assert BoxCoder().encode(ref, tgt)[0].tolist() == pytest.approx(
        [1.0, 0.5, math.log(2), math.log(2)]
    )
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    assert coder.encode(ref, tgt)[0].tolist() == pytest.approx(
        [10.0, 5.0, 5 * math.log(2), 5 * math.log(2)]
    )
    g = torch.Generator().manual_seed(0)
    a = torch.rand(50, 2, generator=g) * 100
    b = torch.rand(50, 2, generator=g) * 100
    refs = torch.cat([a, a + 1 + torch.rand(50, 2, generator=g) * 50], 1)
    tgts = torch.cat([b, b + 1 + torch.rand(50, 2, generator=g) * 50], 1)
    assert torch.allclose(coder.decode(coder.encode(refs, tgts), refs), tgts, atol=1e-3)
    # K boxes per reference (class-specific deltas), and the dw/dh clamp at log(1000/16)
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 100.0, 0.0]])
    out = BoxCoder().decode(deltas, ref)
    assert out.shape == (1, 8)
    assert out[0, :4].tolist() == pytest.approx(ref[0].tolist())
    assert (out[0, 6] - out[0, 4]).item() == pytest.approx(10 * 1000 / 16, rel=1e-5)


def test_matcher_ignored_band_and_best_anchor_rule():
    # 2 ground truths x 5 anchors
    iou = torch.tensor([[0.8, 0.5, 0.2, 0.65, 0.0], [0.1, 0.6, 0.25, 0.0, 0.0]])
    strict = Matcher([0.3, 0.7], [0, -1, 1])
    matches, labels = strict(iou)
    assert labels.tolist() == [1, -1, 0, -1, 0] and labels.dtype == torch.int8
    assert matches.tolist()[:4] == [0, 1, 1, 0]
    # rule (i): anchor 1 is gt 1's best (0.6) -> positive; gt 0's best is anchor 0 already
    _, labels = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)(iou)
    assert labels.tolist() == [1, 1, 0, -1, 0]
    # ties for a ground truth's best are all positive; a zero-IoU "best" is not
    tie = torch.tensor([[0.4, 0.4, 0.1], [0.0, 0.0, 0.0]])
    _, labels = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)(tie)
    assert labels.tolist() == [1, 1, 0]
    # Fast R-CNN head: [0.1, 0.5) background, below 0.1 ignored; no ground truth: background
    _, labels = Matcher([0.1, 0.5], [-1, 0, 1])(iou)
    assert labels.tolist() == [1, 1, 0, 1, -1]
    matches, labels = Matcher([0.1, 0.5], [-1, 0, 1])(torch.zeros(0, 3))
    assert labels.tolist() == [0, 0, 0] and matches.tolist() == [0, 0, 0]


def test_balanced_sampler_proportions():
    labels = torch.cat([torch.ones(200), torch.zeros(1000), -torch.ones(50)]).to(torch.int8)
    pos, neg = BalancedSampler(256, 0.5)(labels)
    assert len(pos) == 128 and len(neg) == 128
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    assert len(set(pos.tolist())) == 128  # without replacement
    pos, neg = BalancedSampler(256, 0.5)(labels[100:])  # 100 positives: more negatives
    assert len(pos) == 100 and len(neg) == 156
    few = torch.cat([torch.ones(10), torch.zeros(1000)]).to(torch.int8)
    pos, neg = BalancedSampler(128, 0.25)(few)
    assert len(pos) == 10 and len(neg) == 118
    pos, neg = BalancedSampler(256, 0.5)(torch.tensor([1, 0, -1, 0], dtype=torch.int8))
    assert sorted(pos.tolist()) == [0] and sorted(neg.tolist()) == [1, 3]


def test_poolers_output_sizes_independent_of_roi_shape():
    feats = torch.rand(2, 8, 20, 20)
    boxes = [
        torch.tensor([[0.0, 0.0, 32.0, 32.0], [0.0, 0.0, 160.0, 48.0]]),
        torch.tensor([[16.0, 16.0, 300.0, 300.0]]),
    ]
    spp = RoIPooler("spp", strides=[16], spp_levels=[1, 2, 3, 6])
    out = spp([feats], boxes_to_rois(boxes))
    assert out.shape == (3, 8 * (1 + 4 + 9 + 36)) == (3, *spp.output_shape(8))
    # the 1x1 level of a box over the whole map is the global max of each channel
    whole = spp(
        [feats], boxes_to_rois([torch.tensor([[0.0, 0.0, 320.0, 320.0]]), torch.zeros(0, 4)])
    )
    assert torch.allclose(whole[0, :8], feats[0].amax((1, 2)))
    for kind in ("roi_pool", "roi_align"):
        pooler = RoIPooler(kind, output_size=7, strides=[16])
        assert (
            pooler([feats], boxes_to_rois(boxes)).shape
            == (3, 8, 7, 7)
            == (3, *pooler.output_shape(8))
        )


def test_pyramid_level_assignment_and_multi_level_pooling():
    pooler = RoIPooler("roi_align", 2, strides=[4, 8, 16, 32])  # P2-P5, 224 px -> P4
    sides = torch.tensor([10.0, 111.0, 112.0, 224.0, 447.0, 448.0, 1000.0])
    rois = torch.cat([torch.zeros(7, 3), sides[:, None], sides[:, None]], 1)
    assert pooler.assign_levels(rois).tolist() == [0, 0, 1, 2, 2, 3, 3]
    feats = [torch.rand(2, 3, 128 // s, 128 // s) for s in (4, 8, 16, 32)]
    boxes = [torch.tensor([[0.0, 0.0, 20.0, 20.0]]), torch.tensor([[8.0, 8.0, 120.0, 120.0]])]
    out = pooler(feats, boxes_to_rois(boxes))
    assert out.shape == (2, 3, 2, 2)
    # each RoI equals the single-level pooling from its own level (P2 and P3)
    single = RoIPooler("roi_align", 2, strides=[4])([feats[0][:1]], boxes_to_rois(boxes[:1]))
    assert torch.allclose(out[0], single[0])
    single = RoIPooler("roi_align", 2, strides=[8])([feats[1][1:]], boxes_to_rois(boxes[1:]))
    assert torch.allclose(out[1], single[0])


def test_fpn_shapes_and_top_down_pathway():
    fpn = FPN([8, 16, 32], [8, 16, 32], out_channels=4, extra_pool=True)
    feats = [torch.rand(1, 8, 16, 20), torch.rand(1, 16, 8, 10), torch.rand(1, 32, 4, 5)]
    feats[2].requires_grad_(True)
    out = fpn(feats)
    assert fpn.strides == [8, 16, 32, 64]
    assert [tuple(o.shape) for o in out] == [
        (1, 4, 16, 20),
        (1, 4, 8, 10),
        (1, 4, 4, 5),
        (1, 4, 2, 3),
    ]
    # the finest level depends on the coarsest input (the top-down pathway)
    out[0].sum().backward()
    assert feats[2].grad.abs().sum() > 0


def test_rpn_targets_on_a_tiny_image():
    # 64 x 64 image, stride 16 -> a 4 x 4 map; one 32-px square anchor per cell, centred at
    # 8, 24, 40, 56. Only the 4 central anchors lie inside the image.
    gen = AnchorGenerator([[32.0]], [1.0], [16])
    rpn = RegionProposalNetwork(
        RPNHead(4, 4, 1), gen, Matcher([0.3, 0.7], [0, -1, 1], True), BalancedSampler(256, 0.5),
        BoxCoder(), ignore_cross_boundary=True,
    )  # fmt: skip
    anchors = gen([torch.zeros(1, 4, 4, 4)])[0]
    gt = torch.tensor([[8.0, 10.0, 40.0, 40.0]])  # ~ the anchor of cell (1, 1): (8, 8, 40, 40)
    labels, matched = rpn.label_anchors(anchors, torch.tensor([[64.0, 64.0]]), [gt])
    grid = labels.view(4, 4)
    # (1,1): IoU 0.94 -> 1; (1,2) and (2,1): IoU ~1/3 -> ignored; (2,2): IoU 0.13 -> 0;
    # every border anchor crosses the image edge -> ignored.
    expected = torch.full((4, 4), -1)
    expected[1, 1], expected[2, 2] = 1, 0
    assert torch.equal(grid, expected)
    assert matched[0, 5].tolist() == gt[0].tolist()
    # without the border rule the far-away anchors become negatives
    rpn.ignore_cross_boundary = False
    labels, _ = rpn.label_anchors(anchors, torch.tensor([[64.0, 64.0]]), [gt])
    assert labels.view(4, 4)[0, 0] == 0 and labels.view(4, 4)[3, 3] == 0
    # losses and proposals on real head outputs
    feats = [torch.rand(2, 4, 4, 4)]
    sizes = torch.tensor([[64.0, 64.0], [48.0, 64.0]])  # (h, w)
    props, losses = rpn(feats, sizes, [gt, torch.zeros(0, 4)])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_box"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert len(props) == 2 and (props[1][:, 3] <= 48).all() and (props[1] >= 0).all()
    assert len(props[0]) > 0 and props[0].shape[1] == 4


def test_shorter_side_preprocessor_keeps_ratio_pads_and_scales_exactly():
    pre = Preprocessor("shorter_side", [0.5] * 3, [0.25] * 3, min_size=600, max_size=1000,
                       size_divisor=32)  # fmt: skip
    images = [torch.full((3, 375, 500), 0.5), torch.full((3, 300, 1000), 0.75)]
    batch = pre(images)
    # 375x500 -> 600x800; 300x1000 -> capped by the long side: 300x1000
    assert batch.image_sizes.tolist() == [[600.0, 800.0], [300.0, 1000.0]]
    assert batch.tensor.shape == (2, 3, 608, 1024)
    assert batch.tensor[0, :, 600:].abs().sum() == 0
    assert batch.tensor[1, :, :300, :1000].mean() == 1.0
    assert batch.scales[0].tolist() == pytest.approx([1.6, 1.6, 1.6, 1.6])
