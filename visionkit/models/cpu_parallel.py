"""torchvision's single-threaded CPU kernels (NMS, RoI pooling, RoIAlign) spread over the CPU's
threads, with results identical to one call.

torchvision's CPU ``nms``, ``roi_pool`` and ``roi_align`` kernels (forward and backward) loop on
one core; on a CPU they are a third to a half of a two-stage detector's time at the quick
configs' sizes while the other cores idle. They release the GIL, so independent calls run in
parallel from a small pool of Python threads:

- :func:`parallel_map` runs independent calls (per image, per class group) on the pool;
- :func:`grouped_nms_cpu` is ``torchvision.ops.batched_nms``'s per-group loop with the groups'
  ``nms`` calls on the pool (the same kept indices in the same order);
- :func:`pool_rois` pools RoIs in contiguous per-image chunks, forward and backward (each
  chunk's gradient lands in its own images' slice, accumulated in the same order as one call:
  bitwise the same gradient).

The pool has ``torch.get_num_threads()`` workers (so ``OMP_NUM_THREADS=1`` keeps everything on
the calling thread); CUDA tensors, traced graphs and calls from inside a worker run as one call.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
from torch import Tensor
from torchvision.ops import nms, roi_align, roi_pool

T = TypeVar("T")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_in_worker = threading.local()


def cpu_workers() -> int:
    """How many threads the CPU kernels may use: torch's intra-op thread count; 1 while tracing
    or inside a worker (no nested pools)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or getattr(_in_worker, "busy", False):
        return 1
    return max(torch.get_num_threads(), 1)


def _openmp_set_num_threads() -> Callable[[int], None] | None:
    """``omp_set_num_threads`` of the OpenMP runtime torch has loaded (its own copy, found in
    the process's memory map), or None where it cannot be found (not Linux, no OpenMP)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "omp" in line.rsplit("/", 1)[-1]}
    except OSError:
        return None
    for path in sorted(paths):
        with contextlib.suppress(OSError, AttributeError):
            return ctypes.CDLL(path).omp_set_num_threads
    return None


def _single_threaded_worker() -> None:
    """Pool thread initializer: torch operators on this thread run without an OpenMP team of
    their own. Each thread that enters a parallel region gets a team whose threads spin after
    it; a pool thread's team would spin beside the main thread's convolutions (measured: 12 %
    slower training steps). ATen sets a new thread's OpenMP thread count on its first call, so
    that call comes first."""
    torch.get_num_threads()
    set_threads = _openmp_set_num_threads()
    if set_threads is not None:
        set_threads(1)


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(
                workers, thread_name_prefix="visionkit-cpu", initializer=_single_threaded_worker
            )
        return _pool


def _as_worker(fn: Callable[[T], R]) -> Callable[[T], R]:
    def run(item: T) -> R:
        _in_worker.busy = True
        try:
            return fn(item)
        finally:
            _in_worker.busy = False

    return run


def parallel_map(
    fn: Callable[[T], R], items: Iterable[T], device: torch.device | str = "cpu"
) -> list[R]:
    """``[fn(x) for x in items]``, on the thread pool when there are several items and threads
    and ``device`` (where ``fn``'s tensors live) is the CPU. ``fn`` must be independent per
    item and thread-safe (torch operators on separate tensors are). The results keep the items'
    order; an exception in ``fn`` is raised here."""
    items = list(items)
    workers = min(cpu_workers(), len(items)) if torch.device(device).type == "cpu" else 1
    if workers <= 1:
        return [fn(x) for x in items]
    return list(_executor(cpu_workers()).map(_as_worker(fn), items))


def grouped_nms_cpu(
    boxes: Tensor, scores: Tensor, groups: Tensor, iou_thresh: float, stable: bool = False
) -> Tensor:
    """NMS within each group: ``torchvision.ops.boxes._batched_nms_vanilla``'s loop (what
    ``batched_nms`` runs on the CPU above 1,000 boxes) with the groups on the thread pool.

    Args:
        boxes: ``(K, 4)`` float xyxy. scores: ``(K,)``. groups: ``(K,)`` int64.
        stable: equal scores keep their input order in the result (torchvision's final sort is
            not stable: its order of ties is an accident of the sort).

    Returns:
        ``(D,)`` int64 indices of the kept boxes by decreasing score: the same as
        ``batched_nms``'s per-group path, element for element (with ``stable``: where the kept
        scores are distinct).
    """
    members = [torch.where(groups == g)[0] for g in torch.unique(groups)]

    def keep(idx: Tensor) -> Tensor:
        return idx[nms(boxes[idx], scores[idx], iou_thresh)]

    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for kept in parallel_map(keep, members):
        keep_mask[kept] = True
    keep_indices = torch.where(keep_mask)[0]
    return keep_indices[scores[keep_indices].sort(descending=True, stable=stable)[1]]


def _image_chunks(rois: Tensor, workers: int) -> list[tuple[int, int, int, int]] | None:
    """Contiguous ``(roi start, roi end, first image, end image)`` chunks of about equal RoI
    counts that never split an image, for rois sorted by image index; None when they are not
    sorted or there is nothing to split."""
    if workers <= 1 or rois.shape[0] < 2 * workers:
        return None
    image = rois[:, 0].long()
    if bool((image[1:] < image[:-1]).any()):
        return None
    ends = torch.unique_consecutive(image, return_counts=True)[1].cumsum(0).tolist()
    total, bounds = ends[-1], [0]
    for end in ends[:-1]:  # cut at the image boundary past each 1/workers of the RoIs
        if end >= total * len(bounds) / workers:
            bounds.append(end)
    bounds.append(total)
    if len(bounds) < 3:
        return None
    return [
        (lo, hi, int(image[lo]), int(image[hi - 1]) + 1)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _chunk_rois(rois: Tensor, chunk: tuple[int, int, int, int]) -> Tensor:
    """A chunk's rois with image indices counted from its first image (a copy)."""
    lo, hi, i0, _ = chunk
    sub = rois[lo:hi].clone()
    sub[:, 0] -= i0
    return sub


