"""When a training loop should save: every advised interval of training, or its own default until the operator
has advice (it needs one reported save time first)."""

from __future__ import annotations

import time
from collections.abc import Callable

from .contract import Contract


class SaveSchedule:
    """    schedule = SaveSchedule(contract, default_seconds=600)
    for step in ...:
        train(step)
        if schedule.due():
            saved = checkpoints.save(step, ...)
            report_checkpoint(contract, saved)
            schedule.saved()
    """

    def __init__(self, contract: Contract, default_seconds: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if default_seconds <= 0:
            raise ValueError(f"default_seconds must be positive, got {default_seconds}")
        self.interval_seconds = float(contract.checkpoint_interval_seconds or default_seconds)
        self.advised = contract.checkpoint_interval_seconds is not None
        self._clock = clock
        self._last = clock()

    def due(self) -> bool:
        """Whether an interval of training has passed since the attempt began or the last save."""
        return self._clock() - self._last >= self.interval_seconds

    def saved(self) -> None:
        """A save finished: the next is due an interval from now."""
        self._last = self._clock()
