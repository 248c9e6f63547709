"""The client-side API budget: a token bucket on a fake clock (no real sleeping), its shared 429 pause, its
configuration, and the labels the API requests are counted by."""

from __future__ import annotations

import threading

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY

from cardpool.kube import budget
from cardpool.kube.budget import RequestBudget, budget_from_env, is_write, retry_after_seconds, verb_and_resource


class FakeTime:
    """A clock that sleeping advances (one caller at a time), or that stands still (`frozen`) so that
    concurrent callers' waits are exactly what the budget reserved for them."""

    def __init__(self, frozen: bool = False):
        self.now, self.frozen, self.slept = 100.0, frozen, []
        self.lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        with self.lock:
            self.slept.append(seconds)
            if not self.frozen:
                self.now += seconds

    def budget(self, qps: float, burst: int) -> RequestBudget:
        return RequestBudget(qps, burst, clock=self.clock, sleep=self.sleep)


def test_the_burst_is_available_at_once_and_the_next_waits_one_interval() -> None:
    t = FakeTime()
    b = t.budget(qps=10, burst=5)
    assert [b.acquire() for _ in range(5)] == [0.0] * 5
    assert b.acquire() == pytest.approx(0.1)
    assert t.slept == [pytest.approx(0.1)]


@pytest.mark.parametrize(("qps", "burst"), [(10, 1), (10, 5), (300, 500), (2.5, 3)])
def test_the_sustained_rate_is_qps(qps: float, burst: int) -> None:
    t = FakeTime()
    b = t.budget(qps, burst)
    start = t.now
    for _ in range(burst + 200):
        b.acquire()
    assert t.now - start == pytest.approx(200 / qps)


def test_an_idle_budget_refills_up_to_its_burst_only() -> None:
    t = FakeTime()
    b = t.budget(qps=10, burst=3)
    for _ in range(3):
        b.acquire()
    t.now += 60  # a minute idle earns 600 tokens, of which the bucket holds 3
    assert [b.acquire() for _ in range(3)] == [0.0] * 3
    assert b.acquire() == pytest.approx(0.1)


def test_concurrent_callers_share_the_budget_in_distinct_slots() -> None:
    t = FakeTime(frozen=True)
    qps, burst, threads, each = 100.0, 10, 8, 25
    b = t.budget(qps, burst)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(each):
            waited = b.acquire()
            with lock:
                waits.append(waited)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    late = threads * each - burst
    # every token went to exactly one caller: the burst at once, then one caller per 1/qps slot
    assert sorted(waits) == pytest.approx([0.0] * burst + [k / qps for k in range(1, late + 1)])
    assert sum(waits) == pytest.approx(late * (late + 1) / 2 / qps)


def test_back_off_delays_every_caller_and_resumes_without_a_burst() -> None:
    t = FakeTime(frozen=True)
    b = t.budget(qps=10, burst=5)
    b.back_off(2.0)
    assert [b.acquire() for _ in range(3)] == pytest.approx([2.0, 2.1, 2.2])


def test_back_off_without_retry_after_pauses_one_second() -> None:
    t = FakeTime()
    b = t.budget(qps=10, burst=5)
    b.back_off(None)
    assert b.acquire() == pytest.approx(1.0)


def test_a_429_while_waiting_holds_the_sleepers_too() -> None:
    t = FakeTime(frozen=True)
    b = t.budget(qps=1, burst=1)
    b.acquire()
    storm = iter([True])

    def sleep(seconds: float) -> None:  # another thread's request meets a 429 while this one sleeps
        if next(storm, False):
            b.back_off(5.0)
        t.sleep(seconds)

    b._sleep = sleep
    assert b.acquire() == pytest.approx(6.0)  # its slot at +1 moved back by the 5 s pause
    assert b.acquire() == pytest.approx(7.0)  # and newcomers queue behind it


def test_a_shorter_or_past_pause_changes_nothing() -> None:
    t = FakeTime(frozen=True)
    b = t.budget(qps=10, burst=5)
    b.pause_until(t.now + 3)
    b.pause_until(t.now + 1)
    b.pause_until(t.now - 10)
    assert b.acquire() == pytest.approx(3.0)


