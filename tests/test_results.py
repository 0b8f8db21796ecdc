"""Result as an Ultralytics or torchvision user expects it, on hand-built results and a tiny model:
selection by masks and indices, plain-Python and JSON output, pandas tables, summaries, YOLO
label files and crops, the empty-result hint, and batch tensors and RGBA arrays as inputs."""

import json
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_predict_inputs import TINY
from test_tools_e2e import ROOT

from visionkit.config import load_config
from visionkit.errors import ConfigError, VisionkitError
from visionkit.inference.api import VisionModel
from visionkit.inference.backend import PredictorBackend
from visionkit.inference.predictor import Predictor
from visionkit.inference.results import Result
from visionkit.inference.runner import run_inference
from visionkit.inference.sources import resolve_sources
from visionkit.io.atomic import leftover_temporaries
from visionkit.models import build_model

NAMES, CAT_IDS = ["square", "circle", "N/A"], [3, 7, 9]
BOXES = [
    [12.0, 30.5, 80.2, 99.0],  # inside the 200 x 100 image
    [150.0, 10.0, 250.0, 60.0],  # past the right edge: clipped to x2 = 200
    [-10.0, 90.0, 20.0, 130.0],  # past the left and bottom edges: [0, 90, 20, 100]
    [5.0, 5.0, 5.0, 20.0],  # no width
]
SCORES, LABELS = [0.91, 0.6, 0.4, 0.2], [1, 0, 2, 0]


def make_result(source: str = "photos/a.jpg", frame: int | None = None) -> Result:
    image = np.zeros((100, 200, 3), np.uint8)
    image[..., 0] = np.arange(200, dtype=np.uint8)[None]  # red grows to the right
    return Result(
        image, source, frame, np.array(BOXES, np.float32), np.array(SCORES, np.float32),
        np.array(LABELS, np.int64), NAMES, CAT_IDS,
    )  # fmt: skip


def seg_result() -> Result:
    sem_seg = np.zeros((4, 5), np.int64)
    sem_seg[:2, :4] = 1  # 8 "square" pixels, 12 background
    image = np.zeros((4, 5, 3), np.uint8)
    return Result(
        image, "array 0", None, np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
        np.zeros(0, np.int64), ["background", "square"], [0, 1], sem_seg,
    )  # fmt: skip


