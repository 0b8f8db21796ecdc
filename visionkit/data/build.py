"""Datasets and data loaders from configs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from visionkit.config.schema import AugmentConfig, DatasetConfig
from visionkit.data.bad_images import BadImageGuard
from visionkit.data.coco import CocoDetection
from visionkit.data.loader import ReportingDataLoader
from visionkit.data.proposal_dataset import with_proposals
from visionkit.data.segmentation import (
    CocoSegmentation,
    SegmentationDataset,
    voc_layout_samples,
    voc_segmentation,
)
from visionkit.data.shapes import CLASSES as SHAPES_CLASSES
from visionkit.data.shapes import ensure_shapes
from visionkit.data.transforms import BoxTransform, build_transforms, seed_transforms
from visionkit.data.voc import VOCDetection
from visionkit.data.yolo import YoloDetection
from visionkit.errors import ConfigError, DataError
from visionkit.structures.labels import VOC_CLASSES

BOX_TASKS = ("detection", "instance")  # the tasks whose targets are boxes (and masks)


def build_dataset(
    cfg: DatasetConfig,
    aug: AugmentConfig,
    input_size: Sequence[int] | None,
    train: bool,
    task: str = "detection",
    on_bad_image: Literal["skip", "stop"] = "skip",
    progress: bool = True,
) -> BadImageGuard:
    """The dataset ``cfg`` describes, with the training or evaluation transforms.

    ``task`` is the model's (``visionkit.models.model_task``): ``"detection"`` reads boxes,
    ``"instance"`` boxes and each one's instance mask (``target["masks"]``: COCO polygons or RLE,
    the shapes dataset's polygons, YOLO segment lines; ``data/instance_masks.py``),
    ``"sem_seg"`` per-pixel label maps (``data/segmentation.py``; shapes: its VOC-layout PNGs).
    Detection targets also carry ``proposals`` when ``cfg.proposals.method`` is not ``none``
    (``data/proposal_dataset.py``). Unreadable images are skipped or stop the run as
    ``on_bad_image`` (``data.on_bad_image``) says: ``data/bad_images.py``. ``progress``: the
    shapes dataset's generation, when it happens, draws a bar (on a terminal) or a few plain
    lines (False, a tool's ``--no-progress``: the lines only; ``data/shapes.py``).
    """
    transforms = build_transforms(aug, input_size, train)
    reader = _reader(cfg, transforms, task, on_bad_image, progress)
    boxes = getattr(reader, "dataset", reader)  # under a ProposalDataset
    if train and task in BOX_TASKS and boxes.num_objects == 0:
        where = getattr(boxes, "ann_file", None) or f"{boxes.root} {list(cfg.splits)}"
        raise DataError(
            f"{where}: no object to train on: every box is crowd, difficult, degenerate or "
            "outside its image"
        )
    return BadImageGuard(reader, on_bad_image, keep_stand_ins=train)


def _reader(
    cfg: DatasetConfig, transforms: BoxTransform, task: str, on_bad_image: str, progress: bool
) -> Dataset:
    """The reader of ``cfg.type`` for ``task``, wrapped for proposals when they are asked for."""
    if cfg.coco_to_voc and (task != "sem_seg" or cfg.type != "coco"):
        raise ConfigError("data.*.coco_to_voc applies to coco datasets of segmentation models")
    if cfg.class_names and task == "sem_seg":
        raise ConfigError("data.*.class_names applies to voc datasets of detection models")
    if task == "sem_seg" and cfg.type == "shapes":
        root = _shapes_paths(cfg, progress)["root"]
        samples = voc_layout_samples(root, cfg.splits[0])
        return SegmentationDataset(samples, ("background", *SHAPES_CLASSES), transforms)
    if task == "sem_seg" and cfg.type == "coco":
        return CocoSegmentation(
            cfg.ann_file, cfg.root, transforms, cfg.filter_empty, cfg.coco_to_voc
        )
    if task == "sem_seg" and cfg.type == "yolo":
        raise ConfigError("yolo datasets hold boxes, not the label maps segmentation models need")
    if task == "sem_seg":
        return voc_segmentation(cfg.root, cfg.splits, transforms)
    if task == "instance" and cfg.proposals.method != "none":
        raise ConfigError(
            "data.*.proposals applies to detectors fed precomputed proposals (fast_rcnn, sppnet), "
            "not to instance segmentation models"
        )
    dataset = detection_reader(cfg, transforms, on_bad_image, progress, masks=task == "instance")
    return with_proposals(dataset, cfg.proposals, on_bad_image)


def detection_reader(
    cfg: DatasetConfig,
    transforms: BoxTransform | None = None,
    on_bad_image: str = "skip",
    progress: bool = True,
    masks: bool = False,
) -> CocoDetection | VOCDetection | YoloDetection:
    """The box reader of ``cfg.type`` (shapes: its COCO files, generated on first use, with a
    progress bar or plain lines: ``progress``), bare: no proposals, no :class:`BadImageGuard`
    (what ``visionkit convert`` reads). ``masks``: the targets also carry instance masks (COCO,
    shapes and YOLO segment datasets; a VOC detection dataset has none: a ConfigError)."""
    if cfg.class_names and cfg.type != "voc":
        raise ConfigError(
            "data.*.class_names applies to voc datasets (coco and yolo files name their classes)"
        )
    if cfg.type == "shapes":
        paths = _shapes_paths(cfg, progress)
        return CocoDetection(
            paths["ann_file"], paths["images"], transforms, cfg.filter_empty, masks=masks
        )
    if cfg.type == "coco":
        return CocoDetection(cfg.ann_file, cfg.root, transforms, cfg.filter_empty, masks=masks)
    if cfg.type == "yolo":
        return YoloDetection(
            cfg.root, cfg.splits, transforms, cfg.filter_empty, on_bad_image, masks=masks
        )
    if masks:
        raise ConfigError(
            "voc detection datasets hold boxes, not the instance masks instance segmentation "
            "models need (use a coco, yolo or shapes dataset)"
        )
    names = cfg.class_names or VOC_CLASSES
    return VOCDetection(cfg.root, cfg.splits, transforms, cfg.use_difficult, names)


def _shapes_paths(cfg: DatasetConfig, progress: bool = True) -> dict[str, Path]:
    """The shapes split ``cfg`` names, generated on first use (:func:`ensure_shapes`)."""
    if len(cfg.splits) != 1:
        raise ConfigError(f"shapes datasets take one split ('train' or 'val'); got {cfg.splits}")
    return ensure_shapes(
        cfg.root or None, cfg.splits[0], cfg.num_images, cfg.image_size, progress=progress
    )


def collate_fn(batch: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list, list]:
    """``[(image, target), ...]`` -> ``(list of images, list of targets)``; sizes may differ."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


def build_dataloader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    shuffle: bool,
    sampler: Sampler | None = None,
    drop_last: bool = False,
    seed: int = 0,
) -> ReportingDataLoader:
    """A loader yielding ``(list[Tensor (3,H,W)], list[dict])`` batches; it reports the files
    a :class:`BadImageGuard` skipped (``loader.skipped``) and drops evaluation stand-ins.

    The augmentation is seeded from ``seed``: in the main process when ``num_workers`` is 0, else
    in each worker from the seed torch gives it (drawn from a generator seeded with ``seed``).
    A ``sampler`` of ``(index, seed)`` keys (the trainer's) seeds it per sample instead.
    """
    if num_workers == 0:
        seed_transforms(dataset, seed)
    return ReportingDataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=_seed_worker,
    )


def _seed_worker(worker_id: int) -> None:
    info = get_worker_info()
    seed_transforms(info.dataset, info.seed % 2**32)
