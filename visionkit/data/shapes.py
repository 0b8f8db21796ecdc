"""The embedded default dataset: synthetic shapes written as real COCO and VOC files.

``ensure_shapes`` generates a split on first use into a cache folder and returns its paths; later
calls reuse it. Generation is deterministic from the split's seed (train: 1, val: 2) and atomic
(a temp folder renamed into place), so an interrupted run never leaves half a dataset.

Each image (``image_size`` square, JPEG) holds 1-5 objects of 5 classes (circle, square,
triangle, star, cross) with sizes spanning COCO's small (< 32^2 px), medium and large (> 96^2 px)
ranges, random colours, rotations, occlusion (later shapes drawn over earlier ones, at most about
half of an object hidden), on textured, noisy backgrounds. Written per split::

    <root>/shapes/<version>-<split>-s<seed>-n<count>-<size>/
        JPEGImages/<id>.jpg
        annotations/instances_<split>.json      COCO: bbox xywh, area, polygons, iscrowd 0
        Annotations/<id>.xml                    VOC: 1-based pixel boxes
        ImageSets/Main/<split>.txt, ImageSets/Segmentation/<split>.txt
        SegmentationClass/<id>.png              palette PNG: 0 background, c+1 class, 255 border
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from xml.etree import ElementTree as ET

import cv2
import numpy as np

from visionkit.io.atomic import write_error
from visionkit.structures.boxes import convert_boxes
from visionkit.structures.labels import IGNORE_LABEL
from visionkit.utils.cli import track

VERSION = "shapes-v1"
CLASSES = ("circle", "square", "triangle", "star", "cross")
SPLITS = {"train": (1, 2000), "val": (2, 300)}  # seed, default number of images
DEFAULT_SIZE = 256


def default_root() -> Path:
    """``$VISIONKIT_CACHE`` or ``~/.cache/visionkit``."""
    return Path(os.environ.get("VISIONKIT_CACHE", Path.home() / ".cache" / "visionkit"))


def _polygon(kind: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """``(K, 2)`` float vertices of a shape of circumradius ``r`` (circle: 48-gon)."""
    if kind == 0:
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif kind == 1:
        t = np.array([45, 135, 225, 315]) * np.pi / 180
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif kind == 2:
        t = np.array([-90, 30, 150]) * np.pi / 180
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif kind == 3:
        t = np.arange(10) * np.pi / 5 - np.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([np.cos(t) * rad, np.sin(t) * rad], 1)
    else:
        a, b = 1.0, 0.33
        pts = (
            np.array(
                [
                    [-b, -a],
                    [b, -a],
                    [b, -b],
                    [a, -b],
                    [a, b],
                    [b, b],
                    [b, a],
                    [-b, a],
                    [-b, b],
                    [-a, b],
                    [-a, -b],
                    [-b, -b],
                ]  # fmt: skip
            )
            / np.sqrt(a * a + b * b)
            * np.sqrt(2)
            * 0.75
        )
    rot = angle if kind in (1, 2, 3, 4) else 0.0
    c, s = np.cos(rot), np.sin(rot)
    pts = pts @ np.array([[c, s], [-s, c]])
    return pts * r + np.array([cx, cy])


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background: gradient + noise + a few random lines and blobs (uint8 RGB)."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, size)[:, None, None]
    img = c0 * (1 - t) + c1 * t
    if rng.random() < 0.5:
        img = img.transpose(1, 0, 2)
    img = np.broadcast_to(img, (size, size, 3)).copy()
    img += rng.normal(0, rng.uniform(3, 18), (size, size, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(0, 6)):
        p1, p2 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.line(img, tuple(map(int, p1)), tuple(map(int, p2)), color, int(rng.integers(1, 3)))
    for _ in range(rng.integers(0, 4)):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        major = int(rng.integers(6, size // 5))  # elongated, so that no blob passes for a circle
        axes = (major, max(2, major // int(rng.integers(3, 6))))
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
    return cv2.GaussianBlur(img, (3, 3), 0)


def _sample_side(rng: np.random.Generator, size: int) -> float:
    """Box side: ~25 % small (< 32 px), ~50 % medium, ~25 % large (> 96 px) at 256 px images."""
    scale = size / DEFAULT_SIZE
    u = rng.random()
    lo, hi = (12, 30) if u < 0.25 else (34, 94) if u < 0.75 else (100, 160)
    return float(rng.uniform(lo, hi) * scale)


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(rb - lt, 0, None)))
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    return inter / union


def _render(rng: np.random.Generator, size: int):
    """One image: (RGB uint8, label map uint8, list of (class, polygon, box xyxy))."""
    img = _background(rng, size)
    label = np.zeros((size, size), np.uint8)
    masks: list[np.ndarray] = []
    objects: list[tuple[int, np.ndarray, np.ndarray]] = []
    for _ in range(int(rng.integers(1, 6))):
        for _attempt in range(20):
            kind = int(rng.integers(0, len(CLASSES)))
            side = _sample_side(rng, size)
            r = side / 2 * (1.0 if kind == 0 else 1.15)
            cx, cy = rng.uniform(side / 2, size - side / 2, 2)
            poly = _polygon(kind, cx, cy, r, float(rng.uniform(0, 2 * np.pi)))
            poly = np.clip(poly, 0, size - 1e-3)
            box = np.concatenate([poly.min(0), poly.max(0)])
            if min(box[2:] - box[:2]) < 6 or any(_box_iou(box, o[2]) > 0.5 for o in objects):
                continue
            mask = np.zeros((size, size), np.uint8)
            cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
            if any((m & mask).sum() > 0.5 * m.sum() for m in masks):
                continue
            break
        else:
            continue
        base = img[mask.astype(bool)].mean(0)
        color = rng.uniform(0, 255, 3)
        while np.abs(color - base).sum() < 150:
            color = rng.uniform(0, 255, 3)
        shade = np.clip(color + rng.normal(0, 6, (size, size, 3)), 0, 255)
        img[mask.astype(bool)] = shade[mask.astype(bool)].astype(np.uint8)
        for m in masks:
            m &= 1 - mask
        label[mask.astype(bool)] = kind + 1
        masks.append(mask)
        objects.append((kind, poly, box))
    border = np.zeros_like(label)
    kernel = np.ones((3, 3), np.uint8)
    for m in masks:
        border |= cv2.dilate(m, kernel) - cv2.erode(m, kernel)
    label[border.astype(bool)] = IGNORE_LABEL
    return img, label, objects


def _palette() -> list[int]:
    pal = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128]
    return pal + [0] * (3 * 256 - len(pal))


def _voc_xml(name: str, size: int, objects: list) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "SHAPES"
    ET.SubElement(root, "filename").text = f"{name}.jpg"
    sz = ET.SubElement(root, "size")
    for tag, v in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(sz, tag).text = str(v)
    ET.SubElement(root, "segmented").text = "1"
    if objects:
        voc = convert_boxes(np.stack([o[2] for o in objects]).astype(np.float64), "xyxy", "voc")
        voc = voc.round().clamp(min=1, max=size).int().tolist()
    for (kind, _, _), b in zip(objects, voc if objects else [], strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = CLASSES[kind]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        bb = ET.SubElement(obj, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), b, strict=True):
            ET.SubElement(bb, tag).text = str(v)
    return ET.tostring(root)


def generate_shapes(
    folder: Path, split: str, seed: int, num_images: int, size: int, progress: bool = True
) -> None:
    """Write ``num_images`` images of one split into ``folder`` (see the module docstring).
    ``progress``: a bar when stderr is a terminal, else a few plain lines
    (:func:`visionkit.utils.cli.track`); False (``--no-progress``): the plain lines."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "annotations", "Annotations", "ImageSets/Main",
                "ImageSets/Segmentation", "SegmentationClass"):  # fmt: skip
        (folder / sub).mkdir(parents=True, exist_ok=True)
    images, annotations, names = [], [], []
    steps = track(range(num_images), num_images, f"generating shapes/{split}", progress, "images")
    for i in steps:
        name = f"{split}_{i:06d}"
        img, label, objects = _render(rng, size)
        jpeg = folder / "JPEGImages" / f"{name}.jpg"
        if not cv2.imwrite(str(jpeg), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"OpenCV could not write {jpeg.name}")  # a full disk, most likely
        png = Image.fromarray(label, mode="P")
        png.putpalette(_palette())
        png.save(folder / "SegmentationClass" / f"{name}.png")
        (folder / "Annotations" / f"{name}.xml").write_bytes(_voc_xml(name, size, objects))
        image_id = i + 1
        images.append({"id": image_id, "file_name": f"{name}.jpg", "width": size, "height": size})
        xywh = (
            convert_boxes(np.stack([o[2] for o in objects]), "xyxy", "xywh").tolist()
            if objects
            else []
        )
        for (kind, poly, _), b in zip(objects, xywh, strict=True):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": kind + 1,
                "bbox": [round(v, 2) for v in b], "area": round(b[2] * b[3], 2), "iscrowd": 0,
                "segmentation": [[round(float(v), 2) for v in poly.reshape(-1)]],
            })  # fmt: skip
        names.append(name)
    categories = [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(CLASSES)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (folder / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    for sub in ("Main", "Segmentation"):
        (folder / "ImageSets" / sub / f"{split}.txt").write_text("\n".join(names) + "\n")


def ensure_shapes(
    root: str | Path | None = None,
    split: str = "train",
    num_images: int = 0,
    image_size: int = 0,
    progress: bool = True,
) -> dict[str, Path]:
    """Generate a split if missing; return ``{"root", "images", "ann_file"}`` paths.

    Args:
        root: cache folder (``None``/"" = :func:`default_root`).
        split: ``"train"`` (seed 1) or ``"val"`` (seed 2).
        num_images, image_size: 0 = the defaults (2000/300 images, 256 px).
        progress: while generating, a progress bar when stderr is a terminal, else a few plain
            lines on stdout; False (a tool's ``--no-progress``): the plain lines only.
    """
    from visionkit.errors import ConfigError

    if split not in SPLITS:
        raise ConfigError(f"shapes split must be one of {', '.join(SPLITS)}; got {split!r}")
    seed, default_n = SPLITS[split]
    n, size = num_images or default_n, image_size or DEFAULT_SIZE
    base = Path(root) if root else default_root()
    folder = base / "shapes" / f"{VERSION}-{split}-s{seed}-n{n}-{size}"
    if not (folder / "annotations" / f"instances_{split}.json").is_file():
        try:  # into a hidden folder renamed into place: never a half-generated split
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        except OSError as e:
            raise write_error(folder, e) from None
        try:
            generate_shapes(tmp, split, seed, n, size, progress)
            try:
                os.replace(tmp, folder)
            except OSError:  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, OSError):  # a full disk: one line
                raise write_error(folder, e) from None
            raise
    return {
        "root": folder,
        "images": folder / "JPEGImages",
        "ann_file": folder / "annotations" / f"instances_{split}.json",
    }
