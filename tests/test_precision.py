"""Inference precision: ``visionkit.load(precision=)`` / ``visionkit predict --precision``
(default ``auto``: bfloat16 autocast where the device computes it natively, else float32, decided
by the one detection function), ``visionkit eval`` and ``VisionModel.evaluate`` in float32 unless
told otherwise; predictions are float32 at any precision; ONNX files run float32."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_predict_inputs import TINY  # the tiny YOLOv1 overrides
from test_tools_e2e import ROOT

import visionkit
from visionkit.checkpoints import save_checkpoint
from visionkit.cli import eval as eval_cli
from visionkit.cli import predict as predict_cli
from visionkit.config import load_config
from visionkit.config.loader import config_to_dict
from visionkit.errors import ConfigError
from visionkit.inference import api
from visionkit.inference.options import PRECISIONS, check_precision
from visionkit.inference.predictor import Predictor, resolve_precision
from visionkit.models import build_model

CONFIG = ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml"
CPU = torch.device("cpu")


def force_native(monkeypatch, native: bool) -> None:
    """The detection function's answer, forced where inference reads it."""
    answer = (native, "forced") if native else (False, "forced: none")
    monkeypatch.setattr("visionkit.inference.predictor.native_bfloat16", lambda device: answer)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained tiny YOLOv1 saved as the trainer's checkpoints are (config, classes)."""
    cfg = load_config(CONFIG, TINY)
    torch.manual_seed(0)
    net = build_model(cfg.model)
    names = [f"c{i}" for i in range(cfg.model.num_classes)]
    path = tmp_path_factory.mktemp("precision") / "tiny.pth"
    save_checkpoint(
        {"model": net.state_dict(), "model_name": "yolo_v1", "config": config_to_dict(cfg),
         "class_names": names, "cat_ids": list(range(1, len(names) + 1))},
        path,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (72, 96, 3), dtype=np.uint8)


def test_precision_names_resolve_to_autocast_dtypes(monkeypatch):
    assert resolve_precision("float32", CPU) is None
    assert resolve_precision("bf16", CPU) == torch.bfloat16
    with pytest.raises(ConfigError, match=r"^precision fp16 \(--half\) runs on CUDA only; the "):
        resolve_precision("fp16", CPU)
    force_native(monkeypatch, True)
    assert resolve_precision("auto", CPU) == torch.bfloat16
    force_native(monkeypatch, False)
    assert resolve_precision("auto", CPU) is None
    assert check_precision("auto") == "auto" and set(PRECISIONS) == {"auto", "float32", "bf16",
                                                                     "fp16"}  # fmt: skip
    for junk in ("half", "fp32", "", None, 16, ["bf16"]):
        with pytest.raises(ConfigError, match=r"^precision must be one of auto, float32, bf16"):
            check_precision(junk)


@given(st.one_of(st.text(max_size=12), st.integers(), st.none(), st.lists(st.text(), max_size=2)))
def test_any_other_precision_is_a_one_line_error(value):
    if value in PRECISIONS:
        assert check_precision(value) == value
        return
    with pytest.raises(ConfigError) as e:
        check_precision(value, "--precision")
    assert str(e.value).startswith("--precision must be one of ") and "\n" not in str(e.value)


def test_bf16_predictions_are_float32_in_the_same_format(checkpoint, image):
    exact = visionkit.load(checkpoint, score_thresh=0.0, precision="float32")
    fast = visionkit.load(checkpoint, score_thresh=0.0, precision="bf16")
    assert exact.dtype is None and fast.dtype == torch.bfloat16
    assert "bfloat16 autocast" in repr(fast) and repr(exact).endswith(", float32)")
    (a,) = exact.predict(image)
    (b,) = fast.predict(image)
    assert len(a) > 0 and len(b) > 0  # score_thresh 0: the untrained model's boxes
    for r in (a, b):
        assert r.boxes.dtype == np.float32 and r.boxes.shape == (len(r), 4)
        assert r.scores.dtype == np.float32 and r.scores.shape == (len(r),)
        assert ((r.boxes[:, 2:] >= r.boxes[:, :2]) & (r.boxes[:, 2:] <= [96, 72])).all()
        assert ((r.scores >= 0) & (r.scores <= 1)).all()
    assert a.to_dict().keys() == b.to_dict().keys()
    # bf16: the model's own predict under bfloat16 autocast, bit for bit (not float32's)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        direct = fast.model.predict([tensor])[0]
    assert np.array_equal(b.boxes, direct["boxes"].numpy())
    assert np.array_equal(b.scores, direct["scores"].numpy())
    assert not np.array_equal(a.scores, b.scores)


