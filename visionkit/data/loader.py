"""The toolkit's DataLoaders: workers forked with the parent's heap frozen, and the report of the
unreadable files a :class:`~visionkit.data.bad_images.BadImageGuard` skipped.

A forked worker shares its parent's memory page by page until a page is written. The readers'
indexes are numpy arrays for that reason (``data/packed.py``); the rest of the parent's heap
(torch's, the model's and the config's objects) stays shared only if the workers' garbage
collector leaves it alone, since a full collection writes a header in every tracked object.
:class:`FrozenHeapLoader` forks its workers with the parent's objects frozen (``gc.freeze``), so
a worker's collections never visit them (``benchmarks/coco_scale_loading.py``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from visionkit.data.bad_images import SKIPPED_KEY, SkipReporter


class FrozenHeapLoader(DataLoader):
    """A DataLoader whose worker processes fork with every object of the parent frozen
    (``gc.collect(); gc.freeze()`` just before, ``gc.unfreeze()`` in the parent just after, as
    Python's ``gc.freeze`` documentation advises): the workers' garbage collections skip the
    inherited objects, so their pages stay shared.

    A pass starts its workers when DataLoader's ``__iter__`` creates its iterator: each pass,
    or only the first with ``persistent_workers`` (later passes reuse them: nothing to freeze).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._workers_started = False  # persistent workers, forked by an earlier pass

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers == 0 or self._workers_started:
            return super().__iter__()
        gc.collect()
        gc.freeze()
        try:
            iterator = super().__iter__()  # forks the workers
        finally:
            gc.unfreeze()
        self._workers_started = self.persistent_workers
        return iterator


class ReportingDataLoader(FrozenHeapLoader):
    """A :class:`FrozenHeapLoader` whose :class:`~visionkit.data.bad_images.SkipReporter`
    reports and removes what :class:`~visionkit.data.bad_images.BadImageGuard` put in targets
    (batches are ``(list of images, list of target dicts)``, ``data/build.py``'s
    ``collate_fn``); ``skipped`` is the reporter's (path -> message)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.report = SkipReporter()

    @property
    def skipped(self) -> dict[str, str]:
        return self.report.skipped

    def __iter__(self) -> Iterator[Any]:
        for batch in super().__iter__():
            images, targets = batch
            if not any(SKIPPED_KEY in t for t in targets):
                yield batch
                continue
            kept = [(img, t) for img, t in zip(images, targets, strict=True) if self.report(t)]
            if kept:
                yield [img for img, _ in kept], [t for _, t in kept]
