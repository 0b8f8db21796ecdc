"""What users get from instance masks: ``Result.masks`` selected with the boxes, as COCO RLE
(``to_coco``, ``to_dict``, ``to_json``), YOLO polygons (``save_txt``), summaries and tables;
filled, outlined masks in class colours (``draw_instance_masks``, ``Result.plot``); masks carried
through the score threshold; ``visionkit predict``'s predictions.json; a video stream that keeps no
frame's masks; and Mask R-CNN exported to ONNX giving the checkpoint's masks (pasted after the
graph). The model tests use a tiny randomly initialized mask_rcnn (skipped until it is
registered)."""

import gc
import json
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pycocotools import mask as mask_utils
from test_results import is_plain

from visionkit.config import load_config
from visionkit.errors import ConfigError
from visionkit.evaluation.coco_eval import to_coco_results
from visionkit.inference.api import VisionModel
from visionkit.inference.backend import PredictorBackend
from visionkit.inference.results import Result
from visionkit.inference.runner import run_inference
from visionkit.inference.sources import resolve_sources
from visionkit.inference.writers import mask_polygon
from visionkit.models import MODELS, build_model
from visionkit.structures.masks import encode_rles
from visionkit.utils.draw import class_colors, draw_instance_masks, draw_prediction

NAMES, CAT_IDS = ["square", "circle", "N/A"], [3, 7, 9]
RED, GREEN = (255, 0, 0), (0, 255, 0)


def rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def mask_result() -> Result:
    """A 40 x 60 image with three detections: two rectangles and an empty mask."""
    masks = np.stack(
        [rect(40, 60, 5, 15, 10, 30), rect(40, 60, 20, 38, 40, 58), rect(40, 60, 0, 0, 0, 0)]
    )
    boxes = np.array([[10, 5, 30, 15], [40, 20, 58, 38], [1, 2, 6, 9]], np.float32)
    return Result(
        np.zeros((40, 60, 3), np.uint8), "photos/a.jpg", None, boxes,
        np.array([0.9, 0.6, 0.3], np.float32), np.array([1, 0, 1], np.int64), NAMES, CAT_IDS,
        masks=masks,
    )  # fmt: skip


def decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


# -- Result -------------------------------------------------------------------------------------


def test_selection_carries_the_masks_with_the_boxes():
    r = mask_result()
    for key in (r.scores > 0.5, [1, 0], slice(0, 2), torch.tensor([True, True, False])):
        sel = r[key]
        expected = r.masks[[0, 1]] if not isinstance(key, list) else r.masks[[1, 0]]
        assert sel.masks.shape == (2, 40, 60) and sel.masks.dtype == bool
        np.testing.assert_array_equal(sel.masks, expected)
        assert not np.shares_memory(sel.masks, r.masks)  # its own copy, as the boxes
    assert r[0].masks.shape == (1, 40, 60) and r[[]].masks.shape == (0, 40, 60)
    assert [len(d.masks) for d in r] == [1, 1, 1]
    plain = Result(r.image, "x", None, r.boxes, r.scores, r.labels, NAMES, CAT_IDS)
    assert "with masks" in repr(r) and "with masks" not in repr(plain) and plain[:1].masks is None
    np.testing.assert_array_equal(r.mask_areas(), [200, 324, 0])
    with pytest.raises(ConfigError, match="^this result has no masks"):
        plain.mask_areas()


def test_to_coco_gives_rle_that_decodes_to_the_masks():
    r = mask_result()
    coco = r.to_coco(image_id=5)
    assert [c["category_id"] for c in coco] == [7, 3, 7] and coco[0]["image_id"] == 5
    for c, mask in zip(coco, r.masks, strict=True):
        assert set(c["segmentation"]) == {"size", "counts"}
        assert c["segmentation"]["size"] == [40, 60] and isinstance(
            c["segmentation"]["counts"], str
        )
        np.testing.assert_array_equal(decode(c["segmentation"]), mask)
    assert json.loads(json.dumps(coco)) == coco
    # COCO.loadRes takes them (and computes the mask areas from the RLE)
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = {
        "images": [{"id": 5, "width": 60, "height": 40}],
        "categories": [{"id": c, "name": n} for c, n in zip(CAT_IDS, NAMES, strict=True)],
        "annotations": [],
    }
    gt.createIndex()
    dt = gt.loadRes(coco)
    for i, mask in zip(sorted(dt.anns), r.masks, strict=True):
        np.testing.assert_array_equal(dt.annToMask(dt.anns[i]).astype(bool), mask)
    # no masks: box results as before
    plain = Result(r.image, "x", None, r.boxes, r.scores, r.labels, NAMES, CAT_IDS)
    assert all("segmentation" not in c for c in plain.to_coco())


