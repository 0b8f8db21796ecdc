"""The image reader every dataset, proposal search, inference source and tool goes through."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from visionkit.errors import UnreadableImageError


def read_image(path: str | Path, orientation: bool = True) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB (grey and 16-bit images converted), turned by its EXIF orientation
    as a viewer shows it unless ``orientation`` is False (the pixels as stored).

    Raises:
        UnreadableImageError: missing, unreadable, empty, truncated or not an image (one line,
            naming the file).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UnreadableImageError(f"cannot read image {path}: missing", str(path)) from None
    except OSError as e:
        what = e.strerror or type(e).__name__
        raise UnreadableImageError(f"cannot read image {path}: {what}", str(path)) from None
    if not data:
        raise UnreadableImageError(f"cannot read image {path}: empty file", str(path))
    # OpenCV 4 decodes a JPEG cut short into a partly grey image (libjpeg only warns); every
    # complete JPEG holds an end-of-image marker
    if data.startswith(b"\xff\xd8") and b"\xff\xd9" not in data:
        raise UnreadableImageError(f"cannot read image {path}: truncated JPEG", str(path))
    flags = cv2.IMREAD_COLOR | (0 if orientation else cv2.IMREAD_IGNORE_ORIENTATION)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        raise UnreadableImageError(f"cannot read image {path}: corrupt or not an image", str(path))
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image_tensor(path: str | Path) -> Tensor:
    """:func:`read_image` as ``(3, H, W)`` float32 RGB in [0, 1], as the datasets give images."""
    return torch.from_numpy(read_image(path)).permute(2, 0, 1).float() / 255
