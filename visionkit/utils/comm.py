"""Collectives over ``torch.distributed`` for code below the engine (evaluators, mostly).

Every helper is a no-op, or the single-process answer, when no process group of more than one
process is initialized, so callers have a single code path.
"""

from __future__ import annotations

import itertools
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")


def is_distributed() -> bool:
    """True inside an initialized process group of two or more processes."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    """True on rank 0, and in a single process."""
    return not is_distributed() or dist.get_rank() == 0


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` (picklable), in rank order, on rank 0; ``None`` on the others."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size() if is_main_process() else None
    dist.gather_object(obj, out, dst=0)
    return out


def gather_in_order(items: list[T]) -> list[T] | None:
    """Every rank's ``items`` on rank 0, dealt back in turn: rank 0's first, rank 1's first, ...,
    rank 0's second, ... (``None`` on the other ranks; no item may be ``None``). When rank ``r``
    of ``W`` held the indices ``r, r + W, ...`` of a dataset (the engine's ``ShardSampler``),
    that is the dataset's order."""
    shares = gather_to_main(items)
    if shares is None:
        return None
    dealt = itertools.chain.from_iterable(itertools.zip_longest(*shares))
    return [item for item in dealt if item is not None]


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` (picklable) on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over the ranks, on every rank (``tensor`` itself in one process).

    The sum is computed on this rank's current GPU under NCCL and on the CPU otherwise; the
    result stays there."""
    if not is_distributed():
        return tensor
    nccl = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    total = tensor.to(device, copy=True)
    dist.all_reduce(total)
    return total
