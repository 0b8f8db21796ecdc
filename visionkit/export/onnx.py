"""Export a visionkit model to ONNX: the whole detector or segmenter in one graph (normalization,
decoding, score threshold, NMS; ``graphs.py``), with what is needed to run it in the file's
``metadata_props`` (``visionkit.inference.onnx_backend`` runs it).

The exporter is PyTorch's TorchScript-based one (``torch.onnx.export(..., dynamo=False)``):
torchvision registers its ONNX symbolics for exactly that exporter (``nms`` ->
``NonMaxSuppression``, ``roi_align`` -> ``RoiAlign`` (opset 16 and later: ``aligned``),
``roi_pool`` -> ``MaxRoiPool``), and tracing records the data-dependent sizes of ``nonzero`` and
NMS as ONNX's dynamic shapes without the guards on them that ``torch.export`` (``dynamo=True``)
must prove. The traced code has no Python loop over images and no branch on a data-dependent
size (``models/postprocess.py``), so the graph serves any batch size and empty outputs.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionkit.config.loader import config_to_dict
from visionkit.config.schema import Config
from visionkit.errors import ConfigError
from visionkit.export.graphs import export_graph
from visionkit.io.atomic import write_bytes
from visionkit.io.image import image_to_uint8

METADATA_KEY = "visionkit"  # metadata_props key of the JSON record
FORMAT_VERSION = 1
DEFAULT_OPSET = 17
MIN_OPSET = 16  # RoiAlign's coordinate_transformation_mode (aligned RoIAlign)
FIXED_SIZE_MODELS = ("yolo_v1",)  # YOLOv1's head is sized for its input (a fixed S x S grid)


def _example_inputs(
    model: nn.Module, inputs: Sequence[str], dtype: str
) -> tuple[torch.Tensor, ...]:
    """Two images as the Preprocessor batches them (different sizes where it keeps the aspect
    ratio), their sizes and a few proposals: the inputs the graph is traced with."""
    p, d = model.preprocess, model.preprocess.size_divisor
    if p.input_size:
        h, w = p.input_size
    elif p.resize == "shorter_side":
        h, w = p.min_size, p.min_size
    else:
        h, w = max(64, 4 * d), max(80, 5 * d)
    g = torch.Generator().manual_seed(0)
    batch = p([torch.rand(3, h, w, generator=g), torch.rand(3, h, max(w * 3 // 4, 1), generator=g)])
    images = batch.tensor * p.pixel_std + p.pixel_mean  # back to [0, 1]
    if dtype == "uint8":
        images = image_to_uint8(images)
    out = [images, batch.image_sizes.long()]
    if "proposals" in inputs:
        h, w = (float(v) for v in batch.image_sizes[1])
        boxes = [[0.0, 0.0, w, h], [w / 4, h / 4, w / 2, h / 2], [w / 3, h / 5, w * 0.9, h * 0.8]]
        out.append(torch.tensor([[i, *b] for i in (0, 1) for b in boxes]))
    return tuple(out[: len(inputs)])


def _dynamic_axes(inputs: Sequence[str], outputs: Sequence[str], size: bool) -> dict:
    """Batch (and, with ``size``, height and width) of every input and output."""
    image_axes = {0: "batch", 2: "height", 3: "width"} if size else {0: "batch"}
    axes: dict[str, dict[int, str]] = {"images": image_axes, "image_sizes": {0: "batch"}}
    axes |= {"proposals": {0: "regions"}, "logits": image_axes}
    axes["sem_seg"] = {0: "batch", 1: "height", 2: "width"} if size else {0: "batch"}
    detections = ("boxes", "scores", "labels", "batch_index", "masks")
    axes |= {name: {0: "detections"} for name in detections}
    return {name: axes[name] for name in (*inputs, *outputs)}


def export_metadata(
    cfg: Config,
    class_names: Sequence[str],
    cat_ids: Sequence[int],
    inputs: Sequence[str],
    outputs: Sequence[str],
    input_dtype: str,
    dynamic_size: bool,
    model: nn.Module,
) -> dict[str, Any]:
    """The JSON record the file carries: everything ``OnnxPredictor`` needs beside the graph
    (``model``: the exported model, for its task and preprocessing)."""
    p = model.preprocess
    return {
        "format_version": FORMAT_VERSION,
        "model": cfg.model.name,
        "task": model.task,
        "class_names": list(class_names),
        "cat_ids": [int(c) for c in cat_ids],
        "inputs": list(inputs),
        "outputs": list(outputs),
        "input": {
            "dtype": input_dtype,
            "range": "0..255" if input_dtype == "uint8" else "0..1",
            "layout": "NCHW RGB",
            "dynamic_size": dynamic_size,
            "resize": p.resize,
            "input_size": list(p.input_size or []),
            "min_size": p.min_size,
            "max_size": p.max_size,
            "size_divisor": p.size_divisor,
        },
        "config": config_to_dict(cfg),
    }


def export_onnx(
    model: nn.Module,
    cfg: Config,
    path: str | Path,
    class_names: Sequence[str],
    cat_ids: Sequence[int],
    *,
    opset: int = DEFAULT_OPSET,
    input_dtype: str = "float32",
    dynamic_size: bool | None = None,
) -> Path:
    """Write ``model`` (built from ``cfg.model``, weights loaded) as an ONNX file at ``path``,
    atomically: a failure (a full disk) leaves the previous file or none, never a truncated one.

    Args:
        model: a model of ``visionkit.models.MODELS`` (copied to the CPU; left as it is).
        cfg: its resolved config, stored in the file with the rest of the metadata.
        class_names, cat_ids: label -> class name / the dataset's category id.
        opset: ONNX opset (at least 16).
        input_dtype: ``float32`` (RGB in ``[0, 1]``) or ``uint8`` (``0..255``) ``images``.
            float32 matches the PyTorch model exactly; with uint8 ``OnnxPredictor`` rounds the
            resized image to ``0..255`` (exact where no resizing happens).
        dynamic_size: dynamic height and width of ``images``; None: wherever the model allows
            it (every model but YOLOv1, whose head fixes its input size).

    Returns:
        ``path``. The graph's inputs and outputs: ``visionkit/export/graphs.py``.
    """
    name = cfg.model.name
    if opset < MIN_OPSET:
        raise ConfigError(f"--opset {opset}: the export needs opset {MIN_OPSET} or later")
    if dynamic_size and name in FIXED_SIZE_MODELS:
        raise ConfigError(f"{name} takes its fixed model.input_size only: no dynamic size")
    dynamic_size = name not in FIXED_SIZE_MODELS if dynamic_size is None else dynamic_size
    if not dynamic_size and model.preprocess.resize != "fixed":
        raise ConfigError(
            f"a static input size needs a fixed one: {name} resizes '{model.preprocess.resize}' "
            "(set model.input_size, and model.resize.mode fixed for two-stage detectors)"
        )
    model = copy.deepcopy(model).cpu().float().eval()
    graph = export_graph(model, input_dtype).eval()
    example = _example_inputs(model, graph.inputs, input_dtype)
    graph_file = io.BytesIO()  # the file is written once, whole, with its metadata
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the constants it records
        torch.onnx.export(
            graph,
            example,
            graph_file,
            dynamo=False,
            opset_version=opset,
            input_names=list(graph.inputs),
            output_names=list(graph.outputs),
            dynamic_axes=_dynamic_axes(graph.inputs, graph.outputs, dynamic_size),
        )
    import onnx

    proto = onnx.load_from_string(graph_file.getvalue())
    meta = export_metadata(
        cfg, class_names, cat_ids, graph.inputs, graph.outputs, input_dtype, dynamic_size, model
    )
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    path = write_bytes(path, proto.SerializeToString())
    return path
