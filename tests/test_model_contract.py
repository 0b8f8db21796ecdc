"""The contract every entry of ``MODELS`` keeps (``visionkit/models/base.py``, docs/architecture.md
"The model contract"):

- its class subclasses ``BaseModel`` (checked at registration too) and the model built is one;
- ``forward(batch, image_sizes=None, rois=None)``: the raw network on a normalized batch
  (regions as ``(R, 5)`` rois where the model classifies regions, required where they come from
  outside);
- ``loss(images, targets) -> {loss_<part>_<term>: scalar}``, a gradient on every trainable
  parameter;
- ``predict(images, **extras) -> list[dict]`` in each image's original pixels, the extras
  declared in ``model.predict_extras`` and honoured;
- ``model.task`` agrees with the registry's ``model_task``;
- the hooks the code outside ``models/`` calls work: ``export_module`` traces and gives what it
  runs eagerly; ``regions_per_image``/``summary_input``/``summary_paths`` run a summary.
"""

import inspect
import re
import warnings

import pytest
import torch
from torch import nn

from visionkit.analysis.complexity import summarize
from visionkit.config import load_config
from visionkit.models import MODELS, ModelEntry, build_model, model_task
from visionkit.models.base import (
    DETECTION_OUTPUTS,
    INSTANCE_OUTPUTS,
    SEGMENTATION_OUTPUTS,
    BaseModel,
)
from visionkit.models.proposers import GivenProposals
from visionkit.structures.masks import InstanceMasks

C = 3
TWO_STAGE = [
    f"model.num_classes={C}", "model.backbone.name=lenet", "model.resize.min_size=64",
    "model.resize.max_size=96", "model.roi_head.fc_dim=32", "model.roi_head.dropout=0.0",
    "model.roi_head.batch_size_per_image=32", "model.roi_head.score_thresh=0.0",
    "model.roi_head.pool_size=2", "model.roi_head.spp_levels=[1,2]",
    "model.selective_search.mode=single",
]  # fmt: skip
TINY = {
    "yolo_v1": [
        f"model.num_classes={C}", "model.input_size=[64,64]", "model.backbone.name=lenet",
        "model.backbone.out_features=[]", "model.yolo.grid_size=2", "model.yolo.extra_convs=1",
        "model.yolo.head_channels=8", "model.yolo.hidden_dim=16", "model.yolo.score_thresh=0.0",
    ],
    "faster_rcnn": [
        *TWO_STAGE, "model.anchors.sizes=[[16.0,32.0]]", "model.rpn.conv_channels=16",
        "model.rpn.pre_nms_top_n_test=100", "model.rpn.post_nms_top_n_test=20",
    ],
    "mask_rcnn": [
        *TWO_STAGE, "model.anchors.sizes=[[16.0,32.0]]", "model.rpn.conv_channels=16",
        "model.rpn.pre_nms_top_n_test=100", "model.rpn.post_nms_top_n_test=20",
        "model.mask_head.pool_size=4", "model.mask_head.num_convs=2",
        "model.mask_head.conv_channels=8",
    ],
    "fast_rcnn": [*TWO_STAGE, "model.roi_head.pooler=roi_pool"],
    "sppnet": [*TWO_STAGE, "model.roi_head.pooler=spp"],
    "rcnn": [
        f"model.num_classes={C}", "model.input_size=[]", "model.backbone.name=lenet",
        "model.rcnn.warp_size=32", "model.rcnn.context_pad=8", "model.rcnn.pool_size=2",
        "model.rcnn.fc_dim=32", "model.rcnn.dropout=0.0", "model.rcnn.fg_per_batch=8",
        "model.rcnn.bg_per_batch=24", "model.rcnn.chunk_size=16",
        "model.roi_head.score_thresh=0.0", "model.selective_search.mode=single",
    ],
    "fcn": [
        f"model.num_classes={C}", "model.input_size=[]", "model.backbone.name=lenet",
        "model.backbone.out_features=[]", "model.fcn.head=conv", "model.fcn.head_channels=8",
    ],
}  # fmt: skip
# two images of different sizes and aspect ratios: the first larger than every model's input
# (YOLO 64 x 64, two-stage 64 x 96), the second smaller, so that boxes left in input pixels
# would overshoot the first image's input frame too little and the second image's frame
SIZES = [(80, 120), (40, 30)]
PROPOSALS = [
    torch.tensor([[10.0, 8.0, 70.0, 60.0], [0.0, 0.0, 120.0, 80.0], [60.0, 30.0, 118.0, 78.0]]),
    torch.tensor([[2.0, 3.0, 25.0, 30.0], [0.0, 0.0, 30.0, 40.0]]),
]