def is_plain(value) -> bool:
    """Only str, int, float, bool, None, lists and dicts of str keys (no numpy types)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_selection_by_masks_and_indices():
    r = make_result()
    for key in (r.scores > 0.5, torch.from_numpy(r.scores > 0.5), [True, True, False, False]):
        top = r[key]
        assert top.labels.tolist() == [1, 0] and top.scores.tolist() == r.scores[:2].tolist()
        assert top.image is r.image and top.class_names is r.class_names
        assert top.cat_ids is r.cat_ids and (top.source, top.frame) == (r.source, r.frame)
    for key in ([2, 0], np.array([2, 0]), torch.tensor([2, 0]), np.array([-2, 0], np.int8)):
        np.testing.assert_array_equal(r[key].boxes, r.boxes[[2, 0]])
    assert r[:2].labels.tolist() == [1, 0] and r[::-2].labels.tolist() == [0, 0]
    first = r[0]
    assert len(first) == 1 and first.boxes.shape == (1, 4) and first.names == ["circle"]
    assert r[-1].boxes.tolist() == [BOXES[3]] and r[np.int64(1)].labels.tolist() == [0]
    assert r[torch.tensor(2)].labels.tolist() == [2] and len(r[[]]) == 0 and len(r[5:]) == 0
    assert [x.labels.tolist() for x in r] == [[1], [0], [2], [0]] and len(r) == 4
    sel = r[:2]
    sel.boxes += 1  # a copy: the original stays
    np.testing.assert_array_equal(r.boxes, np.array(BOXES, np.float32))


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (np.array([True, False]), "a mask of 2 values for 4 detections"),
        ([True, False, True], "a mask of 3 values for 4 detections"),
        (np.array([0.5, 1.0]), "a float64 array"),
        (torch.tensor([0.0, 1.0]), "a float32 tensor"),
        ([0, 1.0], "a list of other values than all bools or all integers"),
        ([True, 1], "a list of other values than all bools or all integers"),
        (4, "index 4 out of range for 4 detections"),
        ([0, -5], "index -5 out of range for 4 detections"),
        (np.zeros((2, 2), np.int64), r"a int64 array of shape \(2, 2\)"),
        (True, "a bool"),
        ((0, 1), "a tuple"),
        ("circle", "a str"),
        (slice(0, 2, 0), "a slice step of 0"),
        (slice(0.5, 2), "a slice of float, int, NoneType"),
        (torch.tensor([0, 1], dtype=torch.uint8), "a uint8 tensor"),
    ],
)
def test_bad_selections_are_one_line_config_errors(key, message):
    with pytest.raises(ConfigError, match=r"^Result\[\.\.\.\]: " + message) as e:
        make_result()[key]
    assert "\n" not in str(e.value) and "bool mask" in str(e.value)


def test_a_segmentation_result_has_no_detections_to_select():
    with pytest.raises(ConfigError, match=r"^a segmentation result has no detections to select: "
                       r"r\.sem_seg holds its label map$"):  # fmt: skip
        seg_result()[0]
    assert len(seg_result()) == 0 and list(seg_result()) == []


KEYS = st.one_of(
    st.integers(-8, 8),
    st.slices(8),
    st.lists(st.booleans(), max_size=8),
    st.lists(st.integers(-8, 8), max_size=8),
    hnp.arrays(
        st.sampled_from([np.bool_, np.int8, np.uint8, np.int64, np.uint64, np.float32]),
        hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=8),
    ),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.none(),
)


def expected(key, n: int) -> np.ndarray | None:
    """The positions ``key`` selects among ``n`` detections, or None where it must be refused."""
    if isinstance(key, torch.Tensor):
        if key.dtype == torch.uint8:
            return None
        key = key.numpy()
    if isinstance(key, slice):
        return np.arange(n)[key]
    if isinstance(key, (bool, np.bool_, tuple, float, str)) or key is None:
        return None
    if isinstance(key, int):
        return np.array([key]) if -n <= key < n else None
    if isinstance(key, list) and not key:
        return np.zeros(0, np.int64)
    arr = np.asarray(key)
    if arr.ndim == 0 and arr.dtype.kind in "iu":
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.dtype.kind not in "biu":
        return None
    if arr.dtype == bool:
        return np.flatnonzero(arr) if len(arr) == n else None
    ok = all(-n <= int(v) < n for v in arr)
    return arr.astype(np.int64) if ok else None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 6), key=KEYS, as_tensor=st.booleans(), seed=st.integers(0, 2**16))
def test_any_key_selects_as_numpy_or_is_a_one_line_error(n, key, as_tensor, seed):
    rng = np.random.default_rng(seed)
    boxes = rng.random((n, 4), np.float32) * 50
    scores, labels = rng.random(n, np.float32), rng.integers(0, 3, n)
    r = Result(np.zeros((60, 60, 3), np.uint8), "x", None, boxes.copy(), scores.copy(),
               labels.copy(), NAMES, CAT_IDS)  # fmt: skip
    if as_tensor and isinstance(key, np.ndarray) and key.dtype != np.uint64:
        key = torch.from_numpy(key)
    want = expected(key, n)
    try:
        got = r[key]
    except ConfigError as e:
        assert want is None, f"refused {key!r}: {e}"
        assert "\n" not in str(e) and str(e).startswith("Result[...]: ")
    else:
        assert want is not None, f"took {key!r}"
        np.testing.assert_array_equal(got.boxes, boxes[want].reshape(-1, 4))
        np.testing.assert_array_equal(got.scores, scores[want])
        np.testing.assert_array_equal(got.labels, labels[want])
        got.boxes += 1
        got.scores += 1
    np.testing.assert_array_equal(r.boxes, boxes)  # never changed
    np.testing.assert_array_equal(r.scores, scores)
    np.testing.assert_array_equal(r.labels, labels)


def test_to_dict_and_to_json_are_plain_python():
    r = make_result(frame=3)
    d = r.to_dict()
    assert d == {
        "source": "photos/a.jpg", "frame": 3, "width": 200, "height": 100,
        "detections": [
            {"box": [12.0, 30.5, 80.2, 99.0], "score": 0.91, "label": 1, "name": "circle",
             "category_id": 7},
            {"box": [150.0, 10.0, 250.0, 60.0], "score": 0.6, "label": 0, "name": "square",
             "category_id": 3},
            {"box": [-10.0, 90.0, 20.0, 130.0], "score": 0.4, "label": 2, "name": "N/A",
             "category_id": 9},
            {"box": [5.0, 5.0, 5.0, 20.0], "score": 0.2, "label": 0, "name": "square",
             "category_id": 3},
        ],
    }  # fmt: skip
    assert is_plain(d) and json.loads(json.dumps(d)) == d
    assert json.loads(r.to_json()) == d and json.loads(r.to_json(indent=2)) == d
    assert "\n" in r.to_json(indent=2)
    empty = r[r.scores > 1]
    assert empty.to_dict()["detections"] == [] and json.loads(empty.to_json()) == empty.to_dict()
    seg = seg_result().to_dict()
    assert seg == {"source": "array 0", "frame": None, "width": 5, "height": 4,
                   "class_pixels": {"background": 12, "square": 8}}  # fmt: skip
    assert is_plain(seg) and json.loads(seg_result().to_json()) == seg


def test_to_df_without_pandas_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    with pytest.raises(VisionkitError, match=r"^Result\.to_df needs pandas: pip install pandas$"):
        make_result().to_df()


def test_to_df_has_one_row_per_detection():
    pd = pytest.importorskip("pandas", reason="pandas is not installed (not a dependency)")
    df = make_result().to_df()
    assert list(df.columns) == ["x1", "y1", "x2", "y2", "score", "label", "name", "category_id"]
    assert len(df) == 4 and df["name"].tolist() == ["circle", "square", "N/A", "square"]
    assert df[["x1", "y1", "x2", "y2"]].to_numpy().tolist() == make_result().boxes.tolist()
    assert df["category_id"].tolist() == [7, 3, 9, 3]
    seg = seg_result().to_df()
    assert isinstance(seg, pd.DataFrame) and seg["pixels"].tolist() == [12, 8]


def test_summary_lines():
    assert make_result().summary().splitlines() == [
        "photos/a.jpg: 200x100, 4 detections: 2 square, 1 circle, 1 N/A",
        "circle 0.91 [12.0, 30.5, 80.2, 99.0]",
        "square 0.60 [150.0, 10.0, 250.0, 60.0]",
        "N/A 0.40 [-10.0, 90.0, 20.0, 130.0]",
        "square 0.20 [5.0, 5.0, 5.0, 20.0]",
    ]
    assert make_result(frame=7)[1:2].summary().splitlines()[0] == (
        "photos/a.jpg frame 7: 200x100, 1 detection: 1 square"
    )
    assert make_result()[[]].summary() == "photos/a.jpg: 200x100, 0 detections"
    assert seg_result().summary().splitlines() == [
        "array 0: 5x4, 2 classes",
        "background 60.0%",
        "square 40.0%",
    ]


def test_save_creates_missing_folders(tmp_path):
    r = make_result()
    path = r.save(tmp_path / "new" / "deeper" / "out.png")
    assert path == tmp_path / "new" / "deeper" / "out.png"
    saved = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert (saved == r.plot()).all() and leftover_temporaries(path.parent) == []


def test_save_txt_writes_yolo_labels(tmp_path):
    r = make_result()
    path = r.save_txt(tmp_path / "labels" / "new" / "a.txt")
    # W = 200, H = 100; boxes clipped to the image first; cx = (x1 + x2) / 2 / W, w = (x2 - x1) / W
    assert path.read_text().splitlines() == [
        "1 0.230500 0.647500 0.341000 0.685000",  # (12 + 80.2) / 400, (30.5 + 99) / 200, ...
        "0 0.875000 0.350000 0.250000 0.500000",  # x2 250 -> 200: (150 + 200) / 400, 50 / 200
        "2 0.050000 0.950000 0.100000 0.100000",  # [0, 90, 20, 100]
        "0 0.025000 0.125000 0.000000 0.150000",
    ]
    conf = r.save_txt(tmp_path / "conf.txt", conf=True).read_text().splitlines()
    assert [ln.split()[-1] for ln in conf] == ["0.910000", "0.600000", "0.400000", "0.200000"]
    assert r[[]].save_txt(tmp_path / "empty.txt").read_text() == ""
    assert leftover_temporaries(tmp_path / "labels" / "new") == []
    source = tmp_path / "photo.jpg"
    source.write_bytes(b"x")
    with pytest.raises(ConfigError, match="would be written over"):
        make_result(str(source)).save_txt(source)
    with pytest.raises(ConfigError, match=r"^save_txt writes boxes; this is a segmentation"):
        seg_result().save_txt(tmp_path / "seg.txt")


def test_save_crop_writes_each_box_clipped(tmp_path):
    r = make_result()
    paths = r.save_crop(tmp_path / "crops")
    # the zero-width box (index 3) is skipped; "N/A" is a folder name as "N_A"
    assert paths == [
        tmp_path / "crops" / "circle" / "a_0.jpg",
        tmp_path / "crops" / "square" / "a_1.jpg",
        tmp_path / "crops" / "N_A" / "a_2.jpg",
    ]
    shapes = [cv2.imread(str(p)).shape for p in paths]
    # x floor(12)..ceil(80.2) = 69 wide, y 30..99 = 69 high; x 150..200, y 10..60; x 0..20, y 90..100
    assert shapes == [(69, 69, 3), (50, 50, 3), (10, 20, 3)]
    red = cv2.imread(str(paths[1]))[..., 2].astype(int)  # columns 150..199 of the red ramp
    assert abs(red[:, 0].mean() - 150) < 4 and abs(red[:, -1].mean() - 199) < 4
    named = make_result(frame=4).save_crop(tmp_path / "named", name="shot")
    assert [p.name for p in named] == ["shot_0.jpg", "shot_1.jpg", "shot_2.jpg"]
    framed = make_result("clip.mp4", frame=4).save_crop(tmp_path / "framed")
    assert framed[0] == tmp_path / "framed" / "circle" / "clip_4_0.jpg"
    with pytest.raises(ConfigError, match=r"^save_crop: name must be a file name stem"):
        r.save_crop(tmp_path / "bad", name="a/b")
    with pytest.raises(ConfigError, match=r"^save_crop writes boxes; this is a segmentation"):
        seg_result().save_crop(tmp_path / "seg")


class FixedScores(PredictorBackend):
    """One box per image (or ``boxes``), scored its first pixel's value (in [0, 1])."""

    task, class_names, cat_ids, model = "detection", ["a", "b"], [1, 2], None
    device = torch.device("cpu")

    def __init__(self, score_thresh: float, boxes: int = 1) -> None:
        self.score_thresh, self.boxes = score_thresh, boxes

    @property
    def predict_extras(self) -> tuple[str, ...]:
        return ()

    def predict(self, images, **extras):
        return [
            {"boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]]).repeat(self.boxes, 1),
             "scores": image[0, 0, 0].repeat(self.boxes), "labels": torch.ones(self.boxes).long()}
            for image in images
        ]  # fmt: skip


