"""Training runs side by side: each run's best metric against its model's cost, as a table and
as the accuracy-vs-compute bubble chart papers draw.

A run is a folder written by :class:`~visionkit.engine.trainer.Trainer`: ``config.yaml`` (the
resolved config) and ``metrics.jsonl`` (one JSON object per record; evaluations hold flat
``"<task>/<metric>"`` keys such as ``bbox/AP50`` or ``sem_seg/mIoU``, with ``epoch``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from visionkit.config import load_config
from visionkit.engine.training_curves import read_metrics
from visionkit.errors import ConfigError, DataError
from visionkit.evaluation.direction import best_index, metric_direction
from visionkit.evaluation.units import axis_label

# The metric compared when none is asked for, per task (models/__init__.py:TASKS).
DEFAULT_METRICS = {"detection": "bbox/AP50", "instance": "segm/AP50", "sem_seg": "sem_seg/mIoU"}


@dataclass
class RunSummary:
    """One run: its best metric value (lowest for a loss) and its model's cost per image."""

    name: str
    model: str
    backbone: str
    metric: str
    best: float
    epoch: int | None  # the epoch of the best evaluation (None if not logged)
    input_size: tuple[int, int]
    params: int
    macs: int


def best_value(path: Path, key: str) -> tuple[float, int | None]:
    """The best finite ``key`` in a metrics.jsonl file (the lowest loss, the highest AP:
    :func:`~visionkit.evaluation.direction.metric_direction`), and its record's ``epoch``."""
    metric_direction(key)  # refuses the learning rate before the file is read
    found: list[tuple[float, int | None]] = []
    keys: set[str] = set()
    for record in read_metrics(path):
        keys.update(k for k in record if "/" in k and not k.startswith("train/"))
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            found.append((float(value), record.get("epoch")))
    if not found:
        known = ", ".join(sorted(keys)[:8]) or "none"
        raise DataError(f"{path} holds no '{key}' value (evaluation metrics: {known})")
    return found[best_index(key, [value for value, _ in found])]


def summarize_run(
    run: str | Path, metric: str | None = None, input_size: Sequence[int] | None = None
) -> RunSummary:
    """Read a run folder and count its model's parameters and multiply-adds per image.

    Args:
        run: a folder with ``config.yaml`` and ``metrics.jsonl``.
        metric: the metrics.jsonl key to compare (default: the model's task's, DEFAULT_METRICS).
        input_size: the ``(height, width)`` image the cost is counted on (default:
            ``model.input_size``, or for ``[]`` a square image of ``model.resize.min_size``).
    """
    from visionkit.analysis.complexity import count_params_and_macs
    from visionkit.analysis.paths import default_image_size
    from visionkit.models import build_model, model_task

    run = Path(run)
    for name in ("config.yaml", "metrics.jsonl"):
        if not (run / name).is_file():
            raise DataError(f"{run} is not a training run: it has no {name}")
    cfg = load_config(run / "config.yaml", ["model.backbone.pretrained=false"]).model
    key = metric or DEFAULT_METRICS[model_task(cfg.name)]
    best, epoch = best_value(run / "metrics.jsonl", key)
    size = (int(input_size[0]), int(input_size[1])) if input_size else default_image_size(cfg)
    params, macs = count_params_and_macs(build_model(cfg).eval(), size)
    return RunSummary(
        run.name, cfg.name, cfg.backbone.name, key, best, epoch, size, int(params), int(macs)
    )


def summarize_runs(
    runs: Sequence[str | Path], metric: str | None = None, input_size: Sequence[int] | None = None
) -> list[RunSummary]:
    """:func:`summarize_run` for each run; the runs must share one metric (one task)."""
    out = [summarize_run(r, metric, input_size) for r in runs]
    metrics = sorted({s.metric for s in out})
    if len(metrics) > 1:
        raise ConfigError(
            f"the runs are measured by different metrics ({', '.join(metrics)}): compare runs "
            "of one task"
        )
    return out


def format_table(summaries: Sequence[RunSummary]) -> str:
    """A plain-text table: run, model, backbone, best metric (epoch), GMACs, parameters; the
    metric's unit in its header (``best bbox/AP50 (%)``: COCO's 0-100 scale)."""
    metric = summaries[0].metric
    header = (
        "run", "model", "backbone", f"best {axis_label(metric)}", "epoch", "input", "GMACs",
        "params (M)",
    )  # fmt: skip
    rows = [header] + [
        (
            s.name,
            s.model,
            s.backbone,
            f"{s.best:.2f}",
            "-" if s.epoch is None else str(s.epoch),
            f"{s.input_size[0]}x{s.input_size[1]}",
            f"{s.macs / 1e9:.3f}",
            f"{s.params / 1e6:.2f}",
        )
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for r in rows:  # text columns (the first three) left-aligned, numbers right-aligned
        cells = [
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def plot_runs(summaries: Sequence[RunSummary], path: str | Path, title: str = "") -> None:
    """Best metric (its unit on the axis: ``bbox/AP50 (%)``) against GMACs per image, bubble
    area proportional to the parameter count, each bubble labelled with its run and parameters;
    written atomically as a PNG (Agg backend)."""
    from visionkit.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    gmacs = [s.macs / 1e9 for s in summaries]
    best = [s.best for s in summaries]
    largest = max(s.params for s in summaries) or 1
    areas = [max(40.0, 2000.0 * s.params / largest) for s in summaries]
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    ax.scatter(gmacs, best, s=areas, c=range(len(summaries)), cmap="viridis", alpha=0.55)
    ax.scatter(gmacs, best, s=6, c="black")
    for s, x, y in zip(summaries, gmacs, best, strict=True):
        ax.annotate(
            f"{s.name}\n{s.params / 1e6:.1f}M params",
            (x, y),
            xytext=(8, 8),
            textcoords="offset points",
            fontsize=8,
        )
    if min(gmacs) > 0 and max(gmacs) / min(gmacs) > 20:
        ax.set_xscale("log")
    ax.margins(0.25)
    ax.set_xlabel("GMACs per image (multiply-adds)")
    ax.set_ylabel(axis_label(summaries[0].metric))
    ax.set_title(
        title or f"{axis_label(summaries[0].metric)} vs. compute (bubble area: parameters)"
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