@pytest.mark.parametrize("qps", [0, -1])
def test_unlimited_never_waits_but_honours_a_pause(qps: float) -> None:
    t = FakeTime(frozen=True)
    b = t.budget(qps, burst=1)
    assert [b.acquire() for _ in range(10_000)] == [0.0] * 10_000
    b.back_off(2.0)
    assert [b.acquire() for _ in range(3)] == [2.0] * 3


def test_waiting_is_counted() -> None:
    before = REGISTRY.get_sample_value("cardpool_api_throttle_seconds_total") or 0.0
    t = FakeTime()
    b = t.budget(qps=4, burst=1)
    for _ in range(3):
        b.acquire()
    assert REGISTRY.get_sample_value("cardpool_api_throttle_seconds_total") - before == pytest.approx(0.5)


def test_requests_are_counted_by_verb_resource_and_code() -> None:
    labels = {"verb": "create", "resource": "pods", "code": "error"}
    before = REGISTRY.get_sample_value("cardpool_api_requests_total", labels) or 0.0
    budget.record("create", "pods", "error")
    budget.record("create", "pods", "error")
    assert REGISTRY.get_sample_value("cardpool_api_requests_total", labels) - before == 2


def test_a_burst_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="burst"):
        RequestBudget(10, 0)


@pytest.mark.parametrize(("env", "qps", "burst"), [
    ({}, 300.0, 500),
    ({"CARDPOOL_KUBE_QPS": "500", "CARDPOOL_KUBE_BURST": "500"}, 500.0, 500),
    ({"CARDPOOL_KUBE_QPS": " 2.5 ", "CARDPOOL_KUBE_BURST": "1"}, 2.5, 1),
    ({"CARDPOOL_KUBE_QPS": "0"}, 0.0, 500),
    ({"CARDPOOL_KUBE_QPS": "", "CARDPOOL_KUBE_BURST": ""}, 300.0, 500),
])
def test_the_budget_is_read_from_the_environment(env: dict, qps: float, burst: int) -> None:
    t = FakeTime(frozen=True)
    b = budget_from_env(env)
    b._clock, b._sleep, b._tat = t.clock, t.sleep, t.now
    assert sum(b.acquire() == 0.0 for _ in range(burst + 1)) == (burst + 1 if qps == 0 else burst)
    if qps:
        assert b.acquire() == pytest.approx(2 / qps)


@pytest.mark.parametrize(("env", "variable", "rule"), [
    ({"CARDPOOL_KUBE_QPS": "fast"}, "CARDPOOL_KUBE_QPS", "a number > 0, or 0 for unlimited"),
    ({"CARDPOOL_KUBE_QPS": "-5"}, "CARDPOOL_KUBE_QPS", "a number > 0, or 0 for unlimited"),
    ({"CARDPOOL_KUBE_QPS": "nan"}, "CARDPOOL_KUBE_QPS", "a number > 0, or 0 for unlimited"),
    ({"CARDPOOL_KUBE_QPS": "inf"}, "CARDPOOL_KUBE_QPS", "a number > 0, or 0 for unlimited"),
    ({"CARDPOOL_KUBE_BURST": "0"}, "CARDPOOL_KUBE_BURST", "an integer >= 1"),
    ({"CARDPOOL_KUBE_BURST": "-3"}, "CARDPOOL_KUBE_BURST", "an integer >= 1"),
    ({"CARDPOOL_KUBE_BURST": "2.5"}, "CARDPOOL_KUBE_BURST", "an integer >= 1"),
    ({"CARDPOOL_KUBE_BURST": "many"}, "CARDPOOL_KUBE_BURST", "an integer >= 1"),
])
def test_a_bad_setting_names_the_variable_and_the_rule(env: dict, variable: str, rule: str) -> None:
    with pytest.raises(ValueError) as info:
        budget_from_env(env)
    assert variable in str(info.value) and rule in str(info.value)


NS, TJ = ("cardpool.io", "v1alpha1", "team-a"), ("trainingjobs", "job-1", {})