def test_to_coco_results_leaves_out_non_finite_detections_with_their_masks():
    masks = torch.from_numpy(np.stack([rect(8, 8, 0, 2, 0, 2), rect(8, 8, 4, 8, 4, 8)]))
    prediction = {
        "boxes": torch.tensor([[0.0, 0.0, float("nan"), 2.0], [4.0, 4.0, 8.0, 8.0]]),
        "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 1]), "masks": masks,
    }  # fmt: skip
    (only,) = to_coco_results(1, prediction, [1, 2])
    assert only["category_id"] == 2
    np.testing.assert_array_equal(decode(only["segmentation"]), masks[1].numpy())
    assert encode_rles(torch.zeros(0, 8, 8, dtype=torch.bool)) == []


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(bool, st.tuples(st.integers(0, 3), st.integers(1, 12), st.integers(1, 12))))
def test_rle_round_trips_any_masks(masks):
    rles = encode_rles(masks)
    assert len(rles) == len(masks) and is_plain(rles)
    for rle, mask in zip(rles, masks, strict=True):
        np.testing.assert_array_equal(decode(rle), mask)


def test_to_dict_json_df_and_summary_give_the_masks():
    r = mask_result()
    d = r.to_dict()
    assert is_plain(d) and json.loads(r.to_json()) == d
    dets = d["detections"]
    assert [x["area"] for x in dets] == [200, 324, 0]
    for x, mask in zip(dets, r.masks, strict=True):
        np.testing.assert_array_equal(decode(x["segmentation"]), mask)
    assert r.summary().splitlines() == [
        "photos/a.jpg: 60x40, 3 detections: 1 square, 2 circle",
        "circle 0.90 [10.0, 5.0, 30.0, 15.0] mask 200 px",
        "square 0.60 [40.0, 20.0, 58.0, 38.0] mask 324 px",
        "circle 0.30 [1.0, 2.0, 6.0, 9.0] mask 0 px",
    ]
    pd = pytest.importorskip("pandas", reason="pandas is not installed (not a dependency)")
    df = r.to_df()
    assert isinstance(df, pd.DataFrame) and df["area"].tolist() == [200, 324, 0]


def test_save_txt_writes_yolo_segmentation_polygons(tmp_path):
    r = mask_result()
    lines = [ln.split() for ln in r.save_txt(tmp_path / "a.txt").read_text().splitlines()]
    assert [ln[0] for ln in lines] == ["1", "0", "1"]
    # the first mask: pixels x 10..29, y 5..14 -> its outline's corners over (W, H) = (60, 40)
    xy = np.array(lines[0][1:], float).reshape(-1, 2) * (60, 40)
    assert {tuple(p) for p in np.round(xy).astype(int).tolist()} == {
        (10, 5),
        (10, 14),
        (29, 14),
        (29, 5),
    }
    # an empty mask: its (clipped) box's corners
    xy = np.array(lines[2][1:], float).reshape(-1, 2) * (60, 40)
    np.testing.assert_allclose(xy, [[1, 2], [6, 2], [6, 9], [1, 9]], atol=1e-4)
    conf = r.save_txt(tmp_path / "c.txt", conf=True).read_text().splitlines()
    assert [ln.split()[-1] for ln in conf] == ["0.900000", "0.600000", "0.300000"]
    assert all(len(ln) >= 7 and len(ln) % 2 == 1 for ln in lines)  # what the YOLO reader takes


def test_mask_polygon_takes_the_largest_region_and_pads_thin_ones():
    mask = rect(20, 20, 1, 3, 1, 3) | rect(20, 20, 8, 18, 5, 15)
    poly = mask_polygon(mask, [0, 0, 20, 20])
    assert poly.min(0).tolist() == [5, 8] and poly.max(0).tolist() == [14, 17]
    one = mask_polygon(rect(20, 20, 4, 5, 7, 8), [0, 0, 1, 1])  # a single pixel
    assert len(one) == 4 and one.min(0).tolist() == [7, 4] and one.max(0).tolist() == [8, 5]


# -- drawing ------------------------------------------------------------------------------------


def has(image: np.ndarray, color) -> np.ndarray:
    return (image == np.array(color, np.uint8)).all(-1)


