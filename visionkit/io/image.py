"""The image reader every dataset, proposal search, inference source and tool goes through, and
the one conversion of images already in memory (PIL images, float pixels) to what it gives."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from visionkit.errors import DataError, UnreadableImageError, shown

# PIL modes no image file holds, and the mode each is first converted to (premultiplied alpha,
# HSV); then, as every other mode, saved to a file in memory and read back by read_image's decoder
# file suffixes (lower case) of the image formats read_image decodes: what an image folder or list
# holds (inference sources, YOLO datasets)
IMAGE_EXTS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".ppm", ".pgm", ".pbm"}
)
PIL_UNSAVED_MODES = {"La": "LA", "RGBa": "RGBA", "HSV": "RGB"}
# modes read without writing a file: their channels as a PNG of them is read (alpha dropped,
# not multiplied in; grey repeated); OpenCV reads an RGBA TIFF's colours multiplied by alpha
PIL_DIRECT_MODES = {"RGB": slice(0, 3), "RGBA": slice(0, 3), "L": None}


def _decode(data: bytes, name: str, orientation: bool) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of an image file's bytes (``name`` in messages)."""
    name, where = shown(name), name
    if not data:
        raise UnreadableImageError(f"cannot read image {name}: empty file", where)
    # OpenCV 4 decodes a JPEG cut short into a partly grey image (libjpeg only warns); every
    # complete JPEG holds an end-of-image marker
    if data.startswith(b"\xff\xd8") and b"\xff\xd9" not in data:
        raise UnreadableImageError(f"cannot read image {name}: truncated JPEG", where)
    flags = cv2.IMREAD_COLOR | (0 if orientation else cv2.IMREAD_IGNORE_ORIENTATION)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:  # e.g. a header announcing more pixels than OpenCV's decoding limit
        img = None
    if img is None:
        raise UnreadableImageError(f"cannot read image {name}: corrupt or not an image", where)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


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
        raise UnreadableImageError(f"cannot read image {shown(path)}: missing", str(path)) from None
    except OSError as e:
        what = e.strerror or type(e).__name__
        raise UnreadableImageError(f"cannot read image {shown(path)}: {what}", str(path)) from None
    except ValueError:  # a NUL character in the path
        raise UnreadableImageError(
            f"cannot read image {shown(path)}: not a path", str(path)
        ) from None
    return _decode(data, str(path), orientation)


def read_image_tensor(path: str | Path) -> Tensor:
    """:func:`read_image` as ``(3, H, W)`` float32 RGB in [0, 1], as the datasets give images."""
    return image_to_float(torch.from_numpy(read_image(path)).permute(2, 0, 1))


def image_to_float(pixels: Tensor) -> Tensor:
    """uint8 pixels (any shape: ``(3, H, W)``, ``(N, 3, H, W)``, ...) -> float32 ``v / 255`` in
    [0, 1], as models take images. The one uint8 -> float conversion of the toolkit."""
    return pixels.float() / 255


def image_to_uint8(image: Tensor) -> Tensor:
    """Float pixels in [0, 1] (any shape) -> uint8 ``round(255 v)`` (float32 arithmetic, halves
    to even, clamped to 0..255), as an 8-bit image file holds them. The one float -> uint8
    conversion of the toolkit (:func:`unit_float_to_uint8` is its numpy twin)."""
    return image.detach().float().mul(255).round().clamp(0, 255).to(torch.uint8)


def check_unit_range(low: float, high: float, what: str) -> None:
    """Float pixels must be finite and lie in [0, 1]: ``low``/``high`` are their minimum and
    maximum (NaN when any is NaN, as numpy's and torch's min/max give). ``what`` names them
    (``"tensor 0: a float tensor"``).

    Raises:
        DataError: one line naming the values found (and, for 0..255, the fix).
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        found = "NaN" if math.isnan(low) or math.isnan(high) else "infinite values"
        raise DataError(f"{what} must hold finite values in [0, 1]; this one holds {found}")
    if low >= 0.0 and high <= 1.0:
        return
    hint = " (divide by 255)" if low >= 0.0 and high <= 255.0 else ""
    low, high = (float(f"{v:.6g}") for v in (low, high))
    raise DataError(f"{what} must hold values in [0, 1]; this one holds {low}..{high}{hint}")


def unit_float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] (:func:`check_unit_range`) as uint8 ``round(255 * v)``, as an 8-bit
    image file holds them (float32 arithmetic, halves to even)."""
    return np.rint(values.astype(np.float32) * np.float32(255)).astype(np.uint8)


