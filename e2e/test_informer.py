"""The informer against the real API server: server-side selectors for pods cardpool does not manage, what the
watch sends when a pod stops matching them, and recovery after a dropped watch and after 410 Gone.

Pods request metax-tech.com/gpu on one metax node, a group the operator tests' example jobs do not use.
Other tests may create pods at the same time, so cluster-wide views are read for this namespace only.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from cardpool.api.keys import LABEL_MANAGED_BY, MANAGED_BY
from cardpool.kube.informer import Informer
from cardpool.kube.observe import FOREIGN_POD_SELECTORS, ForeignPod, foreign_pod
from localkube import faults
from localkube.testing import Kube, pod_manifest
from localkube.waiting import NotYet, wait_for

NODE = "metax-c500-002"
RESOURCE = "metax-tech.com/gpu"
TIMEOUT = 30
LABELS, FIELDS = FOREIGN_POD_SELECTORS


def card_pod(name: str, cards: int = 1, labels: dict[str, str] | None = None) -> dict:
    body = pod_manifest(name, {RESOURCE: str(cards)}, node=NODE)
    body["metadata"]["labels"] = labels or {"app": "inference"}
    return body


def held(cards: int = 1) -> ForeignPod:
    return ForeignPod(NODE, ((RESOURCE, cards),))


class Api:
    """The list function the informer calls, recording each call; watches wait while `gate` is closed, so a
    test can change the cluster while the informer is disconnected, and with `gone` the next watch gets the
    API server's 410 for a compacted resourceVersion.

    The 410 is scripted because the local cluster cannot be made to send it on demand: its watch cache holds
    every event since the API server started (it is seconds old), and serves even a watch from
    resourceVersion 1, after an etcd compaction too, by replaying them."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn, self.calls = fn, []
        self.gate = threading.Event()
        self.gate.set()
        self.gone = False

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if kwargs.get("watch"):
            if not self.gate.wait(60):
                raise TimeoutError("gate stayed closed for 60 s")
            if self.gone:
                self.gone = False
                raise ApiException(status=410, reason=f"too old resource version: {kwargs['resource_version']}")
        return self.fn(**kwargs)

    def lists(self) -> int:
        return sum(1 for c in self.calls if not c.get("watch"))

    def watched_from(self) -> list[str]:
        return [c["resource_version"] for c in self.calls if c.get("watch")]


class Changes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def informers() -> Iterator[Callable[..., tuple[Informer, Api]]]:
    """Started informers, stopped after the test whatever happens."""
    made: list[tuple[Informer, Api]] = []

    def start(fn: Callable[..., Any], on_change: Callable[[], None], **options: Any) -> tuple[Informer, Api]:
        api = Api(fn)
        inf = Informer("test-pods", api, foreign_pod, on_change, label_selector=LABELS, field_selector=FIELDS,
                       **options)
        made.append((inf, api))
        inf.start()
        wait_for(f"informer {inf.name} to list", lambda: inf.synced, timeout=TIMEOUT)
        return inf, api

    yield start
    for inf, api in made:
        api.gate.set()
        inf.stop()
        assert inf._thread is not None and not inf._thread.is_alive(), "informer thread still running"


class RawWatch:
    """The API server's own events for the foreign-pod selectors in one namespace, as (type, name, phase,
    managed-by, resourceVersion), read raw in a thread: what the informer is told, before it interprets
    anything."""

    def __init__(self, kube: Kube, namespace: str):
        self.events: list[tuple[str, str, str, str | None, str]] = []
        self.error: Exception | None = None
        core = kube.core
        listed = json.loads(core.list_namespaced_pod(namespace, label_selector=LABELS, field_selector=FIELDS,
                                                     _preload_content=False).data)
        self.response = core.list_namespaced_pod(
            namespace, label_selector=LABELS, field_selector=FIELDS, watch=True, timeout_seconds=120,
            resource_version=listed["metadata"]["resourceVersion"], _preload_content=False,
            _request_timeout=(10, 130))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buffer = b""
        try:
            for chunk in self.response.stream(amt=None, decode_content=False):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in filter(None, lines):
                    event = json.loads(line)
                    obj = event["object"]
                    meta = obj["metadata"]
                    self.events.append((event["type"], meta["name"], obj["status"].get("phase", ""),
                                        (meta.get("labels") or {}).get(LABEL_MANAGED_BY), meta["resourceVersion"]))
        except Exception as exc:  # cut by close(): the events so far are the record
            self.error = exc

    def close(self) -> None:
        self.response.shutdown()
        self.thread.join(10)
        self.response.close()
        self.response.release_conn()

    def of(self, name: str) -> list[tuple[str, str, str | None, str]]:
        return [(t, phase, managed, rv) for t, n, phase, managed, rv in self.events if n == name]

    def ends_with(self, name: str, event: tuple[str, str, str | None, str]) -> Callable[[], bool]:
        def check() -> bool:
            if self.of(name)[-1:] != [event]:
                raise NotYet(f"events of {name}: {self.of(name)}; stream error: {self.error!r}")
            return True

        return check