def test_draw_instance_masks_fills_in_class_colour_and_outlines():
    image = np.full((30, 40, 3), 100, np.uint8)
    colors = np.array([RED, GREEN], np.uint8)
    a, b = rect(30, 40, 5, 15, 5, 20), rect(30, 40, 10, 25, 15, 35)  # overlapping
    out = draw_instance_masks(image, np.stack([a, b]), [0, 1], colors)
    assert (image == 100).all() and out is not image
    blend_red = np.array([177, 50, 50], np.uint8)  # 0.5 * 100 + 0.5 * colour, rounded
    blend_green = np.array([50, 177, 50], np.uint8)
    inside_a = rect(30, 40, 6, 9, 6, 19)  # inside a, away from b and from its outline
    inside_b = rect(30, 40, 16, 24, 16, 34)
    assert (np.abs(out[inside_a].astype(int) - blend_red).max(1) <= 1).all()
    assert (np.abs(out[inside_b].astype(int) - blend_green).max(1) <= 1).all()
    assert has(out, RED)[5, 5:15].all() and has(out, GREEN)[24, 16:34].all()  # outlines
    # b is later: where they overlap, b is shown (and outlined where it meets a)
    assert np.abs(out[12, 17].astype(int) - blend_green).max() <= 1
    assert (out[~(a | b)] == 100).all()  # nothing outside the masks
    assert (draw_instance_masks(image, np.zeros((0, 30, 40), bool), [], colors) == 100).all()


def test_draw_prediction_and_plot_draw_masks_under_the_boxes():
    r = mask_result()
    r.image[:] = 100
    colors = class_colors(len(NAMES))
    plot = r.plot()
    plain = Result(r.image, "x", None, r.boxes, r.scores, r.labels, NAMES, CAT_IDS).plot()
    inside = rect(40, 60, 22, 36, 42, 56)  # the second mask's inside, clear of its box's tag
    assert (plot[inside] != plain[inside]).any(1).all() and (plain[inside] == 100).all()
    assert np.array_equal(plot, draw_prediction(r.image, r._prediction(), NAMES, colors))
    assert (plot[~r.masks.any(0) & (plain == 100).all(-1)] == 100).all()  # only masks and boxes


# -- the backends' threshold, predict and the stream ----------------------------------------------


