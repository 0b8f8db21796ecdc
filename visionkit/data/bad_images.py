"""Unreadable files inside a dataset: skipped and reported, or a clear stop (``data.on_bad_image``).

:class:`BadImageGuard` wraps every dataset :func:`~visionkit.data.build.build_dataset` returns.
A sample whose image (or label map) raises :class:`~visionkit.errors.UnreadableImageError` (a
missing, empty, truncated or undecodable file) is handled by the policy:

- ``stop``: the error is raised with its one line naming the file (``visionkit's jobs`` print it and
  exit 1, also from a DataLoader worker, through ``utils/cli.one_line``).
- ``skip`` (default): ``dataset[i]`` returns the sample of the next readable index instead
  (``i + 1``, ``i + 2``, ... modulo the length, deterministic; at most :data:`MAX_ATTEMPTS`
  files in a row, else a DataError), its target carrying ``skipped``: the ``(path, message)``
  pairs passed over. Evaluation datasets (``keep_stand_ins=False``) also mark it ``stand_in``.

:class:`~visionkit.data.loader.ReportingDataLoader` (what
:func:`~visionkit.data.build.build_dataloader` returns) reads those keys in the main process,
whatever the number of workers, with a :class:`SkipReporter`: it prints one warning line on
stderr the first time it sees each unreadable file, keeps them in ``skipped`` (path -> message),
removes the keys from the targets, and drops ``stand_in`` samples. So a pass over a training
loader yields ``len(dataset)`` samples, each unreadable one replaced by a copy of the next
readable one (batches keep their size); a pass over an evaluation loader yields every readable
sample exactly once (``len(dataset)`` minus the unreadable ones), and evaluators score only those.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from visionkit.data.transforms import seed_transforms
from visionkit.errors import DataError, UnreadableImageError
from visionkit.utils.warn import warn

MAX_ATTEMPTS = 16  # unreadable files in a row before skipping gives up
SKIPPED_KEY = "skipped"  # target key: [(path, message), ...] passed over to reach this sample
STAND_IN_KEY = "stand_in"  # target key: True when an evaluation loader must drop the sample


class BadImageGuard(Dataset):
    """``dataset`` with unreadable samples skipped or stopped at, as the module docstring says.

    Every other attribute (``ids``, ``coco``, ``cat_ids``, ``class_names``, ``transforms``,
    ``image_path``, ...) is the wrapped dataset's.

    Args:
        dataset: any map-style dataset of ``(image, target dict)`` samples.
        policy: ``"skip"`` or ``"stop"``.
        keep_stand_ins: training (True): the next readable sample replaces an unreadable one;
            evaluation (False): it is marked ``stand_in`` for the loader to drop.
    """

    def __init__(
        self, dataset: Any, policy: Literal["skip", "stop"] = "skip", keep_stand_ins: bool = True
    ) -> None:
        self.dataset, self.policy, self.keep_stand_ins = dataset, policy, keep_stand_ins

    def __getattr__(self, name: str) -> Any:
        if name == "dataset" or name.startswith("__"):  # unpickling: not set yet
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Sample ``key``: an index, or ``(index, seed)`` (what
        :class:`~visionkit.engine.distributed.EpochSampler` yields), the augmentation seeded with
        ``seed`` before the read."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        if self.policy == "stop":
            try:
                return self._read(index, seed)
            except UnreadableImageError as e:
                raise UnreadableImageError(
                    f"{e} (data.on_bad_image=skip skips unreadable files)", e.path
                ) from None
        skipped: list[tuple[str, str]] = []
        for attempt in range(min(len(self.dataset), MAX_ATTEMPTS)):
            try:  # a stand-in gets the same augmentation draw
                image, target = self._read((index + attempt) % len(self.dataset), seed)
            except UnreadableImageError as e:
                skipped.append((e.path or str(e), str(e)))
                continue
            if skipped:
                target[SKIPPED_KEY] = skipped
                if not self.keep_stand_ins:
                    target[STAND_IN_KEY] = True
            return image, target
        raise DataError(
            f"{len(skipped)} unreadable files in a row from sample {index} "
            f"(first: {skipped[0][1]}); is the dataset's image folder right?"
        )

    def _read(self, index: int, seed: int | None) -> tuple[torch.Tensor, dict[str, Any]]:
        if seed is not None:
            seed_transforms(self.dataset, seed)
        return self.dataset[index]


class SkipReporter:
    """Reads and removes what :class:`BadImageGuard` put in targets, warning once per file.

    Attributes:
        skipped: path -> message of each unreadable file seen so far, in the order seen.
    """

    def __init__(self) -> None:
        self.skipped: dict[str, str] = {}

    def __call__(self, target: dict[str, Any]) -> bool:
        """Record ``target``'s skipped files, printing one warning line on stderr for each one
        not seen before, and remove the keys; False for an evaluation stand-in to drop."""
        for path, message in target.pop(SKIPPED_KEY, ()):
            if path not in self.skipped:
                self.skipped[path] = message
                warn(f"skipped ({len(self.skipped)} so far): {message}")
        return not target.pop(STAND_IN_KEY, False)
