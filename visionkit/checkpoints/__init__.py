"""Loading a trained model, below training and inference alike: checkpoint files written
atomically and read without unpickling, weight specs (``torchvision:NAME[=PATH]``) and their
conversion (``store.py``, ``torchvision.py``), weights into a model, strictly or by matching
tensors (``weights.py``), and the device it runs on
(``device.py``, with whether it computes bfloat16 natively). ``engine``, ``inference``,
``export`` and the tools import it; it imports nothing above ``models``."""

from visionkit.checkpoints.device import native_bfloat16, place_model, select_device
from visionkit.checkpoints.store import load_checkpoint, save_checkpoint, weights_inputs
from visionkit.checkpoints.weights import (
    checkpoint_classes,
    init_from_checkpoint,
    load_matching_weights,
    load_model_weights,
)

__all__ = [
    "checkpoint_classes",
    "init_from_checkpoint",
    "load_checkpoint",
    "load_matching_weights",
    "load_model_weights",
    "native_bfloat16",
    "place_model",
    "save_checkpoint",
    "select_device",
    "weights_inputs",
]
