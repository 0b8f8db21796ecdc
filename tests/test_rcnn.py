"""R-CNN: the warp with context padding, fine-tuning losses and gradients, images without
objects, the SVM solver and hard negative mining, the feature cache, predictions in original
pixels with and without SVMs, and tools/train_rcnn_svms.py end to end on tiny shapes data."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from detection_helpers import targets_with_proposals
from script_loader import load_script
from test_tools_e2e import run_tool

from visionkit.checkpoints import load_checkpoint
from visionkit.config import ModelConfig, load_config
from visionkit.config.schema import SVMConfig
from visionkit.engine import rcnn_svm
from visionkit.errors import DataError
from visionkit.models import MODELS, build_model
from visionkit.models.heads.svm import hard_negatives, solve_linear_svms, train_linear_svms
from visionkit.utils.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
RED, BLUE = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])


def tiny_cfg() -> ModelConfig:
    cfg = ModelConfig(name="rcnn", num_classes=3, input_size=[])
    cfg.backbone.name = "lenet"  # c3: 120 channels, stride 8
    r = cfg.rcnn
    r.warp_size, r.context_pad, r.pool_size, r.fc_dim, r.dropout = 32, 8, 2, 32, 0.0
    r.fg_per_batch, r.bg_per_batch, r.chunk_size = 8, 24, 16
    cfg.roi_head.score_thresh = 0.0
    cfg.selective_search.mode = "single"
    return cfg


def check_losses_and_gradients(model, images, tgts):
    losses = model.loss(images, tgts)
    assert set(losses) == {"loss_rcnn_cls", "loss_rcnn_box"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    model.zero_grad()
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    return losses, grads


def test_warp_crops_the_box_with_context_padding():
    model = build_model(tiny_cfg())
    image = BLUE[:, None, None].expand(3, 64, 64).clone()
    image[:, 20:44, 16:40] = RED[:, None, None]  # the square: x 16..40, y 20..44
    batch = image[None]  # the warp takes normalized images; mean 0, std 1 here
    crop = model.warp(batch, torch.tensor([0]), torch.tensor([[16.0, 20.0, 40.0, 44.0]]))[0]
    assert crop.shape == (3, 32, 32)
    # 32 px warp, 8 px context: the box fills the centre 16 x 16, its surroundings the border
    assert torch.allclose(crop[:, 9:23, 9:23], RED[:, None, None].expand(3, 14, 14), atol=1e-5)
    for border in (crop[:, :7], crop[:, 25:], crop[:, :, :7], crop[:, :, 25:]):
        assert torch.allclose(border, BLUE[:, None, None].expand_as(border), atol=1e-5)
    # context beyond the image is the mean colour (0 after normalization)
    corner = model.warp(batch, torch.tensor([0]), torch.tensor([[0.0, 0.0, 16.0, 16.0]]))[0]
    assert corner[:, :3, :3].abs().max() == 0 and torch.allclose(corner[:, 16, 16], BLUE)


def test_loss_keys_gradients_sampling_and_empty_images():
    assert "rcnn" in MODELS
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    images = [torch.rand(3, 80, 120), torch.rand(3, 96, 96)]
    tgts = targets_with_proposals(
        ([[10, 10, 60, 50], [70, 20, 110, 70]], [[12, 8, 58, 52], [0, 0, 120, 80], [60, 20, 100, 60]]),
        ([[5, 5, 90, 90]], [[0, 0, 40, 40], [4, 6, 88, 92]] + [[i, i, i + 20, i + 20] for i in range(60)]),
    )  # fmt: skip
    seen = {}
    embed = model.embed
    model.embed = lambda crops: (seen.setdefault("n", len(crops)), embed(crops))[1]
    losses, grads = check_losses_and_gradients(model, images, tgts)
    assert seen["n"] == 32  # 8 + 24 windows over the batch (6 positives: 4 gt + 2 proposals)
    assert losses["loss_rcnn_box"] > 0 and any(g.abs().sum() > 0 for g in grads)
    assert model.backbone.stages["c1"][0].weight.grad.abs().sum() > 0  # the CNN is fine-tuned
    # no objects in one image; none anywhere; nothing at all
    check_losses_and_gradients(
        model, images, targets_with_proposals(([[8, 8, 40, 48]], []), ([], [[1, 1, 9, 9]]))
    )
    losses, _ = check_losses_and_gradients(
        model, images, targets_with_proposals(([], [[0, 0, 30, 30]]), ([], []))
    )
    assert losses["loss_rcnn_box"] == 0 and losses["loss_rcnn_cls"] > 0
    losses, _ = check_losses_and_gradients(
        model, images, targets_with_proposals(([], []), ([], []))
    )
    assert float(sum(losses.values()).detach()) == 0
    with pytest.raises(DataError, match="data.train.proposals.method"):
        model.loss(images[:1], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0).long()}])


def test_svm_solver_separates_a_separable_set():
    torch.manual_seed(0)
    shift = torch.tensor([3.0, 0, 0, 0, 0])
    x = torch.cat([torch.randn(20, 5) + shift, torch.randn(200, 5) - shift])
    y = torch.cat([torch.ones(20), -torch.ones(200)])[:, None]
    w, b = solve_linear_svms(x, y, C=1.0, pos_weight=2.0)
    s = (x @ w.T + b).squeeze(1)
    assert (s[:20] > 0.99).all() and (s[20:] < -0.99).all()
    # with hard negative mining, 50 negatives per round, and two classes at once
    labels = torch.cat([torch.zeros(20, dtype=torch.int64), torch.full((200,), -1)])
    max_iou = torch.zeros(220, 2)
    max_iou[20:40, 0] = 0.4  # near class-0 boxes: not negatives of class 0
    w, b, stats = train_linear_svms(x, labels, max_iou, C=1.0, rounds=3, max_negatives=50)
    s = x @ w.T + b
    assert (s[:20, 0] > 0).all() and (s[40:, 0] < 0).all()
    assert stats["positives"] == [20, 0] and stats["negatives"] == [180, 200]
    assert stats["hard"][0] <= 50 and stats["violators"][0] <= 2


def test_hard_negative_mining_keeps_only_violators():
    scores = torch.tensor([[0.5, 0.0], [-0.9, 0.0], [-1.1, 0.0], [-1.5, 0.0], [2.0, 0.0]])
    pool = torch.tensor([[True, True]] * 4 + [[False, True]])
    fresh = hard_negatives(scores, pool, torch.zeros_like(pool))
    assert fresh[:, 0].tolist() == [True, True, False, False, False]  # above the margin only
    kept = hard_negatives(scores, pool, torch.ones_like(pool))  # -1.1 kept, -1.5 evicted
    assert kept[:, 0].tolist() == [True, True, True, False, False]
    capped = hard_negatives(scores, pool, torch.zeros_like(pool), max_negatives=1)
    assert capped[:, 0].tolist() == [True, False, False, False, False]
    assert capped[:, 1].sum() == 1


class TinySet:
    """Two images with boxes and proposals, the dataset interface the feature cache reads."""

    def __init__(self, root: Path):
        torch.manual_seed(0)
        self.ids = [1, 2]
        self.proposals = {1: torch.zeros(2, 4).numpy(), 2: torch.zeros(1, 4).numpy()}
        self.samples = [
            (torch.rand(3, 48, 64), targets_with_proposals(([[4, 4, 30, 30], [30, 10, 60, 40]], [[5, 5, 30, 28], [40, 30, 60, 46], [0, 0, 64, 48]]))[0]),
            (torch.rand(3, 40, 40), targets_with_proposals(([], [[2, 2, 20, 20]]))[0]),
        ]  # fmt: skip
        self.root = root

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]

    def image_path(self, i):
        return self.root / f"{i}.jpg"


def test_feature_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    model = build_model(tiny_cfg())
    cfg = SVMConfig(cache_dir=str(tmp_path / "cache"), max_proposals=2)
    data = TinySet(tmp_path)
    feats, path, reused = rcnn_svm.cached_features(model, data, cfg, progress=False)
    assert not reused and path.is_file() and path.parent == tmp_path / "cache"
    assert feats["features"].shape == (5, 32) and feats["features"].dtype == torch.float16
    assert feats["labels"].tolist() == [0, 1, -1, -1, -1]  # gt, then 2 proposals
    assert feats["image_index"].tolist() == [0, 0, 0, 0, 1]
    assert feats["max_iou"][2, 0] > 0.7 and feats["max_iou"][3, 1] > 0  # proposal vs its class
    assert (feats["max_iou"][:2] == 1).all() and (feats["max_iou"][4:] == 0).all()
    mtime = path.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("features recomputed")

    monkeypatch.setattr(rcnn_svm, "extract_features", fail)
    again, path2, reused = rcnn_svm.cached_features(model, data, cfg, progress=False)
    assert reused and path2 == path and path.stat().st_mtime_ns == mtime
    assert torch.equal(again["features"], feats["features"])
    model.set_svms(torch.ones(3, 32), torch.zeros(3))  # the SVMs are not part of the key
    assert rcnn_svm.cached_features(model, data, cfg, progress=False)[2]
    with torch.no_grad():
        model.cls_score.bias.add_(1.0)  # other weights: another checkpoint, another file
    assert rcnn_svm.features_cache_path(model, data, 2, cfg.cache_dir) != path


def test_predict_in_original_pixels_with_and_without_svms():
    torch.manual_seed(0)
    model = build_model(tiny_cfg()).eval()
    images = [torch.rand(3, 80, 120), torch.rand(3, 200, 100)]
    props = [
        torch.tensor([[10.0, 10.0, 60.0, 50.0], [0, 0, 130, 90], [5, 5, 5, 30]]),
        torch.zeros(0, 4),
    ]
    soft = model.predict(images, proposals=props)
    assert not model.has_svms
    assert len(soft[0]["boxes"]) > 0 and soft[1]["boxes"].shape == (0, 4)
    assert ((soft[0]["scores"] >= 0) & (soft[0]["scores"] <= 1)).all()
    assert soft[0]["boxes"].dtype == torch.float32 and soft[0]["labels"].dtype == torch.int64
    assert (soft[0]["boxes"][:, 2] <= 120).all() and (soft[0]["boxes"][:, 3] <= 80).all()
    with torch.no_grad():
        model.bbox_pred.weight.zero_()
        model.bbox_pred.bias.zero_()
    weight = torch.zeros(3, 32)
    model.set_svms(weight, torch.tensor([5.0, -5.0, 0.5]))
    (out,) = model.predict(images[:1], proposals=props[:1])
    assert model.has_svms and set(out["labels"].tolist()) == {0, 2}  # class 1 under -1
    assert out["scores"].tolist() == [5.0, 5.0, 0.5, 0.5]  # SVM margins, NMS per class
    boxes = {tuple(b) for b in out["boxes"].tolist()}  # in the image's pixels, clipped
    assert boxes == {(10.0, 10.0, 60.0, 50.0), (0.0, 0.0, 120.0, 80.0)}
    state = model.state_dict()
    assert state["svm_trained"] and torch.equal(state["svm_bias"], torch.tensor([5.0, -5.0, 0.5]))


def test_predict_without_proposals_runs_selective_search():
    model = build_model(tiny_cfg()).eval()
    image = torch.full((3, 64, 80), 0.5)
    image[:, 10:40, 20:60] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    assert [20.0, 10.0, 60.0, 40.0] in model.proposer.search(image).tolist()
    (out,) = model.predict([image])
    assert len(out["boxes"]) > 0 and (out["boxes"][:, 2] <= 80).all()


def test_configs_load_and_build():
    voc = load_config(ROOT / "visionkit" / "configs" / "rcnn_alexnet_voc.yaml")
    assert voc.model.backbone.name == "alexnet" and voc.model.backbone.pretrained is True
    assert voc.train.optimizer == "sgd" and voc.train.lr == 0.001
    assert (voc.model.rcnn.warp_size, voc.model.rcnn.context_pad) == (227, 16)
    cfg = load_config(ROOT / "visionkit" / "configs" / "rcnn_shapes.yaml")
    model = build_model(cfg.model)
    boxes = [[20, 30, 60, 80], [100, 100, 230, 200]]
    props = [[18, 28, 62, 84], [0, 0, 256, 256], [90, 110, 220, 190]]
    check_losses_and_gradients(
        model, [torch.rand(3, 256, 256)] * 2, targets_with_proposals((boxes, props)) * 2
    )


@pytest.mark.slow
def test_feature_budget_and_unreadable_images(tmp_path, monkeypatch, capsys):
    model = build_model(tiny_cfg())
    data = TinySet(tmp_path)
    # its COCO index also holds an image outside the dataset, which is not counted
    data.coco = SimpleNamespace(imgToAnns={1: [{}, {}], 3: [{}] * 4})
    # (3 proposal + 2 ground-truth rows) x (2 x (32 + 3) + 8) = 390 bytes: stop when half the
    # free memory is less
    monkeypatch.setattr(rcnn_svm, "available_memory", lambda: 2 * 389)
    with pytest.raises(DataError, match=r"5 regions x 32 fc7 values.*max_proposals \(now all\)"):
        rcnn_svm.extract_features(model, data, 0, progress=False)
    monkeypatch.setattr(rcnn_svm, "available_memory", lambda: 2 * 390)
    assert len(rcnn_svm.extract_features(model, data, 0, progress=False)["labels"]) == 6
    # two unreadable images in a row (an evaluation-mode dataset): each hands the first image
    # back as its stand-in, and the second file is passed over twice but reported once
    image, target = data.samples[0]
    data.samples[1:] = [
        (image, {**target, "skipped": [("1.jpg", "cannot read 1.jpg"), ("2.jpg", "cannot read 2.jpg")], "stand_in": True}),
        (image, {**target, "skipped": [("2.jpg", "cannot read 2.jpg")], "stand_in": True}),
    ]  # fmt: skip
    feats = rcnn_svm.extract_features(model, data, 0, progress=False)
    assert feats["image_index"].tolist() == [0] * 5  # no stand-in is counted
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert warnings == [
        "warning: skipped (1 so far): cannot read 1.jpg",
        "warning: skipped (2 so far): cannot read 2.jpg",
    ]


def test_train_rcnn_svms_end_to_end(tmp_path, capsys):
    cache = tmp_path / "cache"
    common = [
        f"data.train.root={cache}", f"data.val.root={cache}",
        "data.train.num_images=6", "data.val.num_images=3",
        "data.train.image_size=96", "data.val.image_size=96",
        f"data.train.proposals.cache_dir={cache}", f"data.val.proposals.cache_dir={cache}",
        "data.train.proposals.mode=single", "data.val.proposals.mode=single",
        "data.train.proposals.max_proposals=40", "data.val.proposals.max_proposals=40",
        "data.train.proposals.workers=1", "data.val.proposals.workers=1",
        "data.num_workers=0", "eval.batch_size=3", "model.backbone.name=lenet",
        "model.backbone.out_features=[]", "model.rcnn.warp_size=32", "model.rcnn.context_pad=4",
        "model.rcnn.fc_dim=32", f"model.rcnn.svm.cache_dir={tmp_path / 'features'}",
        "model.rcnn.svm.max_proposals=20", "train.epochs=1",
    ]  # fmt: skip
    cfg = str(ROOT / "visionkit" / "configs" / "rcnn_shapes.yaml")
    out = tmp_path / "run"
    run_tool("train.py", "--config", cfg, "--output-dir", str(out), "--no-progress", *common)
    weights = out / "last.pth"
    args = ["--config", cfg, "--weights", str(weights), "--no-progress", *common]
    first = run_tool("train_rcnn_svms.py", *args)
    assert "wrote" in first.stdout and "positives" in first.stdout
    ckpt = load_checkpoint(out / "last_svm.pth")
    assert ckpt["model"]["svm_trained"] and ckpt["model_name"] == "rcnn"
    assert sum(ckpt["svm"]["positives"]) > 0
    assert len(list((tmp_path / "features").glob("rcnn-fc7-*.pt"))) == 1
    second = run_tool("train_rcnn_svms.py", *args, "--out", str(tmp_path / "svm2.pth"))
    assert "read " in second.stdout and (tmp_path / "svm2.pth").is_file()
    assert len(list((tmp_path / "features").glob("rcnn-fc7-*.pt"))) == 1
    evaluated = run_tool("eval.py", "--config", cfg, "--weights", str(out / "last_svm.pth"),
                         "--no-progress", *common)  # fmt: skip
    assert "AP50" in evaluated.stdout
    tool = load_script("tools/train_rcnn_svms.py")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tool.main, ["--config", cfg, "--weights", str(tmp_path / "no.pth")])
    assert exit_info.value.code == 2  # a checkpoint of another model: bad input
    assert capsys.readouterr().err.strip() == f"error: checkpoint not found: {tmp_path / 'no.pth'}"
    assert "examples:" in tool.EXAMPLES
