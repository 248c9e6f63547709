"""The client-side API budget: a token bucket whose waiters are served most urgent first, then in arrival
order; its shared 429 pause; its configuration; and the labels the API requests are counted by.

The bucket's arithmetic runs on a fake clock that sleeping advances (no real waiting). Who goes first is
tested with real threads on the real Condition waits, recording the order in which tokens were taken (under
the budget's lock, so a thread's scheduling after its grant cannot reorder them): orders and counts are
asserted, durations only from below."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY

from cardpool.kube import budget
from cardpool.kube.budget import RequestBudget, budget_from_env, is_write, retry_after_seconds, verb_and_resource

URGENT, NORMAL, BULK = 0, 1, 2  # the applier's priorities
DEADLINE = 10.0  # seconds; generous, only ever reached by a failing test


class FakeTime:
    """A clock that only sleeping advances: the queue's head sleeps (one caller at a time) instead of waiting
    on its condition."""

    def __init__(self) -> None:
        self.now, self.slept = 100.0, []
        self.lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        with self.lock:
            self.slept.append(seconds)
            self.now += seconds

    def budget(self, qps: float, burst: int) -> RequestBudget:
        return RequestBudget(qps, burst, clock=self.clock, sleep=self.sleep)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def queued(b: RequestBudget) -> int:
    return len(b._waiting)


class Waiters:
    """Callers on their own threads, started one at a time (each is queued before the next starts, so their
    arrival order is known), and the order in which the budget handed them tokens."""

    def __init__(self, b: RequestBudget, hold: Callable[[], None] = lambda: None):
        self.b, self.hold, self.threads = b, hold, []
        self.grants: list[str] = []
        take = b._take

        def recording(now: float) -> None:  # called under the budget's lock, once per token handed out
            self.grants.append(threading.current_thread().name)
            take(now)
        b._take = recording  # type: ignore[method-assign]

    def start(self, name: str, priority: int | None = None, scoped: int | None = None) -> None:
        """acquire(priority) on a new thread, within `budget.priority(scoped)` if that is given."""
        def run() -> None:
            if scoped is None:
                self.b.acquire(priority)
            else:
                with budget.priority(scoped):
                    self.b.acquire(priority)

        self.hold()
        before = queued(self.b)
        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)
        wait_for(lambda: queued(self.b) == before + 1, f"{name} to queue")

    def join(self) -> list[str]:
        for thread in self.threads:
            thread.join(DEADLINE)
            assert not thread.is_alive(), f"{thread.name} never got a token"
        return self.grants


def test_the_burst_is_available_at_once_and_the_next_waits_one_interval() -> None:
    t = FakeTime()
    b = t.budget(qps=10, burst=5)
    assert [b.acquire() for _ in range(5)] == [0.0] * 5
    assert t.slept == []
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
    t.now += 0.15  # one and a half tokens back
    assert b.acquire() == 0.0
    assert b.acquire() == pytest.approx(0.05)
    t.now += 60  # a minute idle earns 600 tokens, of which the bucket holds 3
    assert [b.acquire() for _ in range(3)] == [0.0] * 3
    assert b.acquire() == pytest.approx(0.1)


def test_concurrent_callers_share_the_budget_one_token_each() -> None:
    t = FakeTime()
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
        thread.join(DEADLINE)
    assert len(waits) == threads * each
    # the burst went at once; every later token was waited for by the one head of the queue, one interval each
    assert waits.count(0.0) == burst
    assert len(t.slept) == threads * each - burst
    assert t.now - 100.0 == pytest.approx((threads * each - burst) / qps)
    assert queued(b) == 0


def test_the_sustained_rate_on_the_real_clock_is_at_most_qps() -> None:
    b = RequestBudget(qps=200, burst=1)
    start = time.monotonic()
    waited = sum(b.acquire() for _ in range(20))
    assert time.monotonic() - start >= 19 / 200 - 0.01  # a lower bound only
    assert waited >= 19 / 200 - 0.01


def test_concurrent_callers_on_the_real_clock_are_held_to_the_rate() -> None:
    b = RequestBudget(qps=400, burst=5)
    start = time.monotonic()
    pool = [threading.Thread(target=lambda: [b.acquire() for _ in range(10)]) for _ in range(4)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(DEADLINE)
    assert not any(thread.is_alive() for thread in pool)
    assert time.monotonic() - start >= 35 / 400 - 0.01
    assert queued(b) == 0


def test_an_urgent_waiter_overtakes_ten_bulk_waiters_on_an_empty_bucket() -> None:
    # real Condition waits, but on a clock that moves only when the test says: no token comes while the
    # waiters line up, however slowly their threads start
    t = FakeTime()
    qps = 200.0
    b = RequestBudget(qps, burst=1, clock=t.clock)
    assert b.acquire() == 0.0  # the bucket is empty now
    waiters = Waiters(b)
    for i in range(10):
        waiters.start(f"bulk-{i}", BULK)
    waiters.start("urgent", URGENT)
    assert queued(b) == 11 and waiters.grants == []
    t.now += 1 / qps  # the next token
    wait_for(lambda: len(waiters.grants) == 1, "the next token")
    assert waiters.grants == ["urgent"]
    for k in range(2, 12):
        t.now += 1 / qps
        wait_for(lambda k=k: len(waiters.grants) == k, f"token {k}")
    assert waiters.join() == ["urgent"] + [f"bulk-{i}" for i in range(10)]


def test_a_pause_on_the_real_clock_releases_the_most_urgent_first_then_in_arrival_order() -> None:
    b = RequestBudget(qps=500, burst=10)
    # everyone arrives within a pause, kept ahead of the slowest thread start
    waiters = Waiters(b, hold=lambda: b.pause_until(time.monotonic() + 0.5))
    arrivals = [("bulk-0", BULK), ("bulk-1", BULK), ("normal-0", NORMAL), ("bulk-2", BULK), ("urgent-0", URGENT),
                ("normal-1", NORMAL), ("bulk-3", BULK), ("urgent-1", URGENT), ("bulk-4", BULK)]
    for name, priority in arrivals:
        waiters.start(name, priority)
    assert waiters.join() == ["urgent-0", "urgent-1", "normal-0", "normal-1",
                              "bulk-0", "bulk-1", "bulk-2", "bulk-3", "bulk-4"]


def test_one_priority_is_served_in_arrival_order() -> None:
    t = FakeTime()
    qps = 200.0
    b = RequestBudget(qps, burst=1, clock=t.clock)
    b.acquire()
    waiters = Waiters(b)
    for i in range(10):
        waiters.start(f"caller-{i}")  # no priority: the thread's default
    for k in range(1, 11):
        t.now += 1 / qps
        wait_for(lambda k=k: len(waiters.grants) == k, f"token {k}")
    assert waiters.join() == [f"caller-{i}" for i in range(10)]


def test_the_threads_priority_is_used_by_acquire_and_restored_after_the_block() -> None:
    assert budget.current_priority() == budget.DEFAULT_PRIORITY == NORMAL
    with budget.priority(URGENT):
        assert budget.current_priority() == URGENT
        with budget.priority(BULK):
            assert budget.current_priority() == BULK
        assert budget.current_priority() == URGENT
        seen: list[int] = []
        other = threading.Thread(target=lambda: seen.append(budget.current_priority()))
        other.start()
        other.join(DEADLINE)
        assert seen == [NORMAL]  # per thread: another thread keeps its own
    assert budget.current_priority() == NORMAL
    with pytest.raises(RuntimeError), budget.priority(BULK):
        raise RuntimeError
    assert budget.current_priority() == NORMAL

    # acquire() without a priority waits as the block's: marked urgent it overtakes, marked bulk it queues
    t = FakeTime()
    qps = 200.0
    b = RequestBudget(qps, burst=1, clock=t.clock)
    b.acquire()
    waiters = Waiters(b)
    waiters.start("normal-0", NORMAL)
    waiters.start("scoped-bulk", scoped=BULK)
    waiters.start("normal-1")
    waiters.start("scoped-urgent", scoped=URGENT)
    waiters.start("explicit-bulk", BULK)
    for k in range(1, 6):
        t.now += 1 / qps
        wait_for(lambda k=k: len(waiters.grants) == k, f"token {k}")
    assert waiters.join() == ["scoped-urgent", "normal-0", "normal-1", "scoped-bulk", "explicit-bulk"]


def test_an_explicit_priority_wins_over_the_threads() -> None:
    t = FakeTime()
    b = RequestBudget(200.0, burst=1, clock=t.clock)
    b.acquire()
    waiters = Waiters(b)
    waiters.start("bulk", BULK)
    waiters.start("urgent", URGENT, scoped=BULK)  # the argument decides, not the thread's priority
    t.now += 1 / 200.0
    wait_for(lambda: len(waiters.grants) == 1, "the next token")
    assert waiters.grants == ["urgent"]
    t.now += 1 / 200.0
    assert waiters.join() == ["urgent", "bulk"]


def test_back_off_delays_every_caller_and_resumes_without_a_burst() -> None:
    t = FakeTime()
    b = t.budget(qps=10, burst=5)
    b.back_off(2.0)
    assert [b.acquire() for _ in range(3)] == pytest.approx([2.0, 0.1, 0.1])
    assert t.now == pytest.approx(102.2)


def test_back_off_without_retry_after_pauses_one_second() -> None:
    t = FakeTime()
    b = t.budget(qps=10, burst=5)
    b.back_off(None)
    assert b.acquire() == pytest.approx(1.0)


@pytest.mark.parametrize("qps", [1000.0, 0.0])
def test_back_off_on_the_real_clock_holds_every_caller_until_the_pause_ends(qps: float) -> None:
    b = RequestBudget(qps, burst=100)
    end = time.monotonic() + 0.2
    b.back_off(0.2)  # ends at `end` or a moment later
    released: list[float] = []
    lock = threading.Lock()

    def caller(priority: int) -> None:
        b.acquire(priority)
        with lock:
            released.append(time.monotonic())

    pool = [threading.Thread(target=caller, args=(i % 3,)) for i in range(8)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(DEADLINE)
    assert len(released) == 8
    assert min(released) >= end  # nobody went before the pause's end


def test_a_429_while_waiting_holds_the_head_too() -> None:
    t = FakeTime()
    b = t.budget(qps=1, burst=1)
    b.acquire()
    storm = iter([True])

    def sleep(seconds: float) -> None:  # another thread's request meets a 429 while this one waits
        if next(storm, False):
            b.back_off(5.0)
        t.sleep(seconds)

    b._sleep = sleep
    assert b.acquire() == pytest.approx(6.0)  # its token, due at +1, moved back by the 5 s pause
    assert b.acquire() == pytest.approx(1.0)  # and the steady rate after it


def test_a_shorter_or_past_pause_changes_nothing() -> None:
    t = FakeTime()
    b = t.budget(qps=10, burst=5)
    b.pause_until(t.now + 3)
    b.pause_until(t.now + 1)
    b.pause_until(t.now - 10)
    b.back_off(0)
    assert b.acquire() == pytest.approx(3.0)


@pytest.mark.parametrize("qps", [0, -1])
def test_unlimited_never_waits_but_honours_a_pause(qps: float) -> None:
    t = FakeTime()
    b = t.budget(qps, burst=1)
    assert [b.acquire(priority=p % 3) for p in range(10_000)] == [0.0] * 10_000
    assert t.slept == []
    b.back_off(2.0)
    assert [b.acquire() for _ in range(3)] == [2.0, 0.0, 0.0]


def test_unlimited_on_the_real_clock_never_waits() -> None:
    b = RequestBudget(0, burst=1)
    pool = [threading.Thread(target=lambda: [b.acquire(priority=BULK) for _ in range(500)]) for _ in range(4)]
    for thread in pool:
        thread.start()
    results = [b.acquire() for _ in range(1000)]
    for thread in pool:
        thread.join(DEADLINE)
    assert results == [0.0] * 1000
    assert queued(b) == 0


def test_an_interrupted_waiter_leaves_the_queue() -> None:
    t = FakeTime()
    b = t.budget(qps=10, burst=1)
    b.acquire()

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    b._sleep = interrupted
    with pytest.raises(KeyboardInterrupt):
        b.acquire()
    assert queued(b) == 0
    b._sleep = t.sleep
    assert b.acquire() == pytest.approx(0.1)


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
    t = FakeTime()
    b = budget_from_env(env)
    b._clock, b._sleep, b._stamp = t.clock, t.sleep, t.now
    assert sum(b.acquire() == 0.0 for _ in range(burst + 1)) == (burst + 1 if qps == 0 else burst)
    if qps:
        assert b.acquire() == pytest.approx(1 / qps)


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


def test_a_write_that_waited_for_the_budget_past_the_lease_is_not_sent() -> None:
    """The applier asks the fence before a task; the task's request may then wait for a token. The client
    asks again right before sending: a write whose replica lost the lease meanwhile is never sent (Fenced,
    counted as "fenced"); reads are still sent (a replica that does not lead still watches)."""
    from kubernetes import client

    from cardpool.kube.client import Fenced, Kube

    t = FakeTime()
    kube = Kube(api=client.ApiClient(), budget=t.budget(qps=1, burst=1))
    lease_until = t.now + 0.5  # the first request takes the only token; the next waits a second for its own
    kube.fence = lambda: t.now < lease_until
    sent: list[str] = []

    def create_namespaced_pod(namespace: str, body: dict, **_: object) -> None:
        sent.append(body["name"])

    def read_namespaced_pod(name: str, namespace: str, **_: object) -> None:
        sent.append(f"read {name}")

    labels = {"verb": "create", "resource": "pods", "code": "fenced"}
    before = REGISTRY.get_sample_value("cardpool_api_requests_total", labels) or 0.0
    kube.attempt(create_namespaced_pod, "ns", {"name": "first"})
    with pytest.raises(Fenced, match="create pods"):
        kube.call(create_namespaced_pod, "ns", {"name": "second"})
    kube.attempt(read_namespaced_pod, "third", "ns")
    assert sent == ["first", "read third"] and t.slept == [1.0, 1.0]  # the second and the third waited
    assert REGISTRY.get_sample_value("cardpool_api_requests_total", labels) - before == 1