def _pil_savable(image: Any, name: str) -> Any:
    """``image`` (a PIL image, ``name`` in messages) in a mode a TIFF file holds and OpenCV reads:
    32-bit integers (``I``) as 16-bit when they fit (a 16-bit file's values), 32-bit floats
    (``F``) in [0, 1] as 8 bits, native-order 16-bit as little-endian, the modes of
    ``PIL_UNSAVED_MODES`` converted; other modes as they are.

    Raises:
        DataError: an empty image, ``I`` beyond 0..65535, ``F`` not finite or outside [0, 1],
            pixels PIL cannot load (a lazily opened file, truncated).
    """
    from PIL import Image

    w, h = image.size
    if w == 0 or h == 0:
        raise DataError(f"{name}: an empty image ({w}x{h} pixels)")
    mode = image.mode
    try:
        if mode in PIL_UNSAVED_MODES:
            return image.convert(PIL_UNSAVED_MODES[mode])
        if mode == "I;16N":  # Pillow converts between 16-bit modes through 8 bits: numpy keeps 16
            return Image.fromarray(np.asarray(image).astype("<u2"))
        if mode == "I":
            values = np.asarray(image)
            low, high = int(values.min()), int(values.max())
            if low < 0 or high > 65535:
                raise DataError(
                    f"{name}: a PIL image of mode I must hold values in 0..65535 (16 bits, as an "
                    f"image file holds them); this one holds {low}..{high}"
                )
            return Image.fromarray(values.astype("<u2"))
        if mode == "F":
            values = np.asarray(image)
            check_unit_range(values.min(), values.max(), f"{name}: a PIL image of mode F")
            return Image.fromarray(unit_float_to_uint8(values))
    except OSError as e:
        raise DataError(f"{name}: cannot read its pixels (mode {mode}: {e})") from None
    return image


def check_pil_image(image: Any, name: str) -> None:
    """Refuse now what :func:`pil_image_rgb` would refuse on its values (an empty image, ``I`` or
    ``F`` values out of range; a DataError naming ``name``), before any work."""
    _pil_savable(image, name)


def pil_image_rgb(image: Any, name: str) -> np.ndarray:
    """A PIL image of any mode as ``(H, W, 3)`` uint8 RGB, exactly as :func:`read_image` reads
    the same image saved to a PNG (else TIFF) file (alpha dropped; 16-bit grey: its high byte;
    CMYK, YCbCr, LAB, palettes converted by the same decoder): RGB, RGBA and 8-bit grey as
    such a file gives them (``PIL_DIRECT_MODES``), every other mode saved to a TIFF in memory and
    decoded there, its pixels as they are (no EXIF orientation). ``I`` (32-bit integers) is read as the 16-bit file it fits, ``F``
    (32-bit floats) as float pixels in [0, 1].

    Raises:
        DataError: an empty image, ``I`` or ``F`` values out of range, pixels PIL cannot load,
            a mode no file holds and PIL cannot convert to RGB (one line naming ``name``).
    """
    savable = _pil_savable(image, name)
    try:
        if savable.mode in PIL_DIRECT_MODES:
            pixels = np.asarray(savable)
            if pixels.ndim == 2:
                return np.repeat(pixels[..., None], 3, axis=2)
            return np.array(pixels[..., PIL_DIRECT_MODES[savable.mode]])  # a writable copy
        buffer = io.BytesIO()
        savable.save(buffer, "TIFF")  # the fastest file to write and read
    except (OSError, ValueError) as e:  # pixels PIL cannot load, or a mode no file holds
        try:
            return np.array(savable.convert("RGB"))
        except (OSError, ValueError):
            raise DataError(f"{name}: cannot read its pixels (mode {image.mode}: {e})") from None
    return _decode(buffer.getvalue(), name, orientation=False)