@pytest.mark.parametrize(("fn_name", "args", "expected"), [
    ("create_namespaced_pod", ("ns", {}), ("create", "pods")),
    ("delete_namespaced_pod", ("p", "ns"), ("delete", "pods")),
    ("list_namespaced_pod", ("ns",), ("list", "pods")),
    ("list_pod_for_all_namespaces", (), ("list", "pods")),
    ("patch_namespaced_custom_object_status", (*NS, *TJ), ("patch", "trainingjobs/status")),
    ("patch_cluster_custom_object_status", ("cardpool.io", "v1alpha1", "cardpools", "pool", {}),
     ("patch", "cardpools/status")),
    ("create_namespaced_custom_object", (*NS, "trainingjobs", {}), ("create", "trainingjobs")),
    ("delete_namespaced_custom_object", (*NS, "trainingjobs", "job-1"), ("delete", "trainingjobs")),
    ("list_cluster_custom_object", ("cardpool.io", "v1alpha1", "cardpools"), ("list", "cardpools")),
    ("list_custom_object_for_all_namespaces", ("cardpool.io", "v1alpha1", "trainingjobs"),
     ("list", "trainingjobs")),
    ("create_namespaced_custom_object", (), ("create", "customobjects")),
    ("read_node", ("n1",), ("get", "nodes")),
    ("read_node_status", ("n1",), ("get", "nodes/status")),
    ("patch_node", ("n1", {}), ("patch", "nodes")),
    ("create_namespaced_pod_eviction", ("p", "ns", {}), ("create", "pods/eviction")),
    ("create_namespaced_event", ("ns", {}), ("create", "events")),
    ("create_namespaced_config_map", ("ns", {}), ("create", "configmaps")),
    ("replace_namespaced_config_map", ("cm", "ns", {}), ("update", "configmaps")),
    ("read_namespaced_lease", ("l", "ns"), ("get", "leases")),
    ("replace_namespaced_lease", ("l", "ns", {}), ("update", "leases")),
    ("create_namespaced_lease", ("ns", {}), ("create", "leases")),
    ("patch_namespaced_service", ("s", "ns", {}), ("patch", "services")),
    ("create_namespaced_service", ("ns", {}), ("create", "services")),
    ("read_namespaced_service_account", ("sa", "ns"), ("get", "serviceaccounts")),
    ("create_namespace", ({},), ("create", "namespaces")),
    ("read_namespaced_endpoints", ("e", "ns"), ("get", "endpoints")),
    ("list_namespaced_network_policy", ("ns",), ("list", "networkpolicies")),
    ("list_namespaced_ingress", ("ns",), ("list", "ingresses")),
    ("delete_collection_namespaced_pod", ("ns",), ("deletecollection", "pods")),
    ("create_namespaced_pod_with_http_info", ("ns", {}), ("create", "pods")),
    ("connect_get_namespaced_pod_exec", ("p", "ns"), ("connect", "get_namespaced_pod_exec")),
    ("get_api_resources", (), ("get", "api_resources")),
    ("version", (), ("version", "")),
    ("", (), ("", "")),
])
def test_verb_and_resource(fn_name: str, args: tuple, expected: tuple[str, str]) -> None:
    assert verb_and_resource(fn_name, args) == expected


@pytest.mark.parametrize(("verb", "write"), [
    ("create", True), ("update", True), ("patch", True), ("delete", True), ("deletecollection", True),
    ("get", False), ("list", False), ("watch", False), ("connect", False),
])
def test_is_write(verb: str, write: bool) -> None:
    assert is_write(verb) is write


def api_exception(status: int, headers: object) -> ApiException:
    exc = ApiException(status=status, reason="Too Many Requests")
    exc.headers = headers
    return exc


@pytest.mark.parametrize(("exc", "seconds"), [
    (api_exception(429, {"Retry-After": "3"}), 3.0),
    (api_exception(429, {"retry-after": "1"}), 1.0),  # a plain dict is case-sensitive
    (api_exception(429, {"Retry-After": "0.5"}), 0.5),
    (api_exception(429, {"Retry-After": "-2"}), 0.0),
    (api_exception(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), None),
    (api_exception(429, {"Retry-After": "inf"}), None),
    (api_exception(429, {"Content-Type": "application/json"}), None),
    (api_exception(429, {}), None),
    (api_exception(429, None), None),
    (api_exception(503, {"Retry-After": "3"}), None),
    (ConnectionError("refused"), None),
])
def test_retry_after_seconds(exc: BaseException, seconds: float | None) -> None:
    assert retry_after_seconds(exc) == seconds


def test_retry_after_from_a_real_response_header() -> None:
    from urllib3 import HTTPHeaderDict

    class Response:
        status, reason, data = 429, "Too Many Requests", b"{}"
        headers = HTTPHeaderDict({"Retry-After": "7"})

    assert retry_after_seconds(ApiException(http_resp=Response())) == 7.0
