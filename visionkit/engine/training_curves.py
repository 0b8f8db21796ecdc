"""Training curves from runs' ``metrics.jsonl`` (``engine/logger.py``): the loss terms, the
learning rate and the main validation metrics (COCO box and mask AP and AP50, VOC mAP, mIoU; in
percent) against the epoch, one panel per quantity titled with its unit, one line per run (the
trainer draws its own run at the end of training, with its ``train.best_metric``; ``visionkit
plot`` overlays several). The panels are bounded (``MAX_PANELS``); every point of every quantity,
drawn or not (AP75, AR, fwIoU, ...), is also written to a CSV beside the PNG, and what was not
drawn is named in one line.

Training records hold ``train/<term>`` and ``lr`` at their ``iter``; evaluation records
``<task>/<metric>`` with ``epoch``. An iteration becomes a fractional epoch through the
iterations per epoch an evaluation record gives (``iter = epoch * iters_per_epoch``); a run that
never evaluated is drawn against the iteration. Per-class numbers (``AP-<class>``,
``IoU-<class>``, ``ACC-<class>``) are left out.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionkit.errors import DataError, shown
from visionkit.evaluation.plots import (
    IOU_THRESH,
    SCORE_THRESH,
    pyplot,
    save_figure,
    write_evaluation_plots,
)
from visionkit.evaluation.units import axis_label
from visionkit.io.atomic import atomic_path
from visionkit.io.structured import read_jsonl

PER_CLASS = ("AP-", "IoU-", "ACC-")
# the metrics drawn: COCO box (and mask) AP and AP50, VOC mAP, mIoU (every other one: the CSV)
MAIN_METRICS = (
    "bbox/AP", "bbox/AP50", "segm/AP", "segm/AP50", "voc07/mAP", "voc/mAP", "sem_seg/mIoU"
)  # fmt: skip
LOSS_TERMS = 8  # loss terms drawn beside the total
MAX_PANELS = 16  # 4 rows of 4: the total loss, 8 terms, lr, the main metrics and a few asked for
FEW_POINTS = 20  # a line of at most this many points is drawn with markers
TITLE_CHARS = 60


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (a run folder or the file), read by
    :func:`~visionkit.io.structured.read_jsonl`: a torn last line (a run killed mid-write) is
    skipped with a warning, any other unreadable line or a line that is not a record is a
    DataError naming it."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist: give a run folder or its metrics.jsonl")
    if path.is_dir():
        path = path / "metrics.jsonl"
    records = read_jsonl(path, check=_record_problem, allow_nan=True)  # an undefined AP
    if not records:
        raise DataError(f"{path} holds no records")
    return records


def _number(v: Any) -> float | None:
    """``v`` as a finite float, else None (booleans, text, NaN, infinities, integers too large
    for a float)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return None
    try:
        v = float(v)
    except OverflowError:
        return None
    return v if math.isfinite(v) else None


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict) or "iter" not in record:
        return "not a metrics record (a JSON object with 'iter')"
    for key in ("iter", "epoch"):
        if key in record and _number(record[key]) is None:
            return f"its '{key}' is not a finite number: {shown(repr(record[key]), 80)}"
    return None


def curves(records: Sequence[dict[str, Any]]) -> tuple[dict[str, list[tuple[float, float]]], str]:
    """``({quantity: [(x, value), ...]}, x label)``: every finite number of the records but
    ``iter``, ``epoch`` and per-class metrics, against the epoch (or the iteration)."""
    per_epoch = [r["iter"] / r["epoch"] for r in records if r.get("epoch")]
    scale = per_epoch[0] if per_epoch else 0
    out: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        x = r["iter"] / scale if scale else float(r["iter"])
        for key, v in r.items():
            if key in ("iter", "epoch") or key.partition("/")[2].startswith(PER_CLASS):
                continue
            value = _number(v)
            if value is not None:
                out.setdefault(key, []).append((x, value))
    return out, "epoch" if scale else "iteration"


def _order(key: str) -> tuple[int, str]:
    """Losses first (the total before its terms), then the learning rate, then metrics."""
    if key.startswith("train/"):
        return (0 if key == "train/loss" else 1, key)
    return (2 if key == "lr" else 3, key)


def choose_panels(keys: Iterable[str], also: Collection[str] = ()) -> tuple[list[str], list[str]]:
    """``(drawn, left out)`` of ``keys``, in drawing order: the total loss (``train/loss``), up
    to ``LOSS_TERMS`` of its terms (by name), the learning rate, then the main metrics
    (``MAIN_METRICS``: COCO box and mask AP and AP50, VOC mAP, mIoU) and those of ``also`` (e.g.
    ``train.best_metric``), at most ``MAX_PANELS``. Keys of none of these kinds only (a log
    of other names): the first ``MAX_PANELS`` by name. The rest (losses first, then by name)
    are only in the chart's CSV."""
    keys = set(keys)
    terms = sorted(k for k in keys if k.startswith("train/") and k != "train/loss")
    metrics = sorted(keys & {*MAIN_METRICS, *also} - {"lr", *terms, "train/loss"})
    ranked = ["train/loss"] if "train/loss" in keys else []
    ranked += terms[:LOSS_TERMS] + (["lr"] if "lr" in keys else []) + metrics
    drawn = ranked[:MAX_PANELS] or sorted(keys)[:MAX_PANELS]
    rest = keys.difference(drawn)
    left_out = sorted(k for k in rest if k.startswith("train/"))
    left_out += sorted(k for k in rest if not k.startswith("train/"))
    return sorted(drawn, key=_order), left_out


