"""The process's heaps: Python's while large acyclic structures are built (a parsed file, the
records made from it), and the C allocator's under the large tensors of a training step."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import sys
from collections.abc import Iterator

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 256 << 20  # blocks below this come from the heap and are reused
OLD_GLIBC_MMAP_THRESHOLD = 32 << 20  # the most glibc < 2.35 accepts (half its HEAP_MAX_SIZE)
TRIM_THRESHOLD = 512 << 20  # free memory kept at the heap's top before it is given back
_kept: bool | None = None  # what keep_large_blocks decided, once per process


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block, then as it was.

    Building hundreds of thousands of containers (a parsed 500,000-record predictions file, the
    records COCOeval loads) sets off full collections, each a walk over every object of the
    process (torch's modules alone hold some 400,000): at a COCO-sized evaluation, as long as the
    building itself. Such records hold no reference cycles, and reference counting frees them;
    a block that makes cycles is collected at the next collection after it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def keep_large_blocks() -> bool:
    """Keep freed tensor memory for reuse instead of returning it to the kernel (glibc, Linux).

    glibc serves a block above its mmap threshold (128 KiB at start, raised as large blocks are
    freed, at most 32 MiB) with a fresh ``mmap`` and unmaps it when freed: every training step
    then page-faults its large activations and gradients in again, page by page, zero-filled
    by the kernel. Measured on ``faster_rcnn_shapes`` (2-core CPU, bfloat16): 12,000-21,000
    page faults and 7-9 % more time per step in the processes where the threshold had not
    risen, ~100 faults per step with this setting (docs/benchmarks.md). Blocks below 256 MiB
    come from the heap (32 MiB on glibc older than 2.35, the most it accepts), and up to 512 MiB
    of free memory stays at its top: memory is kept rather than given back and taken again. The
    price is fragmentation: the heap settles within tens of steps at up to ~1.5 times one
    step's large tensors above glibc's default peak, then stops growing (docs/benchmarks.md;
    within 2 % of the peak in the Faster R-CNN runs).

    Left alone where the user decided: any ``MALLOC_*_`` variable set (glibc's own tuning;
    ``MALLOC_MMAP_THRESHOLD_=131072`` is glibc's default, the way to opt out), malloc tunables in
    ``GLIBC_TUNABLES``, or another allocator in ``LD_PRELOAD``; a no-op off glibc.
    Returns whether the setting is in force (the first call decides, once per process).
    """
    global _kept
    if _kept is None:
        _kept = _set_thresholds()
    return _kept


def _set_thresholds() -> bool:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    if any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ):
        return False  # the user's glibc tuning
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    if any(
        name in os.environ.get("LD_PRELOAD", "") for name in ("jemalloc", "tcmalloc", "mimalloc")
    ):
        return False
    try:
        libc = ctypes.CDLL(None)  # the process's own C library
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # glibc < 2.35 refuses a threshold above 32 MiB (mallopt returns 0): the most it takes then
    mmap = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) or mallopt(
        M_MMAP_THRESHOLD, OLD_GLIBC_MMAP_THRESHOLD
    )
    return bool(mmap) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
