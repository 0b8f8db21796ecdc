"""Applying a trained model to images, folders, globs, path lists, videos and webcams.

``sources.py`` reads them (unreadable ones reported, not fatal), ``predictor.py`` loads a
checkpoint and predicts batches, ``draw.py`` draws boxes and segmentation overlays,
``writers.py`` writes annotated images, label PNGs, videos and COCO JSON, and ``runner.py`` ties
them together (``tools/infer.py`` is its command line). ``api.py`` is the Python side:
``visionkit.load`` and ``VisionModel`` (predict, evaluate, export), with a ``Result`` per image
(``results.py``) and the evaluation ``tools/eval.py`` also runs (``evaluation.py``).
"""

from visionkit.inference.predictor import Predictor, load_predictor
from visionkit.inference.runner import InferenceSummary, run_inference
from visionkit.inference.sources import Frame, Skipped, Source, read_frames, resolve_sources
from visionkit.inference.writers import Window, gui_unavailable

__all__ = [
    "Frame",
    "InferenceSummary",
    "Predictor",
    "Skipped",
    "Source",
    "Window",
    "gui_unavailable",
    "load_predictor",
    "read_frames",
    "resolve_sources",
    "run_inference",
]
