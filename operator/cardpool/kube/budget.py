"""A client-side budget for cardpool's Kubernetes API requests, and their metrics.

The API server protects itself (API Priority and Fairness answers 429 with Retry-After), but an operator that
relists or recreates a large job can fire hundreds of requests at once and starve other clients sharing its
priority level. So requests draw on a token bucket like client-go's flowcontrol limiter, and a 429 pauses the
whole client rather than the one thread that saw it: the server's overload is not per thread.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter

DEFAULT_QPS = 300.0  # Kueue's defaults; JobSet runs 500/500, client-go's own 5/10 is far too low for a controller
DEFAULT_BURST = 500
DEFAULT_RETRY_AFTER = 1.0  # seconds, when a 429 carries no Retry-After

REQUESTS = Counter("cardpool_api_requests_total", "Kubernetes API requests by verb, resource and HTTP status "
                   "(\"error\" when no response came)", ["verb", "resource", "code"])
THROTTLE = Counter("cardpool_api_throttle_seconds_total", "Time API requests spent waiting on the client-side "
                   "budget (its rate or a server-requested pause)")


class RequestBudget:
    """A token bucket kept as a schedule (GCRA): each acquire reserves the next slot under the lock and sleeps
    outside it, so waiters go in arrival order without polling. Unlimited (qps <= 0) still honours pauses:
    the rate is ours to choose, a 429 is the server's."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self._clock, self._sleep = clock, sleep
        self._interval = 1.0 / qps if qps > 0 else 0.0
        self._tolerance = (burst - 1) * self._interval  # how far ahead of the steady rate a burst may run
        self._lock = threading.Lock()
        self._tat = clock()  # when the bucket would be full again at the steady rate
        self._paused_until = -math.inf
        self._shift = 0.0  # total pause added so far; sleepers that reserved earlier move back by its growth

    def acquire(self) -> float:
        """Blocks until this request may go; returns the seconds it was held."""
        with self._lock:
            now = self._clock()
            deadline, shift = self._reserve(now), self._shift
        waited = 0.0
        while (delay := deadline - now - waited) > 0:
            self._sleep(delay)
            waited += delay
            with self._lock:  # a 429 that came while we slept holds us too, keeping our place in the queue
                deadline += self._shift - shift
                shift = self._shift
        if waited:
            THROTTLE.inc(waited)
        return waited

    def _reserve(self, now: float) -> float:
        if not self._interval:
            return max(now, self._paused_until)
        tat = max(self._tat, now)
        self._tat = tat + self._interval
        return max(now, tat - self._tolerance)

    def pause_until(self, t: float) -> None:
        """Nobody's request goes before `t` (on the budget's clock). Afterwards the client resumes at the
        steady rate, not with a burst: a burst straight after a 429 would likely earn the next one."""
        with self._lock:
            delta = t - max(self._clock(), self._paused_until)
            if delta <= 0:
                return
            self._paused_until = t
            self._shift += delta
            self._tat = max(self._tat + delta, t + self._tolerance)

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
