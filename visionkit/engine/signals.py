"""Stopping training cleanly on SIGINT or SIGTERM: checkpoint first, then exit 130 or 143."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing its checkpoint; ``exit_code`` is 128 + the
    signal number (130 for SIGINT, 143 for SIGTERM), as a shell reports a killed command."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopOnSignal:
    """While active (``with``, in the main thread), SIGINT and SIGTERM only record themselves in
    ``signum``; the training loop polls it at its next step and checkpoints before stopping.
    A second signal raises ``KeyboardInterrupt`` at once, without a checkpoint."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
