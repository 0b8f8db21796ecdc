"""The checkpoint is the truth about the model: tools/eval.py, tools/infer.py, tools/export.py and
visionkit.load build it from the config the checkpoint holds, refuse a model.* change in one
line naming the key, take test-time, data and evaluation settings (each one reported); an
.onnx file takes only what it can honour, and its metadata is checked against its graph."""

import json
import shutil
import warnings

import numpy as np
import onnx
import pytest
import torch
from script_loader import load_script
from test_model_contract import TINY, images, targets
from test_tools_e2e import ROOT, run_tool, tiny_overrides

import visionkit
from visionkit.config import load_config
from visionkit.config.diff import TEST_TIME_MODEL_KEYS
from visionkit.config.loader import config_to_dict
from visionkit.config.schema import BackboneConfig
from visionkit.errors import CheckpointError, ConfigError
from visionkit.export import export_onnx
from visionkit.export.graphs import export_graph
from visionkit.export.metadata import GRAPH_INPUTS
from visionkit.export.onnx import METADATA_KEY
from visionkit.inference import OnnxPredictor
from visionkit.inference.evaluation import val_dataset
from visionkit.models import MODELS, build_model
from visionkit.models.backbones import build_backbone

YOLO_CONFIG = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A randomly initialized tiny YOLOv1 saved as the trainer saves it (its config, class names
    and category ids), its overrides, and one shapes val image."""
    tmp = tmp_path_factory.mktemp("truth")
    overrides = [*tiny_overrides(tmp / "cache"), "data.val.num_images=4"]
    cfg = load_config(YOLO_CONFIG, overrides)
    dataset = val_dataset(cfg)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    weights = tmp / "best.pth"
    torch.save(
        {"model": model.state_dict(), "model_name": "yolo_v1", "config": config_to_dict(cfg),
         "class_names": list(dataset.class_names), "cat_ids": [int(c) for c in dataset.cat_ids]},
        weights,
    )  # fmt: skip
    image = next((tmp / "cache" / "shapes").glob("*-val-*/JPEGImages/*.jpg"))
    return weights, overrides, image, cfg


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def test_load_refuses_a_model_change_and_takes_test_time_and_data_settings(trained, tmp_path):
    weights, overrides, image, cfg = trained
    with pytest.raises(ConfigError) as e:
        visionkit.load(weights, overrides=["model.yolo.grid_size=5"])
    assert "model.yolo.grid_size 12 -> 5 (stored -> given)" in one_line(e)
    assert str(weights) in str(e.value)
    # a whole other config file: its model's input size (and more) named
    with pytest.raises(ConfigError, match=r"model.input_size \[64, 64\] -> \[96, 96\]"):
        visionkit.load(
            weights, config=YOLO_CONFIG, overrides=[*overrides, "model.input_size=[96,96]"]
        )
    (every,) = visionkit.load(weights, score_thresh=0.0).predict(image)
    thresh = float(np.median(every.scores))  # the model's own threshold raised to it
    with pytest.warns(UserWarning) as caught:
        model = visionkit.load(
            weights, score_thresh=0.0,
            overrides=[f"model.yolo.score_thresh={thresh!r}", "data.val.num_images=2",
                       "train.epochs=99"],
        )  # fmt: skip
    lines = sorted(str(w.message) for w in caught)
    assert lines == [
        f"config: data.val.num_images: 2 ({weights}'s config: 4)",
        f"config: model.yolo.score_thresh: {thresh!r} ({weights}'s config: 0.01)",
    ]  # train.* is neither compared nor reported
    assert model.config.data.val.num_images == 2 and model.config.train.epochs == 99
    (result,) = model.predict(image)
    assert 0 < len(result) == (every.scores >= thresh).sum() < len(every)
    # no difference: nothing said; device= is where it runs, not a difference
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert visionkit.load(weights, config=YOLO_CONFIG, overrides=overrides, device="cpu")
    # evaluate takes data and evaluation settings only
    with pytest.raises(ConfigError, match=r"^evaluate: .*model.yolo.nms_thresh 0.5 -> 0.1"):
        model.evaluate(overrides=["model.yolo.nms_thresh=0.1"])


def test_a_bare_state_dict_takes_its_config_and_a_run_folder_its_checkpoints(trained, tmp_path):
    weights, overrides, image, cfg = trained
    state = tmp_path / "state.pth"
    torch.save(torch.load(weights)["model"], state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to compare against: the config is the truth
        bare = visionkit.load(state, config=YOLO_CONFIG, overrides=overrides)
    assert bare.config.model.input_size == [64, 64]
    # a run folder: its checkpoint's config wins over a config.yaml that says otherwise
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(weights, run / "best.pth")
    other = load_config(YOLO_CONFIG, [*overrides, "model.yolo.grid_size=5"])
    (run / "config.yaml").write_text(json.dumps(config_to_dict(other)))
    assert visionkit.load(run).config.model.yolo.grid_size == 12


def test_eval_refuses_a_model_change_in_one_line_and_prints_the_others(trained, capsys):
    weights, overrides, _, _ = trained
    args = ["--config", YOLO_CONFIG, "--weights", str(weights), "--no-progress", *overrides]
    proc = run_tool("eval.py", *args, "model.yolo.grid_size=5", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "model.yolo.grid_size 12 -> 5" in proc.stderr
    tool = load_script("tools/eval.py")
    code = tool.main([*args, "model.yolo.max_detections=5", "data.val.num_images=2"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[-1].startswith("evaluated 2 images")
    assert f"data.val.num_images: 2 ({weights}'s config: 4)" in out
    assert f"model.yolo.max_detections: 5 ({weights}'s config: 100)" in out


def test_infer_refuses_a_model_change_and_prints_a_test_time_one(trained, tmp_path, capsys):
    weights, _, image, _ = trained
    tool = load_script("tools/infer.py")
    args = ["--weights", str(weights), "--source", str(image), "--no-progress"]
    with pytest.raises(ConfigError, match=r"model.input_size \[64, 64\] -> \[96, 96\]"):
        tool.main([*args, "--output", str(tmp_path / "a"), "model.input_size=[96,96]"])
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    code = tool.main([*args, "--output", str(tmp_path / "b"), "model.yolo.nms_thresh=0.3"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and f"model.yolo.nms_thresh: 0.3 ({weights}'s config: 0.5)" in out
    assert out[-1].startswith("done: 1 image")


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """tools/export.py without --config: the checkpoint's own config, a test-time key changed."""
    weights = trained[0]
    path = tmp_path_factory.mktemp("onnx") / "yolo.onnx"
    code = load_script("tools/export.py").main(
        ["--weights", str(weights), "--output", str(path), "model.yolo.score_thresh=0.05"]
    )
    assert code == 0 and path.is_file()
    return path


