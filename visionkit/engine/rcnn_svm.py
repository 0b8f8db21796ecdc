"""R-CNN's SVM stage: fc7 features of a training set, cached on disk, and the per-class SVMs.

:func:`extract_features` runs the fine-tuned :class:`~visionkit.models.detectors.rcnn.RCNN` (eval
mode) on every image of a dataset whose targets carry ``proposals`` (no augmentation), warping
its ground-truth boxes and its first ``max_proposals`` proposals. The cache file,
``<cache_dir>/rcnn-fc7-<key>.pt``, is keyed by the dataset (image ids, paths and proposals), the
model's weights and the warp settings: one file per dataset and checkpoint, written atomically
(temporary file, then rename) and reused by :func:`cached_features`. It holds

- ``features``: ``(T, fc_dim)`` float16 fc7 features, image by image, ground truth first;
- ``labels``: ``(T,)`` int64, a ground-truth row's class ``0..C-1``, ``-1`` for proposals;
- ``max_iou``: ``(T, C)`` float16, each proposal's best IoU with the boxes of each class (1 for
  ground-truth rows, which are never negatives);
- ``image_index``: ``(T,)`` int64, the row's position in the dataset.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou
from tqdm import tqdm

from visionkit.checkpoints.store import save_checkpoint
from visionkit.config.schema import SVMConfig
from visionkit.data.bad_images import SkipReporter
from visionkit.data.shapes import default_root
from visionkit.errors import CheckpointError, DataError
from visionkit.models.detectors.rcnn import RCNN
from visionkit.models.heads.svm import train_linear_svms

FEATURES_VERSION = "rcnn-fc7-v1"
FEATURE_KEYS = ("features", "labels", "max_iou", "image_index")


def features_cache_path(
    model: RCNN, dataset: Any, max_proposals: int, cache_dir: str | Path = ""
) -> Path:
    """The cache file of ``model``'s features on ``dataset`` (``ids``, ``image_path(i)``,
    ``proposals``): the key hashes the images, their proposals, the weights (SVMs excluded),
    the warp settings and ``max_proposals``."""
    key = hashlib.sha1(FEATURES_VERSION.encode())
    key.update(f"{model.warp_size},{model.context_pad},{max_proposals}\n".encode())
    proposals = getattr(dataset, "proposals", {})
    for i, image_id in enumerate(dataset.ids):
        key.update(f"{image_id}:{Path(dataset.image_path(i)).resolve()}\n".encode())
        key.update(np.ascontiguousarray(proposals.get(image_id, np.zeros(0)), np.float32))
    for name, value in model.state_dict().items():
        if not name.startswith("svm_"):
            key.update(name.encode())
            key.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    root = Path(cache_dir) if cache_dir else default_root() / "rcnn_features"
    return root / f"rcnn-fc7-{key.hexdigest()[:16]}.pt"


@torch.no_grad()
def image_features(
    model: RCNN, image: Tensor, target: dict, max_proposals: int
) -> dict[str, Tensor]:
    """One image's cache rows (:data:`FEATURE_KEYS` but ``image_index``): its valid ground-truth
    boxes, then its first ``max_proposals`` proposals (0 = all), ``image`` ``(3, H, W)`` float
    RGB in [0, 1] with ``target`` ``boxes``/``labels``/``proposals`` in its pixels."""
    batch = model.preprocess([image])
    device = batch.tensor.device
    (gt,), (labels,) = batch.targets_to_input([target["boxes"]], [target["labels"]])
    (props,), _ = model.proposer.propose(batch, (), [target])
    props = props[: max_proposals or None]
    boxes = torch.cat([gt, props])
    _, fc7 = model.region_features(
        batch.tensor, torch.zeros(len(boxes), dtype=torch.int64, device=device), boxes
    )
    same_class = labels[:, None] == torch.arange(model.num_classes, device=device)
    iou = box_iou(gt, props)[:, :, None] * same_class[:, None, :]
    max_iou = iou.amax(0) if len(gt) else props.new_zeros(len(props), model.num_classes)
    return {
        "features": fc7.half().cpu(),
        "labels": torch.cat([labels, labels.new_full((len(props),), -1)]).cpu(),
        "max_iou": torch.cat([max_iou.new_ones(len(gt), model.num_classes), max_iou]).half().cpu(),
    }


def available_memory() -> int | None:
    """Bytes of physical memory free now (Linux, macOS), or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_feature_budget(model: RCNN, dataset: Any, max_proposals: int) -> None:
    """Stop before extraction when the cache would not fit in half the free memory.

    The rows are counted from ``dataset.proposals`` (first ``max_proposals`` per image) and the
    COCO annotations of its images (``dataset.coco``); each costs ``2 * (fc_dim + C) + 8``
    bytes. Raises :class:`DataError` with the estimate and the setting that shrinks it."""
    proposals = getattr(dataset, "proposals", None)
    free = available_memory()
    if proposals is None or free is None:
        return
    ids = set(dataset.ids)
    counts = [len(p) for image_id, p in proposals.items() if image_id in ids]
    rows = sum(min(n, max_proposals) if max_proposals else n for n in counts)
    coco = getattr(dataset, "coco", None)
    if coco is not None:
        rows += sum(len(coco.imgToAnns.get(image_id, ())) for image_id in ids)
    fc_dim = model.cls_score.in_features
    need = rows * (2 * (fc_dim + model.num_classes) + 8)
    if need > free // 2:
        raise DataError(
            f"the R-CNN feature cache would take {need / 2**30:.1f} GiB ({rows} regions x "
            f"{fc_dim} fc7 values), more than half of the {free / 2**30:.1f} GiB of free "
            f"memory; lower model.rcnn.svm.max_proposals (now {max_proposals or 'all'})"
        )


