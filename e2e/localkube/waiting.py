"""Bounded waits: every wait on the cluster has a deadline and says what it waited for when it fails."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class NotYet(Exception):
    """Raised by a check to say "not yet" along with what it saw, which the timeout message then shows."""


class WaitTimeout(AssertionError):
    """Raised when a condition did not hold before its deadline.

    An AssertionError so that pytest reports it as a failed expectation, with the message first.
    """


def wait_for(
    what: str,
    check: Callable[[], T],
    timeout: float,
    interval: float = 0.5,
    fatal: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll `check` until it returns a truthy value, at most `timeout` seconds.

    Exceptions raised by `check` count as "not yet" (the API may be briefly unavailable), except those listed
    in `fatal`, which end the wait at once. The last error and the last value seen are part of the timeout
    message, so a failure shows what was observed, not only what was expected.
    """
    deadline = time.monotonic() + timeout
    last_value: object = None
    last_error: BaseException | None = None
    while True:
        try:
            last_value = check()
            if last_value:
                return last_value
            last_error = None
        except fatal:
            raise
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            if isinstance(last_error, NotYet):
                detail = f"last seen: {last_error}"
            elif last_error:
                detail = f"last error: {last_error!r}"
            else:
                detail = f"last value: {_short(last_value)}"
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}; {detail}")
        time.sleep(interval)


def _short(value: object, limit: int = 600) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
