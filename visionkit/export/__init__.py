"""ONNX export of every model (``onnx.py``, the traced graphs in ``graphs.py``) and an
onnxruntime predictor with the interface of ``visionkit.inference.Predictor`` (``runtime.py``).
``onnx`` and ``onnxruntime`` are imported when used (the ``export`` extra)."""

from visionkit.export.onnx import export_onnx
from visionkit.export.runtime import OnnxPredictor

__all__ = ["OnnxPredictor", "export_onnx"]
