"""At most one log line per subject and cause per period: a job refused a thousand times is one line a
minute, and the operator's log stays readable at 10,000 jobs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class Throttle:
    def __init__(self, period: float = 60.0, clock: Callable[[], float] = time.monotonic, size: int = 100_000):
        self.period, self.clock, self.size = period, clock, size
        self._last: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def allow(self, subject: Hashable, cause: Hashable) -> bool:
        """Whether to log (`subject`, `cause`) now; counts it as logged when it is."""
        now = self.clock()
        key = (subject, cause)
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period:
                return False
            if len(self._last) >= self.size:  # forget the stale ones rather than grow without bound
                self._last = {k: t for k, t in self._last.items() if now - t < self.period}
            self._last[key] = now
            return True
