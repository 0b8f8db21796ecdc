"""Figures of an evaluation, as PNGs through matplotlib's Agg backend (no window): precision-recall
curves from COCOeval's own precision array, the detection confusion matrix (PNG and CSV,
:mod:`visionkit.evaluation.confusion`), for instance segmentation models the same of their masks
(``*_segm``), and the normalized pixel confusion matrix of segmentation.

:func:`write_evaluation_plots` writes those an evaluator can give into a folder; ``visionkit eval
--plots`` and the trainer (at the end of training, into ``<run>/plots/``) call it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.config.schema import EvalConfig
from visionkit.evaluation.build import Evaluators
from visionkit.evaluation.confusion import coco_confusion
from visionkit.evaluation.sem_seg import SemSegEvaluator
from visionkit.evaluation.units import percent
from visionkit.io.atomic import atomic_path, write_text

RECALL_LEVELS = np.linspace(0.0, 1.0, 101)  # COCOeval's recThrs: the R axis of its precision
# the detection confusion matrix's thresholds: eval.confusion_score_thresh and _iou_thresh
SCORE_THRESH: float = EvalConfig.confusion_score_thresh
IOU_THRESH: float = EvalConfig.confusion_iou_thresh
# the file names' suffix of each COCO section: boxes as before, instance masks "_segm"
SUFFIXES = {"bbox": "", "segm": "_segm"}


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only, never a window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_suffixes() -> frozenset[str]:
    """The file suffixes :func:`save_figure` can write (``.png``, ``.pdf``, ``.svg``, ...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return frozenset(f".{k}" for k in FigureCanvasAgg.get_supported_filetypes())


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` atomically (folders created; the format of its suffix, PNG
    without one) and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            fig.savefig(f, format=path.suffix.lstrip(".").lower() or "png")
    finally:
        pyplot().close(fig)
    return path


def plot_pr_curves(
    precision: np.ndarray, class_names: Sequence[str], path: str | Path, what: str = ""
) -> Path:
    """Precision against recall per class, at IoU 0.5 (left) and averaged over IoU 0.5:0.95
    (right), from COCOeval's ``precision`` ``(T, R, K, A, M)`` (all areas, the largest maxDets);
    the mean over the classes with ground truth in black. Precision and recall are fractions
    (0-1 axes); the legend gives each curve's area, its AP, in percent (COCO's 0-100 scale). A
    class without ground truth (all -1) is left out. ``what`` begins the titles (``"mask "``)."""
    plt = pyplot()
    p = precision[:, :, :, 0, -1]  # (T, R, K)
    present = (p > -1).all(axis=(0, 1))
    curves = {"IoU 0.5": p[0], "IoU 0.5:0.95 (mean)": p.mean(0)}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5), dpi=100)
    many = present.sum() > 20
    for ax, (title, curve) in zip(axes, curves.items(), strict=True):
        for k in np.flatnonzero(present):
            label = None if many else f"{class_names[k]} {percent(100 * curve[:, k].mean(), 1)}"
            ax.plot(RECALL_LEVELS, curve[:, k], lw=0.8 if many else 1.5, label=label)
        if present.any():
            mean = curve[:, present].mean(1)
            ax.plot(RECALL_LEVELS, mean, color="black", lw=3,
                    label=f"all classes {percent(100 * mean.mean(), 1)}")  # fmt: skip
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall (0-1)", ylabel="precision (0-1)")
        ax.set_title(f"{what}precision-recall, {title} (legend: AP in %)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion_matrix(
    matrix: np.ndarray,
    names: Sequence[str],
    path: str | Path,
    title: str,
    xlabel: str = "predicted",
    ylabel: str = "ground truth",
) -> Path:
    """A confusion matrix (rows ground truth) coloured by each row's share (what became of a
    ground-truth class), each cell annotated with its count (small matrices: <= 30 classes)."""
    plt = pyplot()
    counts = np.asarray(matrix, np.float64)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    n = len(names)
    side = float(np.clip(0.45 * n + 3, 5, 20))
    fig, ax = plt.subplots(figsize=(side + 1.2, side), dpi=100)
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the row (0-1)")
    ax.set_xticks(range(n), names, rotation=90 if n > 8 else 45, ha="right" if n <= 8 else "center")
    ax.set_yticks(range(n), names)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if n <= 30:
        whole = np.all(counts == np.round(counts))
        for i, j in zip(*np.nonzero(counts), strict=True):
            text = f"{int(counts[i, j])}" if whole else f"{counts[i, j]:.2f}"
            color = "white" if shares[i, j] > 0.5 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    fig.tight_layout()
    return save_figure(fig, path)


def write_confusion_csv(matrix: np.ndarray, names: Sequence[str], path: str | Path) -> Path:
    """The matrix as CSV (written atomically): a header of prediction names, one row per
    ground-truth name."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["ground truth \\ predicted", *names])
    for name, row in zip(names, np.asarray(matrix).tolist(), strict=True):
        writer.writerow([name, *row])
    return write_text(path, text.getvalue())


def write_evaluation_plots(
    evaluator: Any,
    folder: str | Path,
    score_thresh: float = SCORE_THRESH,
    iou_thresh: float = IOU_THRESH,
) -> list[Path]:
    """The plots of an evaluator after its ``evaluate()``, written into ``folder``; returns the
    files. Segmentation (:class:`SemSegEvaluator`): ``pixel_confusion.png`` (rows normalized).
    Detection: ``pr_curves.png`` (a COCO evaluator with results) and ``confusion_matrix.png``
    and ``.csv`` (any box evaluator): detections scoring at least ``score_thresh`` matched to
    objects at IoU >= ``iou_thresh`` (``eval.confusion_score_thresh`` and ``_iou_thresh``),
    both stated in the plot's title."""
    folder = Path(folder)
    if isinstance(evaluator, SemSegEvaluator):
        if evaluator.conf is None:
            return []
        conf = evaluator.conf.double().cpu().numpy()
        conf /= np.maximum(conf.sum(1, keepdims=True), 1)
        title = "pixel confusion matrix (rows normalized)"
        return [plot_confusion_matrix(conf, evaluator.class_names, folder / "pixel_confusion.png",
                                      title)]  # fmt: skip
    boxes = evaluator.evaluators if isinstance(evaluator, Evaluators) else [evaluator]
    coco_gt = boxes[0].coco_gt
    cat_ids = sorted(coco_gt.getCatIds())
    names = [coco_gt.cats[c]["name"] for c in cat_ids]
    labels = [*names, "background"]
    written = []
    for ev in boxes:
        for iou_type, acc in getattr(ev, "accumulations", {}).items():
            if "precision" in acc:
                k = [acc["cat_ids"].index(c) for c in cat_ids]
                path = folder / f"pr_curves{SUFFIXES[iou_type]}.png"
                what = "mask " if iou_type == "segm" else ""
                written.append(plot_pr_curves(acc["precision"][:, :, k], names, path, what))
    iou_types = getattr(boxes[0], "iou_types", ("bbox",))
    for iou_type in iou_types:
        matrix = coco_confusion(coco_gt, boxes[0].results, boxes[0].image_ids, score_thresh,
                                iou_thresh, iou_type)  # fmt: skip
        what = "mask" if iou_type == "segm" else "detection"
        title = f"{what} confusion matrix (IoU >= {iou_thresh:g}, score >= {score_thresh:g})"
        stem = folder / f"confusion_matrix{SUFFIXES[iou_type]}"
        written.append(plot_confusion_matrix(matrix, labels, stem.with_suffix(".png"), title))
        written.append(write_confusion_csv(matrix, labels, stem.with_suffix(".csv")))
    return written