def extract_features(
    model: RCNN, dataset: Any, max_proposals: int, progress: bool = True
) -> dict[str, Tensor]:
    """:func:`image_features` of every image of ``dataset`` (model in eval mode), concatenated,
    with ``image_index``. An image the dataset could not read (its stand-in sample, see
    ``data/bad_images.py``) is left out with a warning line, once per file."""
    if len(dataset) and "proposals" not in dataset[0][1]:
        raise DataError(
            "the R-CNN SVM stage needs proposals on the training data: set "
            "data.train.proposals.method to selective_search or file"
        )
    check_feature_budget(model, dataset, max_proposals)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows: dict[str, list[Tensor]] = {k: [] for k in FEATURE_KEYS}
    report = SkipReporter()
    for i in tqdm(range(len(dataset)), desc="rcnn features", disable=not progress):
        image, target = dataset[i]
        if not report(target):
            continue
        out = image_features(model, image.to(device), target, max_proposals)
        out["image_index"] = torch.full((len(out["labels"]),), i, dtype=torch.int64)
        for k in FEATURE_KEYS:
            rows[k].append(out[k])
    model.train(was_training)
    if not rows["features"]:
        raise DataError("the R-CNN SVM stage got an empty training set")
    return {k: torch.cat(v) for k, v in rows.items()}


def cached_features(
    model: RCNN, dataset: Any, cfg: SVMConfig, progress: bool = True
) -> tuple[dict[str, Tensor], Path, bool]:
    """The features of ``model`` on ``dataset``: read from the cache when its file exists, else
    extracted and written. Returns them, the file and whether it was read (True) or written."""
    path = features_cache_path(model, dataset, cfg.max_proposals, cfg.cache_dir)
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(
                f"cannot read R-CNN feature cache {path}: {type(e).__name__}"
            ) from None
        if isinstance(cached, dict) and all(k in cached for k in FEATURE_KEYS):
            return cached, path, True
        raise CheckpointError(f"{path} is not an R-CNN feature cache; delete it")
    features = extract_features(model, dataset, cfg.max_proposals, progress)
    save_checkpoint(features, path)
    return features, path, False


def fit_svms(model: RCNN, features: dict[str, Tensor], cfg: SVMConfig) -> dict[str, list[int]]:
    """Train the per-class SVMs on cached ``features`` and install them in ``model``; returns
    the per-class counts of :func:`~visionkit.models.heads.svm.train_linear_svms`."""
    if features["max_iou"].shape[1] != model.num_classes:
        raise DataError(
            f"the feature cache has {features['max_iou'].shape[1]} classes, the model "
            f"{model.num_classes}"
        )
    weight, bias, stats = train_linear_svms(
        features["features"], features["labels"], features["max_iou"],
        C=cfg.C, pos_weight=cfg.pos_weight, neg_iou_thresh=cfg.neg_iou_thresh,
        rounds=cfg.hard_negative_rounds, hard_thresh=cfg.hard_thresh,
        evict_thresh=cfg.evict_thresh, max_negatives=cfg.max_negatives,
        feature_norm=cfg.feature_norm, max_iter=cfg.max_iter,
    )  # fmt: skip
    model.set_svms(weight, bias)
    return stats
