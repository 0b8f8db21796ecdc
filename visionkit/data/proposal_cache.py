"""Precomputed proposals per dataset: computed once with selective search and cached, or a user's file.

File format (both the cache and a user's file): a mapping ``image_id -> (N, 4)`` xyxy boxes in
the image's original pixels (0-based, exclusive right/bottom edges; best ranked first), either

- ``.npz``: one array per image, named by the image id as a decimal string (``np.savez(path,
  **{"12": boxes})``), or
- ``.pt`` / ``.pth``: a ``dict`` of ``int`` (or decimal ``str``) ids to tensors, arrays or lists
  (``torch.save``; loaded with ``weights_only=True``).

Image ids are the dataset's own (COCO: the JSON's ``id``; VOC: the position in the split lists,
from 1). The selective-search cache is ``<cache_dir>/ss-<mode>-<key>.npz``, the key hashing the
image ids and paths, so a changed dataset gets a new file; it is written to a temporary file and
renamed into place, so an interrupted run never leaves half a cache. An image unreadable when the
cache is computed has no entry (and no proposals); the next run searches it again.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from visionkit.config.schema import ProposalConfig
from visionkit.data.shapes import default_root
from visionkit.errors import DataError, UnreadableImageError
from visionkit.io.atomic import atomic_path
from visionkit.io.image import read_image
from visionkit.proposals.selective_search import selective_search
from visionkit.utils.warn import warn

CACHE_VERSION = "ss-v1"


def _as_boxes(path: Path, key: object, value: object) -> tuple[int, np.ndarray]:
    try:
        image_id = int(key)
        boxes = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(
            f"proposals file {path}: entry {key!r} is not an image id with an (N, 4) box array"
        ) from None
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
        raise DataError(
            f"proposals file {path}: image {key!r} holds {boxes.shape} values, not finite (N, 4) "
            "xyxy boxes"
        )
    return image_id, boxes


def load_proposals(path: str | Path) -> dict[int, np.ndarray]:
    """Read a proposals file (format above) -> ``{image_id: (N, 4) float32 xyxy}``; a missing,
    unreadable or malformed file is a one-line :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"proposals file not found: {path}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                raw: Mapping = {k: data[k] for k in data.files}
        elif path.suffix in (".pt", ".pth"):
            raw = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise DataError(f"proposals file {path}: expected a .npz, .pt or .pth file")
    except (OSError, ValueError, RuntimeError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"cannot read proposals file {path}: {type(e).__name__}") from None
    if not isinstance(raw, Mapping):
        raise DataError(f"proposals file {path}: holds a {type(raw).__name__}, not a dict")
    return dict(_as_boxes(path, k, v) for k, v in raw.items())


def save_proposals(path: str | Path, proposals: Mapping[int, np.ndarray]) -> None:
    """Write ``{image_id: (N, 4) xyxy}`` as ``.npz`` atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **{str(k): np.asarray(v, np.float32) for k, v in proposals.items()})


def cache_path(dataset, cfg: ProposalConfig) -> Path:
    """Where the selective-search proposals of ``dataset`` (``ids``, ``image_path(i)``,
    ``orientation(i)``) live; images read without their EXIF rotation are marked in the key."""
    key = hashlib.sha1(CACHE_VERSION.encode())
    for i, image_id in enumerate(dataset.ids):
        stored = "" if dataset.orientation(i) else ":stored"
        key.update(f"{image_id}:{Path(dataset.image_path(i)).resolve()}{stored}\n".encode())
    root = Path(cfg.cache_dir) if cfg.cache_dir else default_root() / "proposals"
    return root / f"ss-{cfg.mode}-{key.hexdigest()[:16]}.npz"


def _search_file(args: tuple[str, bool, str]) -> np.ndarray | str:
    """Selective search on one file, turned by its EXIF orientation or not: its boxes, or the
    one-line message when it is unreadable."""
    path, orientation, mode = args
    try:
        return selective_search(read_image(Path(path), orientation), mode)
    except UnreadableImageError as e:
        return str(e)


def compute_proposals(
    dataset,
    mode: str = "fast",
    workers: int = 1,
    progress: bool = True,
    indices: Sequence[int] | None = None,
) -> tuple[dict[int, np.ndarray], list[str]]:
    """Selective search on the images of ``dataset`` at ``indices`` (default: all), read from
    ``image_path(i)`` in original pixels, the EXIF orientation applied as ``orientation(i)``
    says (the pixels the dataset's boxes describe); ``workers`` processes. Returns ``{image_id: (N, 4)
    float32 xyxy}`` of the readable images and the one-line messages of the unreadable ones."""
    indices = range(len(dataset)) if indices is None else indices
    jobs = [(str(dataset.image_path(i)), dataset.orientation(i), mode) for i in indices]
    bar = {"total": len(jobs), "desc": f"selective search ({mode})", "disable": not progress}
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_search_file, jobs, chunksize=4), **bar))
    else:
        results = [_search_file(job) for job in tqdm(jobs, **bar)]
    found, failed = {}, []
    for i, result in zip(indices, results, strict=True):
        if isinstance(result, str):
            failed.append(result)
        else:
            found[dataset.ids[i]] = result
    return found, failed


def dataset_proposals(
    dataset, cfg: ProposalConfig, progress: bool = True, on_bad_image: str = "skip"
) -> dict[int, np.ndarray]:
    """The proposals of every image of ``dataset`` as ``cfg`` says: ``file`` loads a user's file
    (it must cover every image); ``selective_search`` loads the cache and computes what it lacks
    (all of it the first time; later, the images that were unreadable then), writing the cache
    again when it found more. An unreadable image gets no entry and a warning line, or, with
    ``on_bad_image`` "stop", a one-line error once the others are searched and cached."""
    if cfg.method == "file":
        if not cfg.file:
            raise DataError("data.*.proposals.method 'file' needs data.*.proposals.file")
        proposals = load_proposals(cfg.file)
        missing = [i for i in dataset.ids if i not in proposals]
        if missing:
            raise DataError(
                f"proposals file {cfg.file} has no entry for {len(missing)} of the dataset's "
                f"{len(dataset.ids)} images (first: image id {missing[0]})"
            )
        return proposals
    path = cache_path(dataset, cfg)
    proposals = load_proposals(path) if path.is_file() else {}
    todo = [i for i, image_id in enumerate(dataset.ids) if image_id not in proposals]
    if not todo:
        return proposals
    found, failed = compute_proposals(dataset, cfg.mode, cfg.workers, progress, todo)
    if found or not path.is_file():
        proposals.update(found)
        save_proposals(path, proposals)  # the readable images' work is kept, even on a stop
    if failed and on_bad_image == "stop":
        raise UnreadableImageError(
            f"{failed[0]} ({len(failed)} unreadable; data.on_bad_image=skip skips them)"
        )
    for message in failed:
        warn(f"no proposals: {message}")
    return proposals
