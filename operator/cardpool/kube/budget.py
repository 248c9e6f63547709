"""A client-side budget for cardpool's Kubernetes API requests, and their metrics.

The API server protects itself (API Priority and Fairness answers 429 with Retry-After), but an operator that
relists or recreates a large job can fire hundreds of requests at once and starve other clients sharing its
priority level. So requests draw on a token bucket like client-go's flowcontrol limiter, and a 429 pauses the
whole client rather than the one thread that saw it: the server's overload is not per thread.

When the budget is the bottleneck (a low rate, or a 429's pause), its waiters are served most urgent first and
in arrival order within a priority: a faulted job's restart must not queue behind the pod creates of a large
job admitted a moment earlier. A request's priority is given to `acquire`, or set for everything a thread does
within `with priority(p):` (the applier marks a whole task that way; the Kube layer does not know tasks).
"""

from __future__ import annotations

import heapq
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter

DEFAULT_QPS = 300.0  # Kueue's defaults; JobSet runs 500/500, client-go's own 5/10 is far too low for a controller
DEFAULT_BURST = 500
DEFAULT_RETRY_AFTER = 1.0  # seconds, when a 429 carries no Retry-After
DEFAULT_PRIORITY = 1  # the applier's Priority.NORMAL: lower numbers are more urgent

REQUESTS = Counter("cardpool_api_requests_total", "Kubernetes API requests by verb, resource and HTTP status "
                   "(\"error\" when no response came)", ["verb", "resource", "code"])
THROTTLE = Counter("cardpool_api_throttle_seconds_total", "Time API requests spent waiting on the client-side "
                   "budget (its rate or a server-requested pause)")

_priority: ContextVar[int] = ContextVar("cardpool_request_priority", default=DEFAULT_PRIORITY)
_EPSILON = 1e-9  # seconds: a token due sooner than this is there (a clock's rounding must not cost a wait)


def current_priority() -> int:
    """The priority `acquire()` uses when given none: the innermost `priority(p)` of this thread, else 1."""
    return _priority.get()


@contextmanager
def priority(p: int) -> Iterator[None]:
    """Within the block, this thread's requests (on every budget) wait as priority `p` (lower is more
    urgent); the previous priority is back afterwards, exceptions included. Module-level rather than per
    budget, because whoever knows a request's urgency (the applier's task) does not hold the client. It is a
    context variable: per thread, and per asyncio task too."""
    token = _priority.set(p)
    try:
        yield
    finally:
        _priority.reset(token)


class RequestBudget:
    """A token bucket (`burst` tokens, refilled at `qps` a second) whose waiters queue by (priority, arrival).
    Only the head of the queue may take a token: it waits until the next one is due (or the pause ends), the
    others until they become the head. A newcomer more urgent than every waiter becomes the head at once, so
    it takes the next token even though the others waited longer. Unlimited (qps <= 0) never waits but still
    honours pauses: the rate is ours to choose, a 429 is the server's.

    Time: on a real clock (the default) waiters block on conditions, woken when the next token is due or when
    they become the head; nothing polls. For tests, a fake `clock` comes with a `sleep(seconds)` that moves it:
    the head then sleeps (without the lock) instead of waiting on the condition. (A fake clock without `sleep`
    works too, for tests that move it by hand: the head waits the real seconds it expects, then looks again.)"""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] | None = None):
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self._clock, self._sleep = clock, sleep
        self._qps = float(qps) if 0 < qps < math.inf else 0.0  # 0: unlimited
        self._burst = float(burst)
        self._lock = threading.Lock()
        self._tokens, self._stamp = self._burst, clock()  # the bucket held _tokens at time _stamp
        self._paused_until = -math.inf
        self._waiting: list[tuple[int, int, threading.Condition]] = []  # a heap of (priority, arrival, wake-up)
        self._arrivals = 0

    def acquire(self, priority: int | None = None) -> float:
        """Blocks until this request may go; returns the seconds it was held. `priority`: lower is more
        urgent; None takes the thread's `current_priority()`."""
        rank = current_priority() if priority is None else priority
        with self._lock:
            start = now = self._clock()
            self._arrivals += 1
            if (not self._waiting or (rank, self._arrivals) < self._waiting[0][:2]) and now >= self._due() - _EPSILON:
                self._take(now)  # nobody more urgent is waiting, and a token is there
                return 0.0
            ticket = (rank, self._arrivals, threading.Condition(self._lock))
            heapq.heappush(self._waiting, ticket)
            try:
                while True:
                    if self._waiting[0] is not ticket:
                        ticket[2].wait()  # until the head leaves and this ticket is the next head
                    elif (delay := self._due() - now) > _EPSILON:
                        self._hold(ticket[2], delay)  # until the next token: a newcomer may take the head meanwhile
                    else:
                        break
                    now = self._clock()
                heapq.heappop(self._waiting)
                self._take(now)
            except BaseException:  # interrupted: leave the queue without a token
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                    heapq.heapify(self._waiting)
                raise
            finally:
                if self._waiting:
                    self._waiting[0][2].notify()  # the (new) head looks at the bucket again
            waited = max(now - start, 0.0)
        if waited:
            THROTTLE.inc(waited)
        return waited

    def _due(self) -> float:
        """When the next token is there (under the lock)."""
        if not self._qps:
            return self._paused_until
        return max(self._paused_until, self._stamp + max(1.0 - self._tokens, 0.0) / self._qps)

    def _level(self, now: float) -> float:
        """The tokens in the bucket at `now` (none are added before _stamp, the end of a pause)."""
        return min(self._burst, self._tokens + max(now - self._stamp, 0.0) * self._qps)

    def _take(self, now: float) -> None:
        if self._qps:
            self._tokens, self._stamp = max(self._level(now) - 1.0, 0.0), max(now, self._stamp)

    def _hold(self, wake: threading.Condition, seconds: float) -> None:
        if self._sleep is None:
            wake.wait(seconds)
            return
        self._lock.release()
        try:
            self._sleep(seconds)
        finally:
            self._lock.acquire()

    def pause_until(self, t: float) -> None:
        """Nobody's request goes before `t` (on the budget's clock); a pause ending no later than the current
        one (or than now) changes nothing. The bucket stands still meanwhile and keeps at most one token, so
        the client resumes at the steady rate: the most urgent waiter goes at `t` (later if the bucket held
        less than a token), the next one interval after it, not a burst, which straight after a 429 would
        likely earn the next one."""
        with self._lock:
            now = self._clock()
            if t <= max(now, self._paused_until):
                return
            if self._qps:
                self._tokens, self._stamp = min(self._level(now), 1.0), t
            self._paused_until = t

    def back_off(self, seconds: float | None = None) -> None:
        """After a 429: pause everyone for the server's Retry-After (None: the 1 s default)."""
        self.pause_until(self._clock() + (DEFAULT_RETRY_AFTER if seconds is None else max(seconds, 0.0)))


