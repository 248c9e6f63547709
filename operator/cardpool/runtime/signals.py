"""Planned disruptions (drain, migration, suspend, scale-up) arrive as SIGTERM with a grace period: the
trainer saves a checkpoint at its next step boundary and exits."""

from __future__ import annotations

import signal
import threading


class GracefulStop:
    """Install with `stop = GracefulStop()`; the training loop checks `stop.requested` after each step."""

    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM,)):
        self._event = threading.Event()
        for sig in signals:
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self) -> None:
        self._event.set()
