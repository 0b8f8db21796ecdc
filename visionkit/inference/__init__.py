"""Applying a trained model to images, folders, globs, path lists, videos and webcams.

``sources.py`` reads them (unreadable ones reported, not fatal); ``backend.py`` is the one
interface of a model that predicts batches, which ``predictor.py`` (a checkpoint, in PyTorch) and
``onnx_backend.py`` (an exported file, under onnxruntime) implement; ``draw.py`` draws boxes and
segmentation overlays, ``writers.py`` writes annotated images, label PNGs, videos and COCO JSON,
and ``runner.py`` ties them together (``visionkit predict`` is its command line). ``api.py`` is the
Python side: ``visionkit.load`` and ``VisionModel`` (predict, evaluate, export), with a
``Result`` per image (``results.py``; ``selection.py`` checks what ``Result[key]`` selects) and
the evaluation ``visionkit eval`` also runs (``evaluation.py``).
"""

from visionkit.inference.backend import PredictorBackend
from visionkit.inference.onnx_backend import OnnxPredictor
from visionkit.inference.predictor import Predictor, load_predictor
from visionkit.inference.runner import InferenceSummary, run_inference
from visionkit.inference.sources import Frame, Skipped, Source, read_frames, resolve_sources
from visionkit.inference.writers import Window, gui_unavailable

__all__ = [
    "Frame",
    "InferenceSummary",
    "OnnxPredictor",
    "Predictor",
    "PredictorBackend",
    "Skipped",
    "Source",
    "Window",
    "gui_unavailable",
    "load_predictor",
    "read_frames",
    "resolve_sources",
    "run_inference",
]