def budget_from_env(env: Mapping[str, str] = os.environ) -> RequestBudget:
    """CARDPOOL_KUBE_QPS and CARDPOOL_KUBE_BURST; a bad value stops the operator at start-up, not mid-run."""
    qps_raw = env.get("CARDPOOL_KUBE_QPS", "").strip()
    burst_raw = env.get("CARDPOOL_KUBE_BURST", "").strip()
    try:
        qps = float(qps_raw) if qps_raw else DEFAULT_QPS
        if not (math.isfinite(qps) and qps >= 0):
            raise ValueError
    except ValueError:
        raise ValueError(f"CARDPOOL_KUBE_QPS={qps_raw!r}: must be a number > 0, or 0 for unlimited") from None
    try:
        burst = int(burst_raw) if burst_raw else DEFAULT_BURST
        if burst < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"CARDPOOL_KUBE_BURST={burst_raw!r}: must be an integer >= 1") from None
    return RequestBudget(qps, burst)


def record(verb: str, resource: str, code: str) -> None:
    REQUESTS.labels(verb, resource, code).inc()


_VERBS = {"read": "get", "replace": "update", "list": "list", "create": "create", "patch": "patch",
          "delete_collection": "deletecollection", "delete": "delete"}  # delete_collection before delete
_SUBRESOURCES = {"status", "scale", "eviction", "log", "binding", "token", "ephemeralcontainers", "approval",
                 "finalize"}
_WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def verb_and_resource(fn_name: str, args: tuple) -> tuple[str, str]:
    """The generated client's names are regular (`<verb>_[namespaced_|cluster_]<kind>[_<subresource>]`), so
    the metric labels follow from them rather than from a table that would drift. Never raises: a metric
    label is not worth a failed request."""
    name = fn_name.removesuffix("_with_http_info")
    prefix = next((p for p in _VERBS if name.startswith(p + "_")), None)
    if prefix is None:
        head, _, rest = name.partition("_")
        return head, rest
    rest = name[len(prefix) + 1:].removesuffix("_for_all_namespaces")
    namespaced = rest.startswith("namespaced_")
    rest = rest.removeprefix("namespaced_").removeprefix("cluster_")
    kind, _, sub = rest.rpartition("_")
    if sub not in _SUBRESOURCES or not kind:
        kind, sub = rest, ""
    if kind == "custom_object":
        plural = args[3 if namespaced else 2] if len(args) > (3 if namespaced else 2) else "customobjects"
        resource = str(plural)
    else:
        resource = _plural(kind.replace("_", ""))
    return _VERBS[prefix], f"{resource}/{sub}" if sub else resource


def _plural(kind: str) -> str:
    """Kubernetes' own rule for resource names (gengo's namer), with its one irregular kind."""
    if not kind or kind == "endpoints":
        return kind
    if kind.endswith(("s", "x", "z", "ch", "sh")):
        return kind + "es"
    if kind.endswith("y") and kind[-2:-1] not in ("a", "e", "i", "o", "u", ""):
        return kind[:-1] + "ies"
    return kind + "s"


def is_write(verb: str) -> bool:
    return verb in _WRITES


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's Retry-After on a 429, in seconds; None otherwise, or when absent or not a number (the
    HTTP-date form is legal but the API server sends seconds)."""
    if not isinstance(exc, ApiException) or exc.status != 429 or not exc.headers:
        return None
    headers: Any = exc.headers
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None