class _ChunkedRoIPool(torch.autograd.Function):
    """``torchvision.ops.roi_pool`` / ``roi_align`` on per-image chunks of the RoIs, in
    parallel, forward and backward."""

    @staticmethod
    def forward(ctx, features: Tensor, rois: Tensor, kind: str, size: int, scale: float,
                sampling_ratio: int, aligned: bool, chunks: list) -> Tensor:  # fmt: skip
        features = features.contiguous()

        def run(chunk: tuple[int, int, int, int]) -> tuple[Tensor, Tensor | None]:
            lo, hi, i0, i1 = chunk
            sub = _chunk_rois(rois, chunk)
            if kind == "roi_pool":
                return torch.ops.torchvision.roi_pool(features[i0:i1], sub, scale, size, size)
            out = torch.ops.torchvision.roi_align(
                features[i0:i1], sub, scale, size, size, sampling_ratio, aligned
            )
            return out, None

        parts = parallel_map(run, chunks)
        ctx.save_for_backward(rois, *[a for _, a in parts if a is not None])
        ctx.meta = (kind, size, scale, sampling_ratio, aligned, chunks, features.shape)
        return torch.cat([out for out, _ in parts])

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        rois, *argmax = ctx.saved_tensors
        kind, size, scale, sampling_ratio, aligned, chunks, shape = ctx.meta
        grad = grad.contiguous()
        _, c, h, w = shape

        def run(job: tuple[int, tuple[int, int, int, int]]) -> Tensor:
            k, (lo, hi, i0, i1) = job
            sub = _chunk_rois(rois, job[1])
            if kind == "roi_pool":
                return torch.ops.torchvision._roi_pool_backward(
                    grad[lo:hi], sub, argmax[k], scale, size, size, i1 - i0, c, h, w
                )
            return torch.ops.torchvision._roi_align_backward(
                grad[lo:hi], sub, scale, size, size, i1 - i0, c, h, w, sampling_ratio, aligned
            )

        parts = parallel_map(run, list(enumerate(chunks)))
        grad_features = grad.new_zeros(shape)
        for (_, _, i0, i1), part in zip(chunks, parts, strict=True):
            grad_features[i0:i1] = part
        return grad_features, None, None, None, None, None, None, None


def pool_rois(
    features: Tensor,
    rois: Tensor,
    kind: str,
    size: int,
    scale: float,
    sampling_ratio: int = 0,
    aligned: bool = False,
) -> Tensor:
    """``roi_pool`` or ``roi_align`` of ``rois`` on ``features``, spread over the CPU threads.

    Args:
        features: ``(N, C, H, W)`` float32. rois: ``(R, 5)`` float ``(image index, x1, y1, x2,
            y2)``. kind: ``roi_pool`` or ``roi_align``. size: the ``k`` of ``k x k`` bins.
        scale: feature pixels per input pixel. sampling_ratio, aligned: RoIAlign's.

    Returns:
        ``(R, C, k, k)``: torchvision's result, bitwise, with the same gradient. RoIs not
        sorted by image, CUDA tensors, one thread or a traced graph: one torchvision call.
    """
    chunks = None
    if features.device.type == "cpu" and not torch.jit.is_tracing():
        chunks = _image_chunks(rois, cpu_workers())
    if chunks is None:
        if kind == "roi_pool":
            return roi_pool(features, rois, size, scale)
        return roi_align(features, rois, size, scale, sampling_ratio, aligned)
    return _ChunkedRoIPool.apply(features, rois, kind, size, scale, sampling_ratio, aligned, chunks)
