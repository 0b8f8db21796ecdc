"""Convert a checkpoint that holds pickled objects into one of tensors and plain data only."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from visionkit.utils.cli import HelpFormatter

EXAMPLES = """\
visionkit reads checkpoints with torch.load(weights_only=True): tensors and plain data (dicts,
lists, tuples, strings, numbers) only, so that a crafted file cannot run code. Checkpoints
written by older visionkit versions hold NumPy objects (the RNG state), which that refuses.

Run this ONCE, on a file you trust: it unpickles INPUT in full (which runs whatever code the file
carries), turns NumPy arrays into tensors and NumPy scalars into numbers, and writes OUTPUT, which
every tool then reads safely. Anything else (objects of other classes) is named and refused.

examples:
  visionkit convert-checkpoint runs/old/last.pth runs/old/last_safe.pth
"""


def plain(value: Any, where: str) -> Any:
    """``value`` with NumPy arrays as tensors and NumPy scalars as Python numbers; raises
    ``CheckpointError`` naming ``where`` for anything that is not tensors and plain data."""
    import numpy as np
    import torch

    from visionkit.errors import CheckpointError

    if isinstance(value, torch.Tensor) or value is None:
        return value
    if isinstance(value, np.generic):  # before float: np.float64 is a float subclass
        if value.dtype.kind not in "biufSU":  # a date, an object, a record: not plain data
            raise CheckpointError(f"{where} is a NumPy {value.dtype}: not tensors or plain data")
        return value.item()
    if isinstance(value, bool | int | float | str | bytes):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise CheckpointError(
                f"{where} is a NumPy array of {value.dtype}: a checkpoint holds numbers only"
            )
        try:
            return torch.from_numpy(value.astype(np.int64) if value.dtype == np.uint32 else value)
        except TypeError:  # float128, ...: no torch dtype
            raise CheckpointError(
                f"{where} is a NumPy array of {value.dtype}, which torch has no type for"
            ) from None
    if isinstance(value, dict):
        return {k: plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise CheckpointError(f"{where} is a {type(value).__name__}: not tensors or plain data")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="visionkit convert-checkpoint", description=EXAMPLES, formatter_class=HelpFormatter
    )
    p.add_argument("input", help="the trusted checkpoint to convert")
    p.add_argument("output", help="where the converted checkpoint goes (not the input)")
    args = p.parse_args(argv)

    import torch

    from visionkit.checkpoints import load_checkpoint, save_checkpoint
    from visionkit.errors import CheckpointError
    from visionkit.io.outputs import check_outputs

    src, dst = Path(args.input), Path(args.output)
    if not src.is_file():
        raise CheckpointError(f"checkpoint not found: {src}")
    check_outputs({"the input": src}, files={"the output": dst})
    try:
        raw = torch.load(src, map_location="cpu", weights_only=False)  # trusted by the user
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {src}: {type(e).__name__}") from None
    converted = plain(raw, "checkpoint")
    save_checkpoint(converted, dst)
    try:
        load_checkpoint(dst)  # what every tool will do with it
    except CheckpointError:
        dst.unlink()  # never leave a file that no tool reads
        raise
    print(f"converted {src} -> {dst}")
    return 0