def test_load_and_predict_default_to_auto_through_the_detection(checkpoint, monkeypatch):
    force_native(monkeypatch, True)
    model = visionkit.load(checkpoint)
    assert model.predictor.precision == "auto" and model.dtype == torch.bfloat16
    assert model.to("cpu").dtype == torch.bfloat16  # resolved again on the new device
    force_native(monkeypatch, False)
    assert visionkit.load(checkpoint).dtype is None
    assert visionkit.load(checkpoint, half=False, precision="bf16").dtype == torch.bfloat16
    with pytest.raises(ConfigError, match=r"^precision fp16 \(--half\) runs on CUDA only"):
        visionkit.load(checkpoint, half=True)
    with pytest.raises(ConfigError, match=r"^half=True is precision='fp16', but precision='bf16'"):
        visionkit.load(checkpoint, half=True, precision="bf16")
    with pytest.raises(ConfigError, match=r"^precision must be one of"):
        visionkit.load(checkpoint, precision="int8")


def test_evaluate_scores_float32_unless_told(checkpoint, monkeypatch):
    force_native(monkeypatch, True)
    model = visionkit.load(checkpoint)
    seen = []
    monkeypatch.setattr(api, "val_dataset", lambda cfg, progress: None)
    monkeypatch.setattr(
        api, "evaluate_model",
        lambda predictor, *a: seen.append(predictor) or type("E", (), {"metrics": {}})(),
    )  # fmt: skip
    model.evaluate()
    model.evaluate(precision="auto")
    assert [p.dtype for p in seen] == [None, torch.bfloat16]
    assert seen[0].model is model.model and model.dtype == torch.bfloat16  # load's unchanged
    with pytest.raises(ConfigError, match=r"^precision must be one of"):
        model.evaluate(precision="double")


def test_onnx_files_take_auto_and_float32_only():
    with pytest.raises(
        ConfigError, match=r"^m.onnx: precision bf16: an ONNX file runs the float32"
    ):
        visionkit.load("m.onnx", precision="bf16")
    with pytest.raises(ConfigError, match=r"precision fp16: an ONNX file runs the float32 graph"):
        visionkit.load("m.onnx", half=True)
    onnx = object()  # an OnnxPredictor's stand-in: anything but a Predictor
    assert api._at_precision(onnx, "auto", "evaluate") is onnx
    assert api._at_precision(onnx, "float32", "evaluate") is onnx
    with pytest.raises(ConfigError, match=r"^evaluate: precision bf16: an ONNX file"):
        api._at_precision(onnx, "bf16", "evaluate")


def test_cli_defaults_predict_auto_eval_float32(capsys):
    assert predict_cli.parse_args(["w.pth", "--source", "a.jpg"]).precision == "auto"
    assert predict_cli.parse_args(["w.pth", "--source", "a.jpg", "--half"]).precision == "fp16"
    args = ["w.pth", "--source", "a.jpg", "--precision", "float32"]
    assert predict_cli.parse_args(args).precision == "float32"
    assert predict_cli.parse_args([*args[:3], "--half", "--precision", "fp16"]).precision == "fp16"
    with pytest.raises(SystemExit):
        predict_cli.parse_args([*args, "--half"])
    assert "--half is --precision fp16; give one" in capsys.readouterr().err
    assert eval_cli.parse_args(["w.pth"]).precision == "float32"
    assert eval_cli.parse_args(["w.pth", "--precision", "auto"]).precision == "auto"
    with pytest.raises(SystemExit):
        eval_cli.parse_args(["w.pth", "--precision", "fp64"])
    with pytest.raises(SystemExit):
        eval_cli.parse_args(
            ["--config", "c.yaml", "--predictions", "p.json", "--precision", "bf16"]
        )
    assert "--predictions are scored as they were saved" in capsys.readouterr().err
    assert predict_cli.PRECISIONS == eval_cli.PRECISIONS == PRECISIONS  # repeated for --help


def test_eval_runs_the_model_in_float32_by_default(checkpoint, monkeypatch):
    force_native(monkeypatch, True)
    loaded = []
    real = api.load

    def spy(*a, **k):
        loaded.append(real(*a, **k))
        raise SystemExit(0)  # the model is what this test is about, not the scoring

    monkeypatch.setattr(api, "load", spy)
    for extra, dtype in (([], None), (["--precision", "auto"], torch.bfloat16)):
        with pytest.raises(SystemExit):
            eval_cli.main([str(checkpoint), *extra])
        assert loaded[-1].dtype == dtype
    assert isinstance(loaded[-1].predictor, Predictor)