GREYS = [np.full((8, 8), v, np.uint8) for v in (51, 64, 230)]  # scores 0.2, 0.251, 0.902
HINT = (
    "no detection scored >= 0.5 on 2 of 3 images; the highest score below it was 0.251 "
    "(lower the threshold to see it: {}0.25)"
)


def hints(caught) -> list[str]:
    return [str(w.message) for w in caught if "no detection scored" in str(w.message)]


@pytest.mark.parametrize("stream", [False, True])
def test_empty_results_hint_once_per_call_with_the_highest_score(stream):
    model = VisionModel(FixedScores(0.5), None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = list(model.predict(GREYS, batch_size=1, stream=stream))
    assert [len(r) for r in results] == [0, 0, 1]
    assert hints(caught) == [HINT.format("score_thresh=")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.predict(GREYS[:1], score_thresh=0.1)  # every image keeps its box
        model.predict(GREYS, score_thresh=0.21)
        VisionModel(FixedScores(0.5, boxes=0), None).predict(GREYS)  # nothing scored at all
        model.predict(GREYS[:1])
    assert hints(caught) == [
        "no detection scored >= 0.21 on 1 of 3 images; the highest score below it was 0.200 "
        "(lower the threshold to see it: score_thresh=0.2)",
        "no detection scored >= 0.5 on the image; the highest score below it was 0.200 "
        "(lower the threshold to see it: score_thresh=0.2)",
    ]


def test_the_runner_prints_the_hint_once_on_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("visionkit.utils.warn._count", 0)  # the process's count, from 0 here
    summary = run_inference(
        FixedScores(0.5), resolve_sources(GREYS), tmp_path / "out", 1, progress=False
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: " + HINT.format("--score-thresh ")]
    assert summary.images == 3 and "1 warning (above)" in summary.line()


@pytest.fixture(scope="module")
def model() -> VisionModel:
    """An untrained tiny YOLOv1 keeping every detection (test_predict_inputs' model)."""
    cfg = load_config(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml", TINY)
    torch.manual_seed(0)
    net = build_model(cfg.model)
    return VisionModel(
        Predictor(net, torch.device("cpu"), "detection", ["c0", "c1", "c2"], [1, 2, 3], 0.0), cfg
    )


def same(a: Result, b: Result) -> bool:
    return (
        np.array_equal(a.image, b.image)
        and np.array_equal(a.boxes, b.boxes)
        and np.array_equal(a.scores, b.scores)
        and np.array_equal(a.labels, b.labels)
    )


def test_batch_tensors_give_one_result_per_image(model):
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (3, 3, 24, 32), dtype=torch.uint8, generator=g)
    for b in (batch, batch.float() / 255):
        results, each = model.predict(b), model.predict(list(b))
        assert len(results) == 3 and [r.source for r in results] == [
            "tensor 0", "tensor 1", "tensor 2"
        ]  # fmt: skip
        assert all(same(x, y) and len(x) > 0 for x, y in zip(results, each, strict=True))
    mixed = model.predict([batch[0].permute(1, 2, 0).numpy(), batch[1:]])
    assert [r.source for r in mixed] == ["array 0", "tensor 1", "tensor 2"]
    with pytest.raises(VisionkitError, match=r"^tensor 1: a float tensor must hold values in "):
        model.predict(torch.stack([batch[0].float() / 255, batch[1].float()]))


def test_rgba_arrays_and_tensors_drop_alpha(model):
    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), np.uint8)
    rgba = np.concatenate([rgb, np.full((24, 32, 1), 7, np.uint8)], axis=2)
    (want,) = model.predict(rgb)
    (got,) = model.predict(rgba)
    (bgra,) = model.predict(np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]), bgr=True)
    (tensor,) = model.predict(torch.from_numpy(rgba).permute(2, 0, 1))
    (floats,) = model.predict(rgba.astype(np.float32) / 255)
    assert all(same(want, r) for r in (got, bgra, tensor, floats))
    with pytest.raises(VisionkitError, match=r"^array 0: a float array must hold values in"):
        model.predict(np.concatenate([rgb / 255, np.full((24, 32, 1), 255.0)], axis=2))