def test_export_takes_the_checkpoints_config_and_refuses_a_model_change(
    trained, exported, tmp_path, capsys
):
    weights = trained[0]
    assert OnnxPredictor(exported).config.model.yolo.score_thresh == 0.05
    tool = load_script("tools/export.py")
    with pytest.raises(ConfigError, match=r"model.yolo.grid_size 12 -> 5"):
        tool.main(["--weights", str(weights), "--output", str(tmp_path / "m.onnx"),
                   "model.yolo.grid_size=5"])  # fmt: skip
    assert not (tmp_path / "m.onnx").exists()
    code = tool.main(["--config", YOLO_CONFIG, "--weights", str(weights), "--output",
                      str(tmp_path / "m.onnx"), *trained[1], "model.yolo.score_thresh=0.3"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and f"model.yolo.score_thresh: 0.3 ({weights}'s config: 0.01)" in out


def test_an_onnx_file_takes_only_what_it_can_honour(trained, exported):
    _, overrides, image, _ = trained
    for bad in ("model.yolo.score_thresh=0.5", "model.yolo.nms_thresh=0.1",
                "model.yolo.max_detections=5", "model.input_size=[96,96]"):  # fmt: skip
        with pytest.raises(ConfigError) as e:
            visionkit.load(exported, overrides=[bad])
        text = one_line(e)
        assert bad.split("=")[0] in text and "an ONNX file's model is fixed in its graph" in text
        assert "score_thresh" in text and "data.* and eval.*" in text and "train.device" in text
    with pytest.raises(ConfigError, match=r"precision fp16: an ONNX file runs the float32 graph"):
        visionkit.load(exported, half=True)
    other = load_config(YOLO_CONFIG)  # the config file alone: another model
    with pytest.raises(ConfigError, match="model.input_size"):
        visionkit.load(exported, config=other)
    with pytest.warns(UserWarning, match=r"^config: data.val.num_images: 2 \(.*config: 4\)$"):
        model = visionkit.load(exported, overrides=["data.val.num_images=2"], score_thresh=0.3)
    assert model.config.data.val.num_images == 2
    (result,) = model.predict(image)
    assert (result.scores >= 0.3).all()  # the score threshold: honoured after the graph
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = visionkit.load(exported, config=YOLO_CONFIG, device="cpu", overrides=[
            *overrides, "model.yolo.score_thresh=0.05"])  # fmt: skip
    assert same.config.train.device == "cpu"
    # train.device asks for its execution provider (the CPU's where there is no CUDA)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnxruntime's, where it has no CUDA provider
        on_cuda = visionkit.load(exported, overrides=["train.device=cuda"])
    assert on_cuda.config.train.device == "cuda" and len(on_cuda.predict(image)) == 1


def test_eval_scores_an_onnx_file_and_refuses_a_model_change_for_it(trained, exported, capsys):
    overrides = trained[1]
    tool = load_script("tools/eval.py")
    args = ["--config", YOLO_CONFIG, "--weights", str(exported), "--no-progress", *overrides]
    with pytest.raises(ConfigError, match=r"model.yolo.nms_thresh 0.5 -> 0.2 .*fixed in its graph"):
        tool.main([*args, "model.yolo.nms_thresh=0.2"])
    assert tool.main([*args, "model.yolo.score_thresh=0.05", "data.val.num_images=2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"data.val.num_images: 2 ({exported}'s config: 4)" in out
    assert out[-1].startswith("evaluated 2 images")


def rewritten(path, tmp_path, edit) -> str:
    """A copy of the .onnx at ``path`` whose metadata record is ``edit(record)`` (a dict ->
    a dict, or a str: the new text)."""
    proto = onnx.load(str(path))
    (entry,) = [p for p in proto.metadata_props if p.key == METADATA_KEY]
    new = edit(json.loads(entry.value))
    entry.value = new if isinstance(new, str) else json.dumps(new)
    out = tmp_path / f"edited{len(list(tmp_path.iterdir()))}.onnx"
    onnx.save(proto, str(out))
    return str(out)


def as_fcn(meta):
    meta["config"]["model"]["name"] = meta["model"] = "fcn"
    meta |= {"task": "sem_seg", "outputs": ["logits", "sem_seg"]}
    return meta


def as_faster_rcnn(meta):
    meta["config"]["model"]["name"] = meta["model"] = "faster_rcnn"
    return meta


def fewer_names(meta):
    meta["class_names"] = meta["class_names"][:-1]
    return meta


def no_key(key):
    return lambda meta: {k: v for k, v in meta.items() if k != key}


def input_edit(**changes):
    def edit(meta):
        meta["input"] |= changes
        return meta

    return edit


HOSTILE = {
    "not JSON": (lambda meta: '{"format_version": 1, ', "metadata: not valid JSON at line 1"),
    "a list": (lambda meta: "[1, 2]", "not a JSON object"),
    "5,000 digits": (
        lambda meta: '{"format_version": ' + "9" * 5000 + "}",
        "metadata: at format_version: an integer of 5000 digits (at most 100)",
    ),
    "deep": (lambda meta: "[" * 100_000 + "]" * 100_000, "metadata: nested deeper than 64 levels"),
    "no class names": (no_key("class_names"), "'class_names' is missing"),
    "no input": (no_key("input"), "'input' is missing"),
    "names not a list": (lambda m: m | {"class_names": "abc"}, "'class_names' is a str"),
    "no input size": (input_edit(input_size=None), "'input.input_size' is a NoneType"),
    "fewer names": (fewer_names, "4 class names and 5 category ids"),
    "an id not an integer": (lambda m: m | {"cat_ids": [1, 2, 3, 4, "5"]}, "one id"),
    "fcn renamed": (as_fcn, "another model's graph"),
    "faster rcnn renamed": (as_faster_rcnn, "a faster_rcnn graph is"),
    "model and config disagree": (lambda m: m | {"model": "fcn"}, "must agree"),
    "wrong input size": (input_edit(input_size=[96, 96]), "does not fit it"),
    "dynamic size claimed": (input_edit(dynamic_size=True), "does not fit it"),
    "uint8 claimed": (input_edit(dtype="uint8"), "metadata says 'uint8'"),
    "a bad config": (lambda m: m | {"config": {"model": {"nme": 1}}}, "unknown key"),
    "another version": (lambda m: m | {"format_version": 7}, "format 7"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_metadata_is_a_one_line_error(case, exported, tmp_path):
    edit, message = HOSTILE[case]
    path = rewritten(exported, tmp_path, edit)
    with pytest.raises(CheckpointError) as e:
        visionkit.load(path)
    assert message in one_line(e) and path in str(e.value)


def test_labels_beyond_the_class_names_are_refused_when_they_come(trained, exported, tmp_path):
    def two_classes(meta):  # consistent metadata, but the graph still scores 5 classes
        meta["config"]["model"]["num_classes"] = 2
        return meta | {"class_names": meta["class_names"][:2], "cat_ids": meta["cat_ids"][:2]}

    model = visionkit.load(rewritten(exported, tmp_path, two_classes), score_thresh=0.0)
    with pytest.raises(
        CheckpointError,
        match=r"graph gives label [2-4], but its metadata names 2 classes \(labels 0\.\.1\)$",
    ):
        model.predict(trained[2])


def test_fcn_logits_channels_must_match_the_class_names(tmp_path):
    cfg = load_config(None, ["model.name=fcn", *TINY["fcn"]])
    torch.manual_seed(0)
    path = export_onnx(build_model(cfg.model).eval(), cfg, tmp_path / "fcn.onnx",
                       ["background", "a", "b"], [0, 1, 2])  # fmt: skip

    def four_classes(meta):
        meta["config"]["model"]["num_classes"] = 4
        return meta | {"class_names": [*meta["class_names"], "c"], "cat_ids": [0, 1, 2, 3]}

    with pytest.raises(CheckpointError, match="gives 3 class scores, its metadata names 4"):
        OnnxPredictor(rewritten(path, tmp_path, four_classes))


def test_graph_inputs_table_matches_every_models_graph():
    assert set(GRAPH_INPUTS) == set(MODELS)
    for name in MODELS:
        model = build_model(load_config(None, [f"model.name={name}", *TINY[name]]).model)
        assert tuple(export_graph(model, "float32").inputs) == GRAPH_INPUTS[name], name


# per test-time key: a tiny model that reads it, and another value
KEY_CASES = {
    "model.yolo.score_thresh": ("yolo_v1", 0.5),
    "model.yolo.nms_thresh": ("yolo_v1", 0.1),
    "model.yolo.max_detections": ("yolo_v1", 3),
    "model.roi_head.score_thresh": ("faster_rcnn", 0.5),
    "model.roi_head.nms_thresh": ("faster_rcnn", 0.1),
    "model.roi_head.max_detections": ("faster_rcnn", 3),
    "model.rpn.pre_nms_top_n_test": ("faster_rcnn", 10),
    "model.rpn.post_nms_top_n_test": ("faster_rcnn", 5),
    "model.selective_search.mode": ("fast_rcnn", "quality"),
    "model.selective_search.max_proposals": ("fast_rcnn", 5),
    "model.rcnn.svm.score_thresh": ("rcnn", 0.5),
    "model.rcnn.chunk_size": ("rcnn", 3),
    "model.backbone.pretrained": ("yolo_v1", "BACKBONE"),
    "model.init_weights": ("yolo_v1", "BACKBONE"),
}


def test_every_test_time_key_has_a_case():
    assert set(KEY_CASES) == set(TEST_TIME_MODEL_KEYS)


@pytest.mark.parametrize("key", sorted(KEY_CASES))
def test_a_test_time_key_shapes_no_weight_and_no_training_loss(key, tmp_path):
    """Built with the key changed, the model has the same tensors; with the checkpoint's weights
    loaded it gives the same training losses: the key is read only at test time (or only to
    initialize weights that the checkpoint's replace)."""
    name, value = KEY_CASES[key]
    if value == "BACKBONE":  # a local weights file of the backbone
        torch.manual_seed(5)
        value = str(tmp_path / "lenet.pth")
        torch.save(build_backbone(BackboneConfig(name="lenet")).state_dict(), value)
    base_overrides = [f"model.name={name}", *TINY[name]]
    torch.manual_seed(0)
    base = build_model(load_config(None, base_overrides).model)
    torch.manual_seed(1)
    changed = build_model(load_config(None, [*base_overrides, f"{key}={value}"]).model)
    ours, theirs = base.state_dict(), changed.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    changed.load_state_dict(ours)
    losses = []
    for model in (base.train(), changed.train()):
        torch.manual_seed(3)
        losses.append({k: v.item() for k, v in model.loss(images(), targets(model)).items()})
    assert losses[0] == losses[1] and len(losses[0]) > 0


def test_visualize_and_svm_training_refuse_a_model_change(trained, tmp_path):
    weights, overrides, image, _ = trained
    vis = load_script("tools/visualize.py")
    args = ["--config", YOLO_CONFIG, "--weights", str(weights)]
    with pytest.raises(ConfigError, match=r"model.yolo.grid_size 12 -> 5"):
        vis.main([*args, "--output", str(tmp_path / "vis"), *overrides, "model.yolo.grid_size=5"])
    assert not (tmp_path / "vis" / "filters.png").exists()
    assert vis.main([*args, "--output", str(tmp_path / "vis2"), *overrides]) == 0
    assert (tmp_path / "vis2" / "filters.png").is_file()
    svms = load_script("tools/train_rcnn_svms.py")
    rcnn_config = str(ROOT / "visionkit" / "configs" / "rcnn_shapes.yaml")
    rcnn = tmp_path / "rcnn.pth"  # the refusal comes before any weight is read
    torch.save({"model": {}, "model_name": "rcnn",
                "config": config_to_dict(load_config(rcnn_config))}, rcnn)  # fmt: skip
    with pytest.raises(ConfigError, match=r"model.rcnn.fc_dim \d+ -> 64"):
        svms.main(["--config", rcnn_config, "--weights", str(rcnn),
                   "--out", str(tmp_path / "svm.pth"), "model.rcnn.fc_dim=64"])  # fmt: skip
    assert not (tmp_path / "svm.pth").exists()


def test_export_from_python_never_writes_over_the_loaded_file(trained, tmp_path):
    weights, _, _, _ = trained
    copy = tmp_path / "best.pth"
    shutil.copy(weights, copy)
    before = copy.read_bytes()
    model = visionkit.load(copy)
    with pytest.raises(ConfigError, match="is the model's file"):
        model.export(copy)
    assert copy.read_bytes() == before
