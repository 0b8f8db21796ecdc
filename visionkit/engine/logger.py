"""Metrics to a JSONL file and to TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Appends one JSON object per record to ``metrics.jsonl`` and scalars to TensorBoard."""

    def __init__(self, output_dir: str | Path, tensorboard: bool = True) -> None:
        self.path = Path(output_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"))

    def log(self, record: dict[str, Any], step: int) -> None:
        """Write ``record`` (flat dict of numbers/strings) at global iteration ``step``."""
        with self.path.open("a") as f:
            f.write(json.dumps({**record, "iter": step}) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
