"""ONNX export of every model (``onnx.py``, the traced graphs in ``graphs.py``) with the metadata
record that runs the file (``metadata.py``; ``visionkit.inference.onnx_backend`` runs it under
onnxruntime). ``onnx`` is imported when used (the ``export`` extra)."""

from visionkit.export.onnx import export_onnx

__all__ = ["export_onnx"]
