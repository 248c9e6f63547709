"""Cards held by pods cardpool does not manage, and the informer's list+watch loop against a scripted API
(the real API server's behaviour is in e2e/test_informer.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from cardpool.kube import informer as informer_module
from cardpool.kube.informer import Informer
from cardpool.kube.observe import FOREIGN_POD_SELECTORS, ForeignPod, foreign_pod, foreign_usage
from localkube.waiting import wait_for

GPU = "nvidia.com/gpu"


def container(gpus: int | None = None, **requests: str) -> dict:
    """A container requesting `gpus` nvidia.com/gpu and `requests` (nvidia.com/gpu is not a keyword)."""
    if gpus is not None:
        requests = {GPU: str(gpus), **requests}
    return {"name": "c", "resources": {"requests": requests}}


def pod_body(node: str | None = "n1", phase: str = "Running", containers: tuple = (), init: tuple = (),
             labels: dict | None = None, **spec: Any) -> dict:
    body: dict = {"metadata": {"namespace": "ns", "name": "p", "labels": labels or {}},
                  "spec": {"containers": list(containers), "initContainers": list(init), **spec},
                  "status": {"phase": phase}}
    if node:
        body["spec"]["nodeName"] = node
    return body


@pytest.mark.parametrize(("body", "expected"), [
    pytest.param(pod_body(containers=(container(4),)), ForeignPod("n1", ((GPU, 4),)), id="bound"),
    pytest.param(pod_body(node=None, containers=(container(4),)), None, id="unbound"),
    pytest.param(pod_body(phase="Pending", containers=(container(4),)), ForeignPod("n1", ((GPU, 4),)),
                 id="bound-pending-holds-its-cards"),
    pytest.param(pod_body(phase="Succeeded", containers=(container(4),)), None, id="succeeded"),
    pytest.param(pod_body(phase="Failed", containers=(container(4),)), None, id="failed"),
    pytest.param(pod_body(containers=(container(cpu="4", memory="1Gi", **{"ephemeral-storage": "1Gi"}),)), None,
                 id="no-cards"),
    pytest.param(pod_body(containers=({"name": "c"},)), None, id="no-resources"),
    pytest.param(pod_body(containers=(container(**{"hugepages-2Mi": "1Gi", "cpu": "1"}),)), None, id="hugepages"),
    pytest.param(pod_body(containers=(container(0),)), None, id="zero-cards"),
    pytest.param(pod_body(containers=(container(2), container(3, cpu="2"))),
                 ForeignPod("n1", ((GPU, 5),)), id="containers-sum"),
    pytest.param(pod_body(containers=(container(2),), init=(container(6),)),
                 ForeignPod("n1", ((GPU, 6),)), id="init-larger-wins"),
    pytest.param(pod_body(containers=(container(4), container(4)),
                          init=(container(6), container(1))),
                 ForeignPod("n1", ((GPU, 8),)), id="containers-larger-than-init-max"),
    pytest.param(pod_body(containers=(container(1),),
                          init=({**container(2), "restartPolicy": "Always"}, container(4))),
                 ForeignPod("n1", ((GPU, 6),)), id="sidecar-beside-a-later-init-container"),
    pytest.param(pod_body(containers=(container(2),),
                          init=({**container(1), "restartPolicy": "Always"},)),
                 ForeignPod("n1", ((GPU, 3),)), id="sidecar-adds-to-containers"),
    pytest.param(pod_body(containers=(container(1, **{"huawei.com/Ascend910": "2"}),),
                          init=(container(**{"cambricon.com/mlu": "3"}),)),
                 ForeignPod("n1", (("cambricon.com/mlu", 3), ("huawei.com/Ascend910", 2), (GPU, 1))),
                 id="several-resources-sorted"),
    pytest.param(pod_body(containers=(container(1),), overhead={GPU: "1", "cpu": "250m"}),
                 ForeignPod("n1", ((GPU, 2),)), id="overhead"),
    pytest.param(pod_body(containers=(container(8),), labels={"app.kubernetes.io/managed-by": "cardpool"}),
                 None, id="cardpool-own-pod"),
    pytest.param(pod_body(containers=(container(8),), labels={"app.kubernetes.io/managed-by": "helm"}),
                 ForeignPod("n1", ((GPU, 8),)), id="other-manager"),
])
def test_foreign_pod_counts_what_the_scheduler_counts(body: dict, expected: ForeignPod | None) -> None:
    assert foreign_pod(body) == expected


def test_foreign_usage_sums_per_node_and_resource() -> None:
    usage = foreign_usage([ForeignPod("a", ((GPU, 2),)), ForeignPod("a", ((GPU, 3), ("x.io/npu", 1))),
                           ForeignPod("b", ((GPU, 8),))])
    assert usage == {"a": {GPU: 5, "x.io/npu": 1}, "b": {GPU: 8}}
    assert foreign_usage([]) == {}


def test_the_selectors_leave_out_cardpool_ended_and_unbound_pods() -> None:
    labels, fields = FOREIGN_POD_SELECTORS
    assert labels == "app.kubernetes.io/managed-by!=cardpool"
    assert set(fields.split(",")) == {"status.phase!=Succeeded", "status.phase!=Failed", "spec.nodeName!="}


# -- the informer against a scripted API -----------------------------------------------------------------------


class FakeResponse:
    """What the client returns with _preload_content=False: a body to read whole, or chunks to stream."""

    def __init__(self, body: bytes = b"", chunks: list[bytes] | None = None, hang: bool = False):
        self.data, self.chunks, self.hang = body, chunks or [], hang
        self.cut = threading.Event()
        self.closed = False

    def stream(self, amt: Any = None, decode_content: bool = False):
        yield from self.chunks
        if self.hang:  # a quiet watch: blocks until the informer cuts it
            self.cut.wait(10)

    def shutdown(self) -> None:
        self.cut.set()

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


def page(items: list[dict], rv: str, cont: str | None = None) -> FakeResponse:
    return FakeResponse(json.dumps({"metadata": {"resourceVersion": rv, "continue": cont}, "items": items}).encode())


def events(*evs: tuple[str, dict], hang: bool = False, split: int = 0) -> FakeResponse:
    """A watch's events; the stream then ends as the server's timeout ends it, or with `hang` stays open."""
    raw = b"".join(json.dumps({"type": t, "object": o}).encode() + b"\n" for t, o in evs)
    chunks = [raw[:split], raw[split:]] if split else [raw]  # a chunk may end in the middle of an event
    return FakeResponse(chunks=chunks, hang=hang)


def obj(name: str, rv: str, cards: int = 1, heartbeat: str = "") -> dict:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": rv},
            "spec": {"nodeName": "n1", "containers": [container(cards)]},
            "status": {"phase": "Running", "heartbeat": heartbeat}}


class Script:
    """A list_fn answering each call with the next step (a response, or an exception to raise), recording the
    calls; after the last step, quiet watches until stopped."""

    def __init__(self, *steps: FakeResponse | Exception):
        self.steps, self.calls = list(steps), []

    def __call__(self, **kwargs: Any) -> FakeResponse:
        self.calls.append(kwargs)
        step = self.steps.pop(0) if self.steps else FakeResponse(hang=True)
        if isinstance(step, Exception):
            raise step
        return step

    def watches(self) -> list[str | None]:
        return [c.get("resource_version") for c in self.calls if c.get("watch")]


def run(script: Script, until: Callable[[], bool], what: str) -> tuple[Informer, list[int]]:
    changes: list[int] = []
    inf = Informer("test", script, foreign_pod, lambda: changes.append(inf.version), label_selector="a!=b",
                   field_selector="c!=", page_size=2)
    inf.start()
    try:
        wait_for(what, until, timeout=10, interval=0.01)
    finally:
        inf.stop()
    return inf, changes


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(informer_module, "BACKOFF_FIRST", 0.01)


def test_lists_in_pages_then_watches_from_the_lists_version_with_the_selectors() -> None:
    script = Script(page([obj("a", "5")], "10", cont="t1"), page([obj("b", "6")], "10"),
                    events(("ADDED", obj("c", "11", cards=2)), ("BOOKMARK", {"metadata": {"resourceVersion": "12"}})))
    inf, changes = run(script, lambda: len(script.watches()) >= 2, "a second watch")
    assert inf.synced and set(inf.items()) == {"ns/a", "ns/b", "ns/c"}
    assert inf.items()["ns/c"] == ForeignPod("n1", ((GPU, 2),))
    assert [c.get("_continue") for c in script.calls[:2]] == [None, "t1"] and script.calls[0]["limit"] == 2
    assert all(c["label_selector"] == "a!=b" and c["field_selector"] == "c!=" for c in script.calls)
    assert all(c["_preload_content"] is False for c in script.calls)
    first = next(c for c in script.calls if c.get("watch"))
    assert first["allow_watch_bookmarks"] and first["timeout_seconds"] >= informer_module.WATCH_TIMEOUT
    assert script.watches()[:2] == ["10", "12"]  # the bookmark moved the resume point
    assert changes == [1, 2]


def test_on_change_only_when_a_kept_value_changes() -> None:
    script = Script(page([obj("a", "5")], "10"),
                    events(("MODIFIED", obj("a", "11", heartbeat="x")),  # nothing kept changed
                           ("MODIFIED", obj("a", "12", cards=3)),
                           ("DELETED", obj("zzz", "13")),  # never kept
                           ("ADDED", {**obj("b", "14"), "spec": {"containers": []}}),  # transform says None
                           ("DELETED", obj("a", "15")), split=40))
    inf, changes = run(script, lambda: len(script.watches()) >= 2, "a second watch")
    assert changes == [1, 2, 3] and inf.version == 3 and inf.items() == {}
    assert script.watches()[1] == "15"


def test_gone_relists_and_replaces_the_store() -> None:
    gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version: 1 (20)"}
    script = Script(page([obj("a", "5"), obj("b", "6")], "10"),
                    events(("ERROR", gone)),
                    page([obj("b", "6"), obj("c", "21")], "30"),
                    ApiException(status=410, reason="Gone"),
                    page([obj("b", "6"), obj("c", "21")], "40"))
    inf, changes = run(script, lambda: len(script.watches()) >= 3, "a watch after two relists")
    assert set(inf.items()) == {"ns/b", "ns/c"}
    assert script.watches() == ["10", "30", "40"]
    assert changes == [1, 2]  # the second relist found what the store held: no change


def test_connection_errors_back_off_and_resume_where_they_were() -> None:
    from urllib3.exceptions import ProtocolError

    script = Script(ApiException(status=503, reason="Unavailable"), page([obj("a", "5")], "10"),
                    events(("ADDED", obj("b", "11"))), ProtocolError("reset"),
                    ConnectionRefusedError(), events(("DELETED", obj("a", "12"))))
    inf, _ = run(script, lambda: len(script.watches()) >= 4, "a fourth watch")
    assert set(inf.items()) == {"ns/b"}
    assert script.watches()[:4] == ["10", "11", "11", "11"]
    assert sum(1 for c in script.calls if not c.get("watch")) == 2  # the failed list and one that worked


def test_stop_cuts_a_quiet_watch_and_a_bad_object_is_skipped() -> None:
    script = Script(page([{"metadata": {"namespace": "ns", "name": "bad"}, "spec": {"nodeName": "n1",
                          "containers": "not a list"}}], "10"))
    inf, changes = run(script, lambda: script.watches(), "the watch")
    assert inf._thread is not None and not inf._thread.is_alive()
    assert inf.items() == {} and changes == [0]  # synced with nothing kept: one wake-up, version unchanged