# regions for forward(batch, rois=): (R, 5) image index + xyxy in input pixels
RoIs = torch.tensor([[0.0, 4.0, 4.0, 40.0, 30.0], [1.0, 10.0, 20.0, 50.0, 60.0]])


def test_every_registered_model_is_covered():
    assert set(TINY) == set(MODELS)


def test_every_registered_class_is_a_base_model_and_registration_checks_it():
    for entry in MODELS.values():
        assert issubclass(entry.cls, BaseModel) and not inspect.isabstract(entry.cls)

    class NotAModel(nn.Module):
        task = "detection"

    class Unfinished(BaseModel):  # no forward, loss, predict, export_module
        task = "detection"

    for cls in (NotAModel, Unfinished):
        with pytest.raises(TypeError):
            ModelEntry(cls, lambda cfg: None, lambda cfg: [])


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(load_config(None, [f"model.name={name}", *TINY[name]]).model)
    with torch.no_grad():  # away from zero-initialized layers, so every output means something
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, h, w, generator=g) for h, w in SIZES]


def targets(model) -> list[dict]:
    if model.task == "sem_seg":
        g = torch.Generator().manual_seed(2)
        return [{"sem_seg": torch.randint(0, C, size, generator=g)} for size in SIZES]
    out = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0], [62.0, 30.0, 115.0, 75.0]]),
         "labels": torch.tensor([0, 2])},
        {"boxes": torch.tensor([[4.0, 6.0, 25.0, 35.0]]), "labels": torch.tensor([1])},
    ]  # fmt: skip
    if "proposals" in model.predict_extras:
        for t, p in zip(out, PROPOSALS, strict=True):
            t["proposals"] = p
    if model.task == "instance":  # a diamond in each box: polygons of the boxes' objects
        for t, (h, w) in zip(out, SIZES, strict=True):
            polys = [[[((x1 + x2) / 2, y1), (x2, (y1 + y2) / 2), ((x1 + x2) / 2, y2),
                       (x1, (y1 + y2) / 2)]] for x1, y1, x2, y2 in t["boxes"].tolist()]  # fmt: skip
            t["masks"] = InstanceMasks.from_polygons(polys, h, w)
    return out


@pytest.mark.parametrize("name", sorted(TINY))
def test_task_and_declared_extras(name):
    model = build(name)
    assert isinstance(model, MODELS[name].cls) and isinstance(model, BaseModel)
    assert model.task == model_task(name)
    params = set(inspect.signature(model.predict).parameters) - {"images"}
    assert set(model.predict_extras) <= params
    # beside the extras: Faster R-CNN's proposals (of the two-stage class it shares with Fast
    # R-CNN), refused (see the last test), and FCN's return_logits option
    others = {"faster_rcnn": {"proposals"}, "fcn": {"return_logits"}}.get(name, set())
    assert params - set(model.predict_extras) == others


@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_gives_the_raw_outputs(name):
    model = build(name).eval()
    batch = model.preprocess(images())
    n, _, h, w = batch.tensor.shape
    with torch.no_grad():
        if name == "yolo_v1":
            s, b = model.S, model.B
            assert model(batch.tensor).shape == (n, s, s, b * 5 + C)
        elif name == "fcn":
            assert model(batch.tensor).shape == (n, C, h, w)
        else:
            rois = RoIs
            out = model(batch.tensor, batch.image_sizes, rois)
            assert torch.equal(out["rois"], rois)
            assert out["class_logits"].shape == (2, C + 1)
            assert out["box_deltas"].shape == (2, 4 * C)
            if name == "rcnn":
                assert out["svm_scores"].shape == (2, C)
            if name in ("faster_rcnn", "mask_rcnn"):  # proposes its own regions from the batch
                own = model(batch.tensor)
                r = len(own["rois"])
                assert own["rois"].shape == (r, 5) and own["class_logits"].shape == (r, C + 1)
                assert set(own["rois"][:, 0].long().tolist()) <= {0, 1}
            else:  # regions from outside: required
                with pytest.raises(ValueError, match="given regions: pass rois"):
                    model(batch.tensor, batch.image_sizes)


@pytest.mark.parametrize("name", sorted(TINY))
def test_loss_keys_finite_and_a_gradient_on_every_trainable_parameter(name):
    model = build(name).train()
    losses = model.loss(images(), targets(model))
    assert losses and all(re.fullmatch(r"loss_[a-z0-9]+_[a-z0-9]+", k) for k in losses)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, pname
            assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", sorted(TINY))
