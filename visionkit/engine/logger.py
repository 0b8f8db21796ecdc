"""Metrics to a JSONL file and to TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from visionkit.errors import DataError
from visionkit.io.atomic import append_text, write_text
from visionkit.io.structured import decode_text, loads_json


class MetricsLogger:
    """Appends one JSON object per record to ``metrics.jsonl`` and scalars to TensorBoard.

    Training records hold ``train/<loss term>`` (no unit) and ``lr`` at their ``iter``;
    evaluation records ``<section>/<metric>`` and ``epoch``: plain numbers, the evaluators'
    percentages on COCO's 0-100 scale (``bbox/AP50`` 81.5 is 81.5 %), ``speed/ms_per_image`` in
    milliseconds (:mod:`visionkit.evaluation.units`).

    Args:
        output_dir: the run's folder.
        tensorboard: also write TensorBoard events under ``tensorboard/``.
        resume_from: a resumed run's first iteration: what the interrupted run logged from it on
            (training records at ``iter >= resume_from``, evaluation records, which carry
            ``epoch``, at ``iter > resume_from``) is cut from ``metrics.jsonl`` and purged from
            the events, so that every iteration and epoch is logged exactly once.
    """

    def __init__(
        self, output_dir: str | Path, tensorboard: bool = True, resume_from: int | None = None
    ) -> None:
        self.path = Path(output_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_from is not None and self.path.exists():
            self._cut_back(resume_from)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                str(Path(output_dir) / "tensorboard"), purge_step=resume_from
            )

    def _cut_back(self, position: int) -> None:
        """Keep the records logged before ``position``; a torn last line (a kill mid-write) goes
        too. Rewritten atomically: the old file or the new one, never an empty or torn one."""
        kept = []
        for raw in self.path.read_bytes().splitlines():
            try:
                line = decode_text(raw, str(self.path))
                record = loads_json(line, str(self.path), allow_nan=True)
                step = int(record["iter"])
            except (DataError, ValueError, KeyError, TypeError):
                continue
            if step < position or (step == position and "epoch" in record):
                kept.append(line + "\n")
        write_text(self.path, "".join(kept))

    def log(self, record: dict[str, Any], step: int) -> None:
        """Write ``record`` (flat dict of numbers/strings) at global iteration ``step``: one whole
        line or, when the disk is full, nothing but a one-line error."""
        append_text(self.path, json.dumps({**record, "iter": step}) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