class StandIn(PredictorBackend):
    """An instance model's documented outputs: per image a 0.9 detection whose mask is the
    image's top-left quarter and a 0.1 one (the whole image); weak references to every masks
    tensor it gives (``made``) and the backend keeps (``kept``)."""

    task, class_names, cat_ids, model = "instance", ["a", "b"], [1, 2], None
    device = torch.device("cpu")

    def __init__(self, score_thresh: float = 0.3) -> None:
        self.score_thresh = score_thresh
        self.made: list[weakref.ref] = []
        self.kept: list[weakref.ref] = []

    @property
    def predict_extras(self) -> tuple[str, ...]:
        return ()

    def predict(self, images, **extras):
        out = []
        for image in images:
            h, w = image.shape[1:]
            masks = torch.zeros(2, h, w, dtype=torch.bool)
            masks[0, : h // 2, : w // 2] = True
            masks[1] = True
            self.made.append(weakref.ref(masks))
            out.append({
                "boxes": torch.tensor([[0.0, 0.0, w / 2, h / 2], [0.0, 0.0, w, h]]),
                "scores": torch.tensor([0.9, 0.1]), "labels": torch.tensor([1, 0]),
                "masks": masks,
            })  # fmt: skip
        return out

    def __call__(self, images, below=None):
        outputs = super().__call__(images, below)
        self.kept += [weakref.ref(o["masks"]) for o in outputs]
        return outputs


def test_the_threshold_keeps_the_masks_of_the_kept_detections():
    images = [np.zeros((10, 12, 3), np.uint8), np.zeros((6, 8, 3), np.uint8)]
    for thresh, n in ((0.3, 1), (0.05, 2), (0.95, 0)):
        for img, out in zip(images, StandIn(thresh)(images), strict=True):
            assert out["masks"].shape == (n, *img.shape[:2]) and out["masks"].dtype == torch.bool
            if n:
                assert int(out["masks"][0].sum()) == (img.shape[0] // 2) * (img.shape[1] // 2)


def write_video(path: Path, count: int = 12, size=(48, 32)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    for i in range(count):
        writer.write(np.full((size[1], size[0], 3), 10 * i, np.uint8))
    writer.release()


def alive(refs: list[weakref.ref]) -> int:
    gc.collect()
    return sum(r() is not None for r in refs)


def test_a_stream_holds_only_the_current_batchs_masks(tmp_path):
    video = tmp_path / "clip.mp4"
    write_video(video, 12)
    backend = StandIn()
    model = VisionModel(backend, None)
    frames = 0
    for r in model.predict(video, stream=True, batch_size=2):
        assert r.masks.shape == (1, 32, 48) and r.frame == frames
        frames += 1
        del r
        # the model's own masks are gone once thresholded; the kept ones of this batch only
        assert alive(backend.made) == 0 and alive(backend.kept) <= 2
    assert frames == 12 and alive(backend.kept) == 0


def test_predict_writes_masks_as_rle_and_keeps_no_frame(tmp_path):
    video, image = tmp_path / "clip.mp4", tmp_path / "a.png"
    write_video(video, 6)
    cv2.imwrite(str(image), np.full((120, 160, 3), 50, np.uint8))
    backend = StandIn()
    summary = run_inference(
        backend, resolve_sources([str(image), str(video)]), tmp_path / "out", 4, progress=False
    )
    assert (summary.images, summary.frames) == (1, 6)
    assert alive(backend.made) == 0 and alive(backend.kept) == 0
    preds = json.loads((tmp_path / "out" / "predictions.json").read_text())
    images = json.loads((tmp_path / "out" / "images.json").read_text())["images"]
    assert len(preds) == 7 and all(p["category_id"] == 2 for p in preds)
    for p, entry in zip(preds, images, strict=True):
        h, w = entry["height"], entry["width"]
        np.testing.assert_array_equal(decode(p["segmentation"]), rect(h, w, 0, h // 2, 0, w // 2))
    drawn = cv2.imread(str(tmp_path / "out" / "a.jpg")).astype(int)
    assert (np.abs(drawn[80:110, 100:150] - 50) <= 4).all()  # outside the mask and the box
    assert (np.abs(drawn[30:50, 50:70] - 50) > 20).any(-1).all()  # inside: painted
    assert (tmp_path / "out" / "clip.mp4").is_file()


# -- Mask R-CNN: eager and ONNX -------------------------------------------------------------------

needs_model = pytest.mark.skipif("mask_rcnn" not in MODELS, reason="mask_rcnn is not registered")
SCORE = 0.05


def tiny_mask_rcnn():
    """A tiny randomly initialized mask_rcnn (tests/test_model_contract.py's config), weights
    nudged away from zero as the contract tests do."""
    from test_model_contract import TINY

    small_head = ["model.mask_head.num_convs=1", "model.mask_head.conv_channels=8"]
    overrides = TINY.get("mask_rcnn", [*TINY["faster_rcnn"], *small_head])
    cfg = load_config(None, ["model.name=mask_rcnn", *overrides])
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return cfg, model


def sample_images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for h, w in ((72, 96), (50, 40)):
        img = np.zeros((h, w, 3), np.uint8) + rng.integers(0, 60, (1, 1, 3), dtype=np.uint8)
        cv2.circle(img, (w // 3, h // 2), min(h, w) // 4, (220, 40, 40), -1)
        cv2.rectangle(img, (w // 2, h // 5), (w - 4, h - 6), (40, 200, 60), -1)
        out.append(img)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from visionkit.export import export_onnx

    cfg, model = tiny_mask_rcnn()
    path = tmp_path_factory.mktemp("onnx") / "mask_rcnn.onnx"
    export_onnx(model, cfg, path, NAMES, CAT_IDS)
    return cfg, model, path


def pairs(a: Result, b: Result) -> list[tuple[int, int]]:
    """Detections of ``a`` and ``b`` that are the same one: same label, IoU >= 0.99, scores
    within 1e-3."""
    from torchvision.ops import box_iou

    if not len(a) or not len(b):
        return []
    iou = box_iou(torch.from_numpy(a.boxes), torch.from_numpy(b.boxes))
    close = np.abs(a.scores[:, None] - b.scores[None]) <= 1e-3
    ok = (iou.numpy() >= 0.99) & close & (a.labels[:, None] == b.labels[None])
    return [
        (i, int(np.argmax(np.where(ok[i], iou[i].numpy(), -1)))) for i in np.flatnonzero(ok.any(1))
    ]


@needs_model
def test_onnx_gives_the_checkpoints_masks(exported):
    import visionkit
    from visionkit.inference.predictor import Predictor

    cfg, model, path = exported
    eager = VisionModel(
        Predictor(model, torch.device("cpu"), model.task, NAMES, CAT_IDS, SCORE), cfg
    )
    onnx = visionkit.load(path, score_thresh=SCORE)
    assert model.task == onnx.task == "instance"
    assert onnx.predictor.meta["outputs"] == ["boxes", "scores", "labels", "batch_index", "masks"]
    images = sample_images()
    compared = 0
    for e, o, img in zip(eager.predict(images), onnx.predict(images), images, strict=True):
        for r in (e, o):
            assert r.masks.shape == (len(r), *img.shape[:2]) and r.masks.dtype == bool
        matched = pairs(e, o)
        assert len(matched) >= 0.99 * len(e) and abs(len(o) - len(e)) <= 0.01 * len(e)
        for i, j in matched:
            assert (e.masks[i] == o.masks[j]).mean() >= 0.99
        compared += len(matched)
    assert compared > 0
    # the graph's own mask probabilities: the traced module's, run eagerly on the same inputs
    from visionkit.export.graphs import export_graph

    tensors = [torch.from_numpy(i).permute(2, 0, 1).float() / 255 for i in images]
    _, feed = onnx.predictor.inputs(tensors)
    names = onnx.predictor.meta["outputs"]
    raw = dict(zip(names, onnx.predictor.session.run(None, feed), strict=True))
    with torch.no_grad():
        graph = export_graph(model, "float32").eval()
        mine = dict(zip(names, graph(*(torch.from_numpy(feed[k]) for k in feed)), strict=True))
    side = 2 * cfg.model.mask_head.pool_size  # M: the transposed conv doubles the RoIAlign size
    assert raw["masks"].shape[1:] == (1, side, side) and len(raw["masks"]) == len(raw["boxes"])
    gap = (mine["boxes"][:, None] - torch.from_numpy(raw["boxes"])[None]).abs().amax(-1)
    near, j = gap.min(1)
    ok = near < 1e-3
    assert len(ok) > 0 and ok.float().mean() >= 0.99
    np.testing.assert_allclose(raw["masks"][j[ok].numpy()], mine["masks"][ok].numpy(), atol=1e-4)


@needs_model
def test_predict_of_an_instance_model_end_to_end(exported, tmp_path):
    from visionkit.inference.onnx_backend import OnnxPredictor

    _, _, path = exported
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), cv2.cvtColor(sample_images()[0], cv2.COLOR_RGB2BGR))
    backend = OnnxPredictor(path, score_thresh=SCORE)
    run_inference(backend, resolve_sources(str(image)), tmp_path / "out", 2, progress=False)
    preds = json.loads((tmp_path / "out" / "predictions.json").read_text())
    (result,) = VisionModel(backend, None).predict(str(image))
    assert len(preds) == len(result) > 0
    for p, mask in zip(preds, result.masks, strict=True):
        np.testing.assert_array_equal(decode(p["segmentation"]), mask)
    assert (tmp_path / "out" / "a.jpg").is_file()


@needs_model
def test_metadata_names_the_masks_output_and_refuses_other_masks(exported):
    from types import SimpleNamespace

    from visionkit.errors import CheckpointError
    from visionkit.export.metadata import read_metadata
    from visionkit.inference.onnx_backend import read_session

    _, _, path = exported
    session, meta, _ = read_session(path)
    assert (meta["model"], meta["task"]) == ("mask_rcnn", "instance")
    assert meta["outputs"][-1] == "masks" and meta["inputs"] == ["images", "image_sizes"]

    class ThreeDimensionalMasks:  # the file's graph, but its masks (D, 28, 28)
        def __getattr__(self, name):
            return getattr(session, name)

        def get_outputs(self):
            outs = session.get_outputs()
            return [*outs[:-1], SimpleNamespace(name="masks", shape=["detections", 28, 28])]

    with pytest.raises(CheckpointError, match=r"its graph's masks are .*\(detections, 1, M, M\)"):
        read_metadata(ThreeDimensionalMasks(), path)


def test_training_curves_draw_the_mask_ap_beside_the_box_ap():
    from visionkit.engine.training_curves import choose_panels

    terms = [f"train/loss_{t}" for t in ("mask_bce", "roi_cls", "roi_box", "rpn_cls", "rpn_box")]
    metrics = [f"{s}/{k}" for s in ("bbox", "segm") for k in ("AP", "AP50", "AP75", "APs")]
    drawn, left_out = choose_panels(["train/loss", *terms, "lr", *metrics], also=["segm/AP50"])
    assert drawn == [
        "train/loss", *sorted(terms), "lr", "bbox/AP", "bbox/AP50", "segm/AP", "segm/AP50"
    ]  # fmt: skip
    assert left_out == ["bbox/AP75", "bbox/APs", "segm/AP75", "segm/APs"]
