"""Training curves from runs' ``metrics.jsonl`` (``engine/logger.py``): each loss term, the
learning rate and each validation metric against the epoch, one panel per quantity, one line per
run (the trainer draws its own run at the end of training; ``tools/plot_logs.py`` overlays
several).

Training records hold ``train/<term>`` and ``lr`` at their ``iter``; evaluation records
``<task>/<metric>`` with ``epoch``. An iteration becomes a fractional epoch through the
iterations per epoch an evaluation record gives (``iter = epoch * iters_per_epoch``); a run that
never evaluated is drawn against the iteration. Per-class numbers (``AP-<class>``,
``IoU-<class>``, ``ACC-<class>``) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from visionkit.errors import DataError
from visionkit.evaluation.plots import pyplot, save_figure, write_evaluation_plots
from visionkit.io.structured import read_jsonl

PER_CLASS = ("AP-", "IoU-", "ACC-")


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


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict) or "iter" not in record:
        return "not a metrics record (a JSON object with 'iter')"
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
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out.setdefault(key, []).append((x, float(v)))
    return out, "epoch" if scale else "iteration"


def _order(key: str) -> tuple[int, str]:
    """Losses first (the total before its terms), then the learning rate, then metrics."""
    if key.startswith("train/"):
        return (0 if key == "train/loss" else 1, key)
    return (2 if key == "lr" else 3, key)


def plot_training_curves(
    runs: Mapping[str, Sequence[dict[str, Any]]], path: str | Path, title: str = ""
) -> Path:
    """One panel per quantity of ``runs`` (name -> records), a line per run; a PNG at ``path``.
    Evaluations (a few points) are drawn with markers."""
    plt = pyplot()
    per_run = {name: curves(records) for name, records in runs.items()}
    keys = sorted({k for c, _ in per_run.values() for k in c}, key=_order)
    if not keys:
        raise DataError(f"no numbers to plot in {', '.join(runs)}")
    xlabels = {label for _, label in per_run.values()}
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), dpi=100, squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for name, (c, _) in per_run.items():
            points = c.get(key, [])
            if points:
                xs, ys = zip(*points, strict=True)
                marker = "o" if "/" in key and not key.startswith("train/") else None
                ax.plot(xs, ys, marker=marker, ms=4, lw=1.2, label=name)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel(" / ".join(sorted(xlabels)))
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(keys) :]:
        ax.axis("off")
    if len(runs) > 1:
        axes.flat[0].legend(fontsize=8)
    fig.suptitle(title or "training curves: " + ", ".join(runs))
    fig.tight_layout()
    return save_figure(fig, path)


def write_run_plots(run: str | Path, evaluator: Any | None) -> Path:
    """A finished run's plots into ``<run>/plots/``: its last evaluation's
    (:func:`~visionkit.evaluation.plots.write_evaluation_plots`; none when ``evaluator`` is None)
    and ``training_curves.png``; returns the folder."""
    run = Path(run)
    folder = run / "plots"
    if evaluator is not None:
        write_evaluation_plots(evaluator, folder)
    plot_training_curves({run.name: read_metrics(run)}, folder / "training_curves.png")
    return folder
