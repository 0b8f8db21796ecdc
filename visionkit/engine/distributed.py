"""Training in several processes under torchrun (docs/distributed.md).

The process group comes from torchrun's environment; each rank trains on its own share of every
epoch's permutation (:class:`EpochSampler`), gradients are averaged by DistributedDataParallel
around :class:`LossForward`, and evaluation runs on every rank's shard of the validation set and
is gathered onto rank 0 (:class:`GatheredEvaluator`). With one process everything here is a
no-op, so the trainer has a single code path.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

from visionkit.errors import ConfigError, VisionkitError
from visionkit.evaluation.build import Evaluator
from visionkit.utils.comm import broadcast_from_main, is_main_process


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job; ``world_size`` 1 is plain single-process training."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(backend: str, device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
    ``MASTER_ADDR``, ``MASTER_PORT``); without torchrun, or with one process, rank 0 of 1.

    ``backend`` ``auto`` is NCCL on CUDA and gloo on the CPU. A CUDA ``device`` becomes
    ``cuda:<LOCAL_RANK>``: one GPU per process.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)
    if device.type == "cuda":
        if info.local_rank >= torch.cuda.device_count():
            raise VisionkitError(
                f"local rank {info.local_rank} has no GPU: {torch.cuda.device_count()} visible; "
                "start at most that many processes per node (--nproc_per_node)"
            )
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError("train.dist_backend=nccl needs CUDA; use gloo (or auto) on the CPU")
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return info, device


def close_distributed() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (nothing with one process)."""
    if info.enabled:
        dist.barrier()


@contextlib.contextmanager
def local_main_first(info: DistInfo) -> Iterator[None]:
    """The block runs on each node's local rank 0 first, then on the other ranks: caches that
    the block fills on disk (generated datasets, proposals) are written by one process."""
    if info.local_rank != 0:
        barrier(info)
    yield
    if info.local_rank == 0:
        barrier(info)


def rank_seed(seed: int, rank: int) -> int:
    """A seed of ``rank``'s own random stream; rank 0's is ``seed`` itself."""
    return seed + (rank << 32)


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffles by ``seed`` and the epoch alone (resumable) and deals this rank its share.

    Every rank draws the same permutation, pads it with its first indices to a multiple of
    ``world_size`` and takes every ``world_size``-th position from its ``rank`` on: the shares
    are disjoint (but for the padding), of equal length (so every rank runs the same number of
    batches), and batch ``k`` of all ranks together holds the images of batch ``k`` of one
    process with the combined batch size. ``set_epoch(epoch, start)`` skips the first ``start``
    positions of the padded permutation: those all ranks consumed before an interruption.

    It yields ``(index, augmentation seed)``: each position of the epoch has its own seed, drawn
    with the permutation, which :class:`~visionkit.data.bad_images.BadImageGuard` gives the
    augmentation before reading the sample. So a sample's augmentation depends on the seed, the
    epoch and its position only: the same with any number of loader workers, and after a resume.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.padded = math.ceil(size / world_size) * world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if start % self.world_size:
            raise ValueError(f"start {start} is not a multiple of world size {self.world_size}")
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        order = torch.randperm(self.size, generator=g).tolist()
        order = (order * math.ceil(self.padded / max(self.size, 1)))[: self.padded]
        seeds = torch.randint(2**31, (self.padded,), generator=g).tolist()
        positions = range(self.start + self.rank, self.padded, self.world_size)
        return iter([(order[j], seeds[j]) for j in positions])

    def __len__(self) -> int:
        return max(self.padded - self.start, 0) // self.world_size


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` in order: one rank's part of an evaluation, no
    index twice (shares may differ in length by one)."""

    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, size, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class LossForward(nn.Module):
    """``forward(images, targets)`` is ``model.loss``: DistributedDataParallel averages the
    gradients of what runs through ``forward`` only, and models compute losses in ``loss``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: list[Tensor], targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        return self.model.loss(images, targets)


def wrap_for_training(
    model: nn.Module, info: DistInfo, device: torch.device, find_unused_parameters: bool
) -> nn.Module:
    """``model.loss`` as a module's ``forward``, in DistributedDataParallel when distributed."""
    net = LossForward(model)
    if not info.enabled:
        return net
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(
        net, device_ids=ids, find_unused_parameters=find_unused_parameters
    )


def gradient_sync(net: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Around a backward pass: DDP's ``no_sync`` (gradients accumulate locally) unless ``sync``."""
    if isinstance(net, DistributedDataParallel) and not sync:
        return net.no_sync()
    return contextlib.nullcontext()


def any_rank(info: DistInfo, device: torch.device, *flags: bool) -> list[bool]:
    """Each flag, true if it is true on some rank (one ``all_reduce``)."""
    if not info.enabled:
        return list(flags)
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def mean_over_ranks(
    info: DistInfo, device: torch.device, values: dict[str, float]
) -> dict[str, float]:
    """The mean of each value over the ranks (every rank passes the same keys)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: v / info.world_size for k, v in zip(keys, t.tolist(), strict=True)}


class GatheredEvaluator:
    """An evaluator fed, on every rank, with that rank's :class:`ShardSampler` share of the
    validation set; ``evaluate`` has it combine the shares on rank 0 (its ``synchronize``:
    segmentation sums confusion matrices, box evaluators gather per-image predictions in the
    dataset's order, so scores are those of a single-process evaluation), scores them there
    once, and returns rank 0's metrics on every rank.
    """

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator

    def process(self, targets: list[dict[str, Any]], predictions: list[dict[str, Tensor]]) -> None:
        self.evaluator.process(targets, predictions)

    def evaluate(self) -> dict[str, dict[str, float]]:
        self.evaluator.synchronize()
        metrics = self.evaluator.evaluate() if is_main_process() else None
        return broadcast_from_main(metrics)
