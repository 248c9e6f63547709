"""What the operator wrote and waits to see back in its watches, per object (client-go's controller
expectations).

The indexes lag behind the operator's own writes. Deciding a job again before they caught up would decide on
a past the operator has already changed: place an attempt twice, create pods that exist, count a restart
twice. So while a job's effects are in flight, or written but not yet seen, the job is settling: the pass
does not decide it, and reads the status it wrote instead of the one observed (its cards stay held). It
settles when its work is done and the watch shows the status version it wrote, every pod it created and none
it deleted; or when that takes longer than `timeout` (a lost watch event), when it is observed afresh.
A work that failed holds the job back from being decided again for a backoff that doubles up to `max_backoff`
(an object the API refuses is not retried in a hot loop), and the error is kept to be reported.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger("cardpool.expectations")
F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """The pass reads, the applier's workers write: one lock keeps each step whole."""
    @functools.wraps(method)
    def wrapper(self: Expectations, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper  # type: ignore[return-value]


@dataclass
class Expectation:
    since: float
    """When the work was handed over, then when it finished (monotonic seconds)."""
    decided_on: int
    """resourceVersion of the object the plan was decided on."""
    status: Any = None
    """The status the plan writes: what the pass reads of the object until the watch shows it."""
    written: int | None = None
    """resourceVersion the status write produced."""
    creates: set[str] = field(default_factory=set)
    deletes: set[str] = field(default_factory=set)
    working: bool = True
    """Its work has not finished."""
    failed: bool = False


@dataclass
class _Backoff:
    failures: int
    until: float
    error: str


class Expectations:
    def __init__(self, timeout: float = 60.0, base_backoff: float = 1.0, max_backoff: float = 300.0):
        self.timeout, self.base_backoff, self.max_backoff = timeout, base_backoff, max_backoff
        self._open: dict[str, Expectation] = {}
        self._backoff: dict[str, _Backoff] = {}
        self._lock = threading.RLock()

    @_locked
    def expect(self, key: str, now: float, decided_on: int, status: Any = None, creates: Iterable[str] = (),
               deletes: Iterable[str] = ()) -> None:
        self._open[key] = Expectation(now, decided_on, status, creates=set(creates), deletes=set(deletes))

    @_locked
    def wrote(self, key: str, version: int) -> None:
        if (exp := self._open.get(key)) is not None:
            exp.written = version

    @_locked
    def create_failed(self, key: str, name: str) -> None:
        """A create that did not happen: nothing to wait for."""
        if (exp := self._open.get(key)) is not None:
            exp.creates.discard(name)

    @_locked
    def finished(self, key: str, now: float, error: BaseException | None = None, conflict: bool = False) -> None:
        """The work of `key` is over. `conflict`: the object changed since it was decided on (409): decide
        again as soon as the watch shows the newer version, without backoff. Any other error backs off."""
        exp = self._open.get(key)
        if exp is None:
            return
        exp.working = False
        exp.since = now  # the watch's lag counts from here, however long the work took
        if error is None:
            self._backoff.pop(key, None)
            return
        exp.failed = True
        exp.creates.clear()
        exp.deletes.clear()
        if exp.written is None:  # a status never written is not the truth: the observed one is
            exp.status = None
            if not conflict:  # nothing of it to wait for: only the backoff holds the object
                del self._open[key]
        if conflict:
            return
        previous = self._backoff.get(key)
        failures = previous.failures + 1 if previous else 1
        delay = min(self.base_backoff * 2 ** (failures - 1), self.max_backoff)
        self._backoff[key] = _Backoff(failures, now + delay, describe(error))

    @_locked
    def settled(self, key: str, now: float, observed_version: int, pods: Collection[str] = (),
                deleting: Collection[str] = ()) -> bool:
        """Whether `key` may be decided again, given what the indexes show now: its resourceVersion, the
        names of its pods and of those being deleted. Forgets what is settled."""
        backoff = self._backoff.get(key)
        if backoff is not None and now < backoff.until:
            return False
        exp = self._open.get(key)
        if exp is None:
            return True
        if exp.working and now - exp.since < self.timeout:
            return False
        seen = exp.written is None or observed_version >= exp.written
        if exp.failed and exp.written is None:
            seen = observed_version > exp.decided_on or now - exp.since >= self.timeout
        done = seen and exp.creates.issubset(pods) and not (exp.deletes & (set(pods) - set(deleting)))
        if not done and now - exp.since < self.timeout:
            return False
        if not done:
            log.warning("%s: not seen in the watch %.0f s after its effects (status %s, creates %d, deletes "
                        "%d); deciding again from what is observed", key, now - exp.since,
                        "seen" if seen else "unseen", len(exp.creates - set(pods)), len(exp.deletes))
        del self._open[key]
        return True

    @_locked
    def overlay(self, key: str) -> Any:
        """The status written (or being written) for `key`, while it is not settled; None otherwise."""
        exp = self._open.get(key)
        return exp.status if exp is not None else None

    @_locked
    def waiting(self, key: str) -> bool:
        return key in self._open or key in self._backoff

    @_locked
    def next_check(self, now: float) -> float | None:
        """When a settling object could settle by time alone (a backoff or a timeout ends)."""
        moments = [b.until for b in self._backoff.values() if b.until > now]
        moments += [e.since + self.timeout for e in self._open.values()]
        return min(moments) if moments else None

    @_locked
    def error(self, key: str) -> str | None:
        backoff = self._backoff.get(key)
        return backoff.error if backoff else None

    @_locked
    def forget(self, keys: Collection[str] | None = None) -> None:
        """Everything (leadership lost: the next leader starts from what is observed), or `keys` (deleted)."""
        if keys is None:
            self._open.clear()
            self._backoff.clear()
            return
        for key in keys:
            self._open.pop(key, None)
            self._backoff.pop(key, None)

    @_locked
    def open_keys(self) -> list[str]:
        return list(self._open)


def describe(error: BaseException) -> str:
    status, reason = getattr(error, "status", None), getattr(error, "reason", None)
    body = getattr(error, "body", None)
    if status is not None:
        text = f"HTTP {status} {reason or ''}".strip()
        return f"{text}: {body[:300]}" if isinstance(body, str) and body else text
    return f"{type(error).__name__}: {error}"[:300]
