"""A list+watch of one resource kind, filtered by the API server and kept as small values.

kopf's `labels=` filters are applied client-side: it lists and watches every object of the kind and builds
each body. At 10,000 cards the cluster's pods do not fit that; here the API server filters (label and field
selectors), the raw JSON is read line by line (no client model objects), and only `transform(obj)` of each
object is kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import urllib3
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("cardpool.informer")
T = TypeVar("T")

WATCH_TIMEOUT = 240
"""Seconds the API server keeps a watch open (jittered up to +25%, so many informers do not reconnect
together)."""
READ_TIMEOUT = 150.0
"""Seconds without a byte before the connection counts as dead: the API server sends a bookmark about once a
minute, so this is two missed bookmarks."""
CONNECT_TIMEOUT = 10.0
LIST_READ_TIMEOUT = 60.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0


class _Gone(Exception):
    """The resourceVersion to resume from was compacted away (410): only a new list can say what is there."""


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


class Informer(Generic[T]):
    """One kind's objects matching the selectors, as `transform(obj)` per namespace/name, kept current by a
    daemon thread. `transform` returning None means "not worth keeping" (removed if it was kept).

    `on_change` runs on the informer's thread after each change of the kept values (an event that changes
    nothing the transform keeps, like a status heartbeat, wakes no one), and once when the first list is in,
    so a caller waiting for `synced` wakes too. It must not block for long: events wait behind it.
    """

    def __init__(self, name: str, list_fn: Callable[..., Any], transform: Callable[[dict], T | None],
                 on_change: Callable[[], None], label_selector: str = "", field_selector: str = "",
                 page_size: int = 500, watch_timeout: int = WATCH_TIMEOUT, read_timeout: float = READ_TIMEOUT):
        self.name = name
        self._list_fn, self._transform, self._on_change = list_fn, transform, on_change
        self._selectors = {k: v for k, v in (("label_selector", label_selector),
                                             ("field_selector", field_selector)) if v}
        self._page_size, self._watch_timeout, self._read_timeout = page_size, watch_timeout, read_timeout
        self._lock = threading.Lock()
        self._store: dict[str, T] = {}
        self._version = 0
        self._synced = False
        self._last_event = 0.0
        self._resource_version: str | None = None  # where the next watch resumes; None: list first
        self._stopping = threading.Event()
        self._failing_since: float | None = None
        """time.monotonic() of the first error since the informer last worked (None: it works)."""
        self._delay = BACKOFF_FIRST
        self._response: Any = None  # the open list/watch response, so stop() can cut a blocking read
        self._response_lock = threading.Lock()  # never cut a connection already back in the shared pool
        self._thread: threading.Thread | None = None

    # -- what callers read ------------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """The first list is in the store."""
        return self._synced

    @property
    def version(self) -> int:
        """Bumped on every change of the store: equal versions mean equal contents."""
        return self._version

    @property
    def last_event_monotonic(self) -> float:
        """time.monotonic() of the last list, event or bookmark (0 before the first): a watch silent for much
        longer than a minute is a stale view."""
        return self._last_event

    def items(self) -> dict[str, T]:
        with self._lock:
            return dict(self._store)

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"informer {self.name} already started")
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; it ends within `timeout` unless a connect hangs (it is a daemon either way)."""
        self._stopping.set()
        self.interrupt()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("informer %s: thread did not stop within %gs", self.name, timeout)

    def interrupt(self) -> None:
        """Cut the open connection; the thread resumes from the last resourceVersion it saw (what it does
        after any dropped connection). For a caller that finds the view stale, and for tests."""
        with self._response_lock:
            if self._response is not None:
                with contextlib.suppress(ValueError, RuntimeError, OSError):  # closed already: the read ended
                    self._response.shutdown()  # wakes a read blocked in another thread, unlike close()

    # -- the thread -------------------------------------------------------------------------------------------

    def _run(self) -> None:
        self._delay = BACKOFF_FIRST
        while not self._stopping.is_set():
            try:
                if self._resource_version is None:
                    self._relist()
                if self._watch():
                    self._delay = BACKOFF_FIRST
                    continue
                # closed at once without a single event or bookmark: no hot loop if the server keeps doing that
            except _Gone:
                log.info("informer %s: resourceVersion %s expired; listing again", self.name,
                         self._resource_version)
                self._resource_version = None
                continue
            except ApiException as exc:
                if exc.status == 410:  # a list's continue token or a watch's resourceVersion expired
                    log.info("informer %s: 410 Gone (%s); listing again", self.name, exc.reason)
                    self._resource_version = None
                    continue
                log.warning("informer %s: API error %s %s; retrying in %.1fs", self.name, exc.status, exc.reason,
                            self._delay)
                self._failing()
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                # connection refused/reset, read timeout, a line cut mid-JSON: resume where we were
                if self._stopping.is_set():
                    break
                log.warning("informer %s: %s: %s; retrying in %.1fs", self.name, type(exc).__name__, exc, self._delay)
                self._failing()
            except Exception:
                log.exception("informer %s: unexpected error; retrying in %.1fs", self.name, self._delay)
                self._failing()
            self._stopping.wait(self._delay * random.uniform(0.8, 1.2))
            self._delay = min(self._delay * 2, BACKOFF_MAX)

    def _failing(self) -> None:
        self._failing_since = self._failing_since or time.monotonic()

    def _working(self) -> None:
        """The log says when the informer works again after errors (the recovery from an API outage)."""
        if self._failing_since is not None:
            log.info("informer %s: working again after %.1fs of errors", self.name,
                     time.monotonic() - self._failing_since)
            self._failing_since = None

    def _request(self, **kwargs: Any) -> Any:
        response = self._list_fn(**self._selectors, **kwargs, _preload_content=False)
        with self._response_lock:
            self._response = response
        if self._stopping.is_set():  # stop() ran before this response existed to be cut
            self._done(response)
            raise OSError("informer stopped")
        return response

    def _done(self, response: Any) -> None:
        """Give the connection back; closed first, since a watch left early has unread events on it (a fully
        read response has released it already)."""
        with self._response_lock:
            self._response = None
            response.close()
            response.release_conn()

    def _relist(self) -> None:
        """List everything in pages and replace the store, as one change if anything differs."""
        fresh: dict[str, T] = {}
        token, resource_version = None, ""
        while True:
            response = self._request(limit=self._page_size, _continue=token,
                                     _request_timeout=(CONNECT_TIMEOUT, LIST_READ_TIMEOUT))
            try:
                page = json.loads(response.data)
            finally:
                self._done(response)
            for obj in page.get("items") or []:
                value = self._keep(obj)
                if value is not None:
                    fresh[_key(obj)] = value
            meta = page.get("metadata") or {}
            resource_version = resource_version or meta.get("resourceVersion", "")  # pages share one snapshot
            token = meta.get("continue")
            if not token:
                break
        with self._lock:
            changed = fresh != self._store
            if changed:
                self._store = fresh
                self._version += 1
            self._resource_version = resource_version
            self._last_event = time.monotonic()
            first = not self._synced
            self._synced = True
        log.info("informer %s: listed %d objects at resourceVersion %s", self.name, len(fresh), resource_version)
        self._working()
        if changed or first:
            self._notify()

    def _watch(self) -> bool:
        """Follow changes from the last resourceVersion until the server ends the watch; True when the
        connection worked (it delivered something, or stayed open until the server's timeout), so the backoff
        starts over."""
        timeout = int(self._watch_timeout * random.uniform(1.0, 1.25))
        opened = time.monotonic()
        response = self._request(watch=True, resource_version=self._resource_version, allow_watch_bookmarks=True,
                                 timeout_seconds=timeout, _request_timeout=(CONNECT_TIMEOUT, self._read_timeout))
        delivered = False
        try:
            for line in _lines(response):
                event = json.loads(line)
                self._apply(event.get("type", ""), event.get("object") or {})
                if not delivered:  # this connection works: a later error starts the backoff over
                    self._working()
                    self._delay = BACKOFF_FIRST
                delivered = True
                if self._stopping.is_set():
                    break
        finally:
            self._done(response)
        return delivered or time.monotonic() - opened >= min(10.0, timeout / 2)

    def _apply(self, kind: str, obj: dict) -> None:
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone(obj.get("message", ""))
            raise ApiException(status=obj.get("code") or 0, reason=obj.get("message") or obj.get("reason"))
        resource_version = (obj.get("metadata") or {}).get("resourceVersion")
        changed = False
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            key = _key(obj)
            # DELETED also means "left the selectors", and then carries the object as it last matched (with
            # the change's resourceVersion): only its key is to be trusted
            value = self._keep(obj) if kind != "DELETED" else None
            with self._lock:
                old = self._store.get(key)
                if value is None and key in self._store:
                    del self._store[key]
                    changed = True
                elif value is not None and value != old:
                    self._store[key] = value
                    changed = True
                if changed:
                    self._version += 1
        with self._lock:  # BOOKMARK too: it moves the resume point and shows the stream is alive
            if resource_version:
                self._resource_version = resource_version
            self._last_event = time.monotonic()
        if changed:
            self._notify()

    def _keep(self, obj: dict) -> T | None:
        try:
            return self._transform(obj)
        except Exception:
            # an object the transform cannot read: skipped, or its event would replay on every reconnect
            log.exception("informer %s: cannot transform %s; not kept", self.name, _key(obj))
            return None

    def _notify(self) -> None:
        try:
            self._on_change()
        except Exception:
            log.exception("informer %s: on_change failed", self.name)


def _lines(response: Any) -> Iterator[bytes]:
    """A watch stream's events, one JSON document per line; a chunk may end mid-line."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        yield from (line for line in lines if line.strip())
    # a rest after the last newline is an event cut by a dropped connection: the watch resumes before it
