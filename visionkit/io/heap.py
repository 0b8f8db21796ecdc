"""Python's heap while large acyclic structures are built: a parsed file, the records made
from it."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


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
