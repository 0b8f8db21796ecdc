"""The visionkit record of an exported ``.onnx`` file (``onnx.py``'s ``export_metadata`` writes
it), read back and checked against the graph it describes before anything runs.

The record is what ``OnnxPredictor`` trusts to feed the graph and to name its outputs, so a file
whose record was edited, truncated or copied from another model is refused in one line
(CheckpointError, exit 2): text that is not JSON; a key missing or of another type; a model,
task or config that disagree with each other; inputs or outputs other than the graph's (and
than the named model's graph has: another model's graph renamed); class names and category ids
other than the config's class count (and, for FCN, than the graph's ``logits`` channels); an
input size or dtype other than the graph's ``images`` input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visionkit.config import apply_overrides
from visionkit.config.schema import MAX_SIDE, Config
from visionkit.errors import CheckpointError, ConfigError
from visionkit.export.graphs import INPUT_DTYPES
from visionkit.export.onnx import FORMAT_VERSION, METADATA_KEY
from visionkit.io.structured import loads_json
from visionkit.models import model_task
from visionkit.models.base import DETECTION_OUTPUTS, INSTANCE_OUTPUTS, SEGMENTATION_OUTPUTS
from visionkit.models.preprocess import RESIZE_MODES

# each model's graph inputs (graphs.py; tests/test_checkpoint_truth.py checks them against it)
GRAPH_INPUTS: dict[str, tuple[str, ...]] = {
    "yolo_v1": ("images",),
    "faster_rcnn": ("images", "image_sizes"),
    "mask_rcnn": ("images", "image_sizes"),
    "fast_rcnn": ("images", "image_sizes", "proposals"),
    "sppnet": ("images", "image_sizes", "proposals"),
    "rcnn": ("images", "image_sizes", "proposals"),
    "fcn": ("images", "image_sizes"),
}
TASK_OUTPUTS = {
    "detection": DETECTION_OUTPUTS,
    "instance": INSTANCE_OUTPUTS,
    "sem_seg": SEGMENTATION_OUTPUTS,
}
ONNX_TYPES = {"float32": "tensor(float)", "uint8": "tensor(uint8)"}  # images' element type
FIELDS: dict[str, type] = {
    "model": str, "task": str, "class_names": list, "cat_ids": list, "inputs": list,
    "outputs": list, "input": dict, "config": dict,
}  # fmt: skip
INPUT_FIELDS: dict[str, type] = {
    "dtype": str, "dynamic_size": bool, "resize": str, "input_size": list, "min_size": int,
    "max_size": int, "size_divisor": int,
}  # fmt: skip


def parse_metadata(record: str, path: str | Path) -> Any:
    """The record's JSON text -> its value, read by :func:`visionkit.io.structured.loads_json`
    (depth, number and encoding limits); a one-line CheckpointError if it is not JSON."""
    return loads_json(record, f"{path}: its visionkit metadata", error=CheckpointError)


def _check_fields(
    record: dict[str, Any], fields: dict[str, type], path: str | Path, prefix: str
) -> None:
    """Each of ``fields`` is in ``record`` with its type (a bool is not a number here)."""
    for key, kind in fields.items():
        value = record.get(key)
        if not (isinstance(value, kind) and isinstance(value, bool) == (kind is bool)):
            got = "missing" if key not in record else f"a {type(value).__name__}"
            raise CheckpointError(
                f"{path}: its visionkit metadata's '{prefix}{key}' is {got}; expected a "
                f"{kind.__name__} (a file written by visionkit export holds it)"
            )


def _config(meta: dict[str, Any], path: str | Path) -> Config:
    """The stored config, checked as a YAML config is, and agreeing with the record."""
    try:
        cfg = apply_overrides(meta["config"], None, f"{path} metadata")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    name, names, cat_ids = meta["model"], meta["class_names"], meta["cat_ids"]
    if name not in GRAPH_INPUTS or cfg.model.name != name or meta["task"] != model_task(name):
        raise CheckpointError(
            f"{path}: its metadata names model '{name}' (task '{meta['task']}') and its config "
            f"'{cfg.model.name}'; they must agree on one of {', '.join(GRAPH_INPUTS)}"
        )
    typed = all(isinstance(n, str) for n in names) and all(
        isinstance(c, int) and not isinstance(c, bool) for c in cat_ids
    )
    if not typed or not len(names) == len(cat_ids) == cfg.model.num_classes:
        raise CheckpointError(
            f"{path}: its metadata holds {len(names)} class names and {len(cat_ids)} category "
            f"ids for a model of {cfg.model.num_classes} classes (model.num_classes); each "
            "class needs one name (text) and one id (an integer)"
        )
    return cfg


def _check_graph(meta: dict[str, Any], session: Any, path: str | Path) -> None:
    """The record's inputs, outputs, image size and dtype against the session's graph."""
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    want_in, want_out = list(GRAPH_INPUTS[meta["model"]]), list(TASK_OUTPUTS[meta["task"]])
    if not meta["inputs"] == inputs == want_in or not meta["outputs"] == outputs == want_out:
        raise CheckpointError(
            f"{path}: its graph takes {inputs} and gives {outputs}, its metadata says "
            f"{meta['inputs']} -> {meta['outputs']}; a {meta['model']} graph is {want_in} -> "
            f"{want_out} (another model's graph?)"
        )
    p = meta["input"]
    images = session.get_inputs()[0]
    if p["dtype"] not in INPUT_DTYPES or images.type != ONNX_TYPES[p["dtype"]]:
        raise CheckpointError(
            f"{path}: its graph's images are {images.type}, its metadata says {p['dtype']!r}"
        )
    size = [d for d in images.shape[2:] if isinstance(d, int)] if len(images.shape) == 4 else []
    fixed = p["resize"] == "fixed"
    sizes_ok = all(isinstance(v, int) and 0 < v <= MAX_SIDE for v in p["input_size"])
    if (
        len(images.shape) != 4
        or images.shape[1] != 3
        or p["resize"] not in RESIZE_MODES
        or not sizes_ok
        or len(p["input_size"]) not in ((2,) if fixed else (0, 2))
        or not all(1 <= p[k] <= MAX_SIDE for k in ("min_size", "max_size", "size_divisor"))
        or (size and (size != p["input_size"] or p["dynamic_size"] or not fixed))
        or (size and any(side % p["size_divisor"] for side in size))  # padding would change it
        or (not size and not p["dynamic_size"])
    ):
        raise CheckpointError(
            f"{path}: its graph's images are {images.shape}, its metadata's input "
            f"{p['resize']} {p['input_size']} (dynamic size: {p['dynamic_size']}, min "
            f"{p['min_size']}, max {p['max_size']}, divisor {p['size_divisor']}) does not fit it"
        )
    if meta["task"] == "instance":
        masks = session.get_outputs()[outputs.index("masks")].shape  # sizes, or traced names
        if len(masks) != 4 or (isinstance(masks[1], int) and masks[1] != 1):
            raise CheckpointError(
                f"{path}: its graph's masks are {masks}; an instance model gives (detections, 1, "
                "M, M) mask probabilities"
            )
    if meta["task"] == "sem_seg":
        channels = session.get_outputs()[0].shape[1]
        if isinstance(channels, int) and channels != len(meta["class_names"]):
            raise CheckpointError(
                f"{path}: its graph gives {channels} class scores, its metadata names "
                f"{len(meta['class_names'])} classes"
            )


def read_metadata(session: Any, path: str | Path) -> tuple[dict[str, Any], Config]:
    """``(record, config)`` of an ``onnxruntime.InferenceSession`` of ``path``, checked against
    its graph; a one-line CheckpointError for a missing, malformed or disagreeing record."""
    record = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if record is None:
        raise CheckpointError(
            f"{path}: an ONNX model without visionkit metadata (export it with visionkit export)"
        )
    meta = parse_metadata(record, path)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its visionkit metadata is not a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: visionkit ONNX format {meta.get('format_version')!r:.40}; this version reads "
            f"{FORMAT_VERSION}"
        )
    _check_fields(meta, FIELDS, path, "")
    _check_fields(meta["input"], INPUT_FIELDS, path, "input.")
    cfg = _config(meta, path)
    _check_graph(meta, session, path)
    return meta, cfg