def write_curves_csv(
    per_run: Mapping[str, tuple[dict[str, list[tuple[float, float]]], str]], path: Path
) -> Path:
    """Every point of every quantity of every run (drawn or not), one row each: ``run``,
    ``quantity``, ``x``, ``x_unit`` (``epoch`` or ``iteration``), ``value``."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "quantity", "x", "x_unit", "value"])
        for name, (c, unit) in per_run.items():
            for key in sorted(c, key=_order):
                writer.writerows((name, key, repr(x), unit, repr(v)) for x, v in c[key])
    return path


@dataclass(frozen=True)
class CurvesChart:
    """What :func:`plot_training_curves` wrote: the PNG, the CSV of every point, the quantities
    drawn and those left out (in the CSV only)."""

    png: Path
    csv: Path
    drawn: list[str]
    left_out: list[str]

    def line(self) -> str:
        """One line naming both files and what was left out."""
        line = f"chart: {self.png} ({len(self.drawn)} panels); every point: {self.csv}"
        return line + (f"; {_left_out(self.left_out)}" if self.left_out else "")


def _left_out(keys: Sequence[str], width: int = 120) -> str:
    """``"N more quantities not drawn (a, b, ...)"``, the names cut to about ``width``
    characters."""
    names = ", ".join(keys)
    if len(names) > width:
        names = names[:width].rsplit(", ", 1)[0] + ", ..."
    return f"{len(keys)} more quantities not drawn ({names})"


def plot_training_curves(
    runs: Mapping[str, Sequence[dict[str, Any]]],
    path: str | Path,
    title: str = "",
    also: Collection[str] = (),
) -> CurvesChart:
    """A panel per loss term, the learning rate and each main metric of ``runs`` (name ->
    records; :func:`choose_panels`, ``also``: metrics drawn beside the main ones), a line per
    run, each panel titled with its quantity and unit (``bbox/AP50 (%)``); a PNG at ``path``
    and, beside it, a CSV of every point of every quantity, drawn or not (``<path
    stem>.csv``, :func:`write_curves_csv`). A line of at most ``FEW_POINTS`` points is drawn
    with markers; the quantities left out are named in one line under the panels."""
    plt = pyplot()
    path = Path(path)
    per_run = {name: curves(records) for name, records in runs.items()}
    keys, left_out = choose_panels({k for c, _ in per_run.values() for k in c}, also)
    if not keys:
        raise DataError(f"no numbers to plot in {', '.join(runs)}")
    table = write_curves_csv(per_run, path.with_suffix(".csv"))
    xlabels = {label for _, label in per_run.values()}
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), dpi=100, squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for name, (c, _) in per_run.items():
            points = c.get(key, [])
            if points:
                xs, ys = zip(*points, strict=True)
                marker = "o" if len(points) <= FEW_POINTS else None
                ax.plot(xs, ys, marker=marker, ms=4, lw=1.2, label=name)
        label = axis_label(key)
        ax.set_title(
            label if len(label) <= TITLE_CHARS else label[: TITLE_CHARS - 3] + "...", fontsize=10
        )
        ax.set_xlabel(" / ".join(sorted(xlabels)))
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(keys) :]:
        ax.axis("off")
    if len(runs) > 1:
        axes.flat[0].legend(fontsize=8)
    fig.suptitle(title or "training curves: " + ", ".join(runs))
    if left_out:
        fig.text(
            0.5, 0.005, f"{_left_out(left_out, 90)}: see {table.name}", ha="center", fontsize=8
        )
    inch = 1 / (3 * rows)  # of the figure's height: room for the title and the last line
    fig.tight_layout(rect=(0, 0.3 * inch if left_out else 0, 1, 1 - 0.2 * inch))
    return CurvesChart(save_figure(fig, path), table, keys, left_out)


def write_run_plots(
    run: str | Path,
    evaluator: Any | None,
    score_thresh: float = SCORE_THRESH,
    iou_thresh: float = IOU_THRESH,
    also: Collection[str] = (),
) -> Path:
    """A finished run's plots into ``<run>/plots/``: its last evaluation's
    (:func:`~visionkit.evaluation.plots.write_evaluation_plots`, the detection confusion matrix
    at ``score_thresh`` and ``iou_thresh``: ``eval.confusion_*``; none when ``evaluator`` is
    None) and ``training_curves.png`` (``also``: metrics drawn beside the main ones, e.g.
    ``train.best_metric``); returns the folder."""
    run = Path(run)
    folder = run / "plots"
    if evaluator is not None:
        write_evaluation_plots(evaluator, folder, score_thresh, iou_thresh)
    chart = folder / "training_curves.png"
    plot_training_curves({run.name: read_metrics(run)}, chart, also=also)
    return folder