def test_predict_in_original_pixels(name):
    model = build(name).eval()
    extras = {"proposals": PROPOSALS} if "proposals" in model.predict_extras else {}
    first = torch.tensor([[float(SIZES[0][0]), float(SIZES[0][1])]])
    input_w = model.preprocess.resized_sizes(first)[0].tolist()
    outs = model.predict(images(), **extras)
    assert len(outs) == len(SIZES)
    for out, (h, w) in zip(outs, SIZES, strict=True):
        if model.task == "sem_seg":
            assert out["sem_seg"].shape == (h, w) and out["sem_seg"].dtype == torch.int64
            assert out["sem_seg"].min() >= 0 and out["sem_seg"].max() < C
            continue
        boxes = out["boxes"]
        assert boxes.dtype == torch.float32 and boxes.shape[1] == 4 and len(boxes) > 0
        assert out["scores"].shape == out["labels"].shape == (len(boxes),)
        assert out["labels"].dtype == torch.int64 and out["labels"].max() < C
        assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= w).all()
        assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= h).all()
        assert (out["scores"][:-1] >= out["scores"][1:]).all()
        if model.task == "instance":  # pasted into the original image
            masks = out["masks"]
            assert masks.shape == (len(boxes), h, w) and masks.dtype == torch.bool
    if model.task in ("detection", "instance") and name != "rcnn":  # (R-CNN never resizes)
        # boxes reach beyond the first image's input frame: they are in its original pixels
        assert outs[0]["boxes"][:, 2].max() > input_w[1]


@pytest.mark.parametrize("name", [n for n in sorted(TINY) if n in ("fast_rcnn", "sppnet", "rcnn")])
def test_given_proposals_are_used_and_searched_only_when_absent(name, monkeypatch):
    model = build(name).eval()
    calls = []

    def search(self, image):
        calls.append(tuple(image.shape))
        return torch.tensor([[0.0, 0.0, 40.0, 40.0]])

    monkeypatch.setattr(GivenProposals, "search", search)
    empty = [PROPOSALS[0], torch.zeros(0, 4)]
    outs = model.predict(images(), proposals=empty)
    assert calls == [] and len(outs[0]["boxes"]) > 0 and len(outs[1]["boxes"]) == 0
    model.predict(images())
    assert calls == [(3, h, w) for h, w in SIZES]


def test_fcn_return_logits_extra():
    model = build("fcn").eval()
    plain, with_logits = model.predict(images()), model.predict(images(), return_logits=True)
    for p, q, (h, w) in zip(plain, with_logits, SIZES, strict=True):
        assert set(p) == {"sem_seg"} and q["logits"].shape == (C, h, w)
        assert torch.equal(q["logits"].argmax(0), p["sem_seg"])


def test_a_model_that_proposes_refuses_given_proposals():
    with pytest.raises(ValueError, match="proposes its own regions"):
        build("faster_rcnn").eval().predict(images(), proposals=PROPOSALS)


def export_inputs(model, inputs) -> tuple[torch.Tensor, ...]:
    """The export body's inputs: the normalized batch, its int64 sizes, rois of PROPOSALS."""
    batch = model.preprocess(images())
    rois = torch.cat(
        [torch.cat([torch.full((len(p), 1), float(i)), p], 1) for i, p in
         enumerate(batch.clip_to_input(PROPOSALS))]
    )  # fmt: skip
    return (batch.tensor, batch.image_sizes.long(), rois)[: len(inputs)]


@pytest.mark.parametrize("name", sorted(TINY))
def test_export_module_traces_and_matches_its_eager_run(name):
    model = build(name).eval()
    body = model.export_module().eval()
    outputs = {"detection": DETECTION_OUTPUTS, "sem_seg": SEGMENTATION_OUTPUTS,
               "instance": INSTANCE_OUTPUTS}[model.task]  # fmt: skip
    assert body.inputs[0] == "images" and tuple(body.outputs) == outputs
    assert set(body.inputs[1:]) <= {"image_sizes", *model.predict_extras}
    example = export_inputs(model, body.inputs)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the constants it records
        traced = torch.jit.trace(body, example, check_trace=False)
        eager, got = body(*example), traced(*example)
    assert len(eager) == len(outputs) and len(eager[0]) > 0
    for e, g in zip(eager, got, strict=True):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("name", sorted(TINY))
def test_summary_hooks_run_and_count_every_parameter(name):
    model = build(name).eval()
    rois = model.regions_per_image()
    assert (rois is None) == (name in ("yolo_v1", "fcn"))  # dense models: no per-region layers
    stats = summarize(model, SIZES[0], num_rois=5)
    assert stats.params == sum(p.numel() for p in model.parameters()) and stats.macs > 0
    assert stats.idle_params == 0  # the summary runs every layer with parameters
    assert stats.rois == (None if rois is None else 5)