def mine(inf: Informer, namespace: str) -> dict[str, ForeignPod]:
    return {k.split("/", 1)[1]: v for k, v in inf.items().items() if k.startswith(f"{namespace}/")}


def kept(inf: Informer, namespace: str, expected: dict[str, ForeignPod]) -> Callable[[], bool]:
    def check() -> bool:
        now = mine(inf, namespace)
        if now != expected:
            raise NotYet(f"kept {now}")
        return True

    return check


def running(kube: Kube, namespace: str, name: str) -> Callable[[], bool]:
    def check() -> bool:
        phase = kube.core.read_namespaced_pod(name, namespace).status.phase
        if phase != "Running":
            raise NotYet(f"phase {phase}")
        return True

    return check


def gone(kube: Kube, namespace: str, name: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            kube.core.read_namespaced_pod(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        raise NotYet("still there")

    return check


def delete(kube: Kube, namespace: str, *names: str) -> None:
    for name in names:
        try:
            kube.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_pods_cardpool_does_not_manage_are_kept_while_they_hold_cards(
        kube: Kube, namespace: str, informers: Callable[..., tuple[Informer, Api]]) -> None:
    core = kube.core
    for body in (card_pod("before"), card_pod("ours", labels={LABEL_MANAGED_BY: MANAGED_BY}),
                 card_pod("relabelled"), card_pod("unschedulable", cards=64)):
        core.create_namespaced_pod(namespace, body)
    for name in ("before", "ours", "relabelled"):
        wait_for(f"pod {name} Running on {NODE}", running(kube, namespace, name), timeout=TIMEOUT)
    raw = RawWatch(kube, namespace)
    inf, _ = informers(core.list_pod_for_all_namespaces, lambda: None)
    try:
        # the first list: bound foreign pods only (neither cardpool's nor the one no node can take)
        assert mine(inf, namespace) == {"before": held(), "relabelled": held()}

        core.create_namespaced_pod(namespace, card_pod("server", cards=2))
        wait_for("the new pod to be kept once bound", kept(inf, namespace, {
            "before": held(), "relabelled": held(), "server": held(2)}), timeout=TIMEOUT)
        wait_for("pod server Running", running(kube, namespace, "server"), timeout=TIMEOUT)

        delete(kube, namespace, "before")
        wait_for("the deleted pod to be dropped", kept(inf, namespace, {"relabelled": held(), "server": held(2)}),
                 timeout=TIMEOUT)

        faults.complete_pod(core, namespace, "server")  # KWOK ends it: phase Succeeded
        wait_for("the pod that ended to be dropped", kept(inf, namespace, {"relabelled": held()}), timeout=TIMEOUT)
        assert core.read_namespaced_pod("server", namespace).status.phase == "Succeeded"  # it still exists

        patched = core.patch_namespaced_pod("relabelled", namespace, {
            "metadata": {"labels": {LABEL_MANAGED_BY: MANAGED_BY}}}).metadata.resource_version
        wait_for("the pod labelled as cardpool's to be dropped", kept(inf, namespace, {}), timeout=TIMEOUT)

        # what the API server sent: leaving a label or field selector is a DELETED event (never a MODIFIED the
        # client would have to filter) that carries the object as it last matched, not as it is now (no
        # managed-by label; phase Running, not Succeeded), but the resourceVersion of the change, so a watch
        # resumed from it misses nothing
        wait_for("the raw watch to see the relabelling",
                 raw.ends_with("relabelled", ("DELETED", "Running", None, patched)), timeout=TIMEOUT)
        server = [t for t, _, _, _ in raw.of("server")]
        # created unbound, it entered the field selector when the scheduler bound it: ADDED then, not before
        assert server[0] == "ADDED" and set(server[1:-1]) <= {"MODIFIED"}, server
        assert raw.of("server")[-1][:3] == ("DELETED", "Running", None)
        assert raw.of("ours") == [] and raw.of("unschedulable") == []
        assert raw.of("before")[-1][0] == "DELETED"
    finally:
        raw.close()
        delete(kube, namespace, "before", "ours", "relabelled", "unschedulable", "server")


def test_on_change_runs_only_when_what_is_kept_changes(kube: Kube, namespace: str,
                                                       informers: Callable[..., tuple[Informer, Api]]) -> None:
    core = kube.core
    changes = Changes()
    inf, _ = informers(functools.partial(core.list_namespaced_pod, namespace), changes)
    try:
        wait_for("the wake-up of the first list", lambda: changes.count == 1, timeout=TIMEOUT)
        assert inf.items() == {}  # synced, nothing kept
        version = inf.version
        core.create_namespaced_pod(namespace, card_pod("a"))
        wait_for("pod a to be kept", lambda: inf.items() == {f"{namespace}/a": held()}, timeout=TIMEOUT)
        wait_for("pod a Running", running(kube, namespace, "a"), timeout=TIMEOUT)
        for beat in range(3):  # status and metadata churn that changes nothing kept
            core.patch_namespaced_pod("a", namespace, {"metadata": {"annotations": {"heartbeat": str(beat)}}})
        # events arrive in order: once b is kept, every heartbeat before it has been seen
        core.create_namespaced_pod(namespace, card_pod("b", cards=3))
        wait_for("pod b to be kept", lambda: f"{namespace}/b" in inf.items(), timeout=TIMEOUT)
        assert changes.count == 3 and inf.version == version + 2
        assert inf.last_event_monotonic > 0
    finally:
        delete(kube, namespace, "a", "b")


def test_resumes_after_a_dropped_watch_and_relists_after_410(kube: Kube, namespace: str,
                                                             informers: Callable[..., tuple[Informer, Api]]) -> None:
    core = kube.core
    changes = Changes()
    inf, api = informers(functools.partial(core.list_namespaced_pod, namespace), changes)
    try:
        core.create_namespaced_pod(namespace, card_pod("a"))
        wait_for("pod a to be kept", lambda: set(mine(inf, namespace)) == {"a"}, timeout=TIMEOUT)

        # the connection drops; while the informer is away, a goes and b comes
        api.gate.clear()
        inf.interrupt()
        wait_for("the informer to try to watch again", lambda: len(api.watched_from()) >= 2, timeout=TIMEOUT)
        delete(kube, namespace, "a")
        core.create_namespaced_pod(namespace, card_pod("b"))
        wait_for("pod a gone", gone(kube, namespace, "a"), timeout=TIMEOUT)
        wait_for("pod b Running", running(kube, namespace, "b"), timeout=TIMEOUT)
        api.gate.set()
        wait_for("the resumed watch to replay what was missed", lambda: set(mine(inf, namespace)) == {"b"},
                 timeout=TIMEOUT)
        resumed = api.watched_from()[1]
        assert api.lists() == 1 and int(resumed) > int(api.watched_from()[0])  # resumed where it was, no list

        # away again, and this time the place to resume from is compacted: 410 Gone, so a new list
        api.gate.clear()
        api.gone = True
        inf.interrupt()
        wait_for("the informer to try to watch again", lambda: len(api.watched_from()) >= 3, timeout=TIMEOUT)
        delete(kube, namespace, "b")
        core.create_namespaced_pod(namespace, card_pod("c", cards=2))
        wait_for("pod b gone", gone(kube, namespace, "b"), timeout=TIMEOUT)
        wait_for("pod c Running", running(kube, namespace, "c"), timeout=TIMEOUT)
        before = changes.count
        api.gate.set()
        wait_for("the relist to replace the store", lambda: mine(inf, namespace) == {"c": held(2)},
                 timeout=TIMEOUT)
        assert api.lists() == 2 and not api.gone
        assert changes.count == before + 1  # one change for the whole relist
        wait_for("a watch from the new list's version", lambda: len(api.watched_from()) >= 4, timeout=TIMEOUT)
        assert int(api.watched_from()[3]) > int(resumed)
    finally:
        api.gate.set()
        delete(kube, namespace, "a", "b", "c")


def test_watches_the_server_ends_are_resumed_without_a_list(kube: Kube, namespace: str,
                                                           informers: Callable[..., tuple[Informer, Api]]) -> None:
    core = kube.core
    inf, api = informers(functools.partial(core.list_namespaced_pod, namespace), Changes(), watch_timeout=2)
    try:
        wait_for("the server to end three watches", lambda: len(api.watched_from()) >= 4, timeout=TIMEOUT)
        core.create_namespaced_pod(namespace, card_pod("a"))
        wait_for("pod a to be kept", lambda: inf.items() == {f"{namespace}/a": held()}, timeout=TIMEOUT)
        versions = [int(rv) for rv in api.watched_from()]
        assert api.lists() == 1 and versions == sorted(versions), versions
        assert all(c["timeout_seconds"] in (2, 3) for c in api.calls if c.get("watch"))
    finally:
        delete(kube, namespace, "a")
