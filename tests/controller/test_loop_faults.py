"""The controller under faults at every step of carrying out a plan. Each scenario must converge to exactly one
pod per rank of the job's current attempt, with no restart counted twice or lost."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from cardpool.controller.loop import Controller

from .fake import FakeServer, World, api_error, fast_retries, settle

WORKERS = 4


@pytest.fixture(autouse=True)
def _no_retry_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_retries(monkeypatch)


@pytest.fixture
def world() -> Iterator[World]:
    server = FakeServer()
    server.add_pool()
    server.add_job("job")
    w = World(server)
    yield w


@pytest.fixture
def controllers() -> Iterator[list[Controller]]:
    made: list[Controller] = []
    yield made
    for c in made:
        c.stop()


def new(world: World, controllers: list[Controller], **kw: Any) -> Controller:
    c = world.controller(**kw)
    controllers.append(c)
    return c


def assert_one_pod_per_rank(world: World, job: str = "job") -> dict:
    status = world.server.job_status(job)
    assert status.get("phase") == "Running", status.get("conditions")
    attempt = status["attempt"]
    pods = world.server.pods_of(job)
    ranks = sorted(int(p["metadata"]["labels"]["cardpool.io/rank"]) for p in pods)
    attempts = {p["metadata"]["labels"]["cardpool.io/attempt"] for p in pods}
    assert ranks == list(range(WORKERS)) and attempts == {str(attempt)}, (ranks, attempts)
    return status


def checked(world: World, c: Controller) -> None:
    """The pass that asks the API server, in a dry run, whether it takes the job's pods: nothing is placed yet."""
    world.step(c)
    assert not world.server.pods_of("job") and ("dry run pod", "job-a1-0") in world.server.writes


def crash_after(world: World, what: str, count: int) -> None:
    """The operator dies right after its `count`th call of `what` arrived: nothing it sends later arrives."""
    seen = {"n": 0}

    def interceptor(name: str, args: tuple, kwargs: dict) -> None:
        if name == what:
            seen["n"] += 1
            if seen["n"] > count:
                world.server.down = True
                raise ConnectionError("crashed")
    world.server.interceptors.append(interceptor)


def restart(world: World, controllers: list[Controller], old: Controller) -> Controller:
    settle(old)
    old.stop()
    world.server.down = False
    world.server.interceptors.clear()
    return new(world, controllers)


def test_a_crash_after_the_status_write_resumes_the_same_attempt(world: World, controllers: list) -> None:
    c = new(world, controllers)
    checked(world, c)
    crash_after(world, "create_namespaced_pod", 0)  # the status is written, no pod is
    world.step(c)
    assert world.server.job_status("job")["attempt"] == 1 and not world.server.pods_of("job")
    c = restart(world, controllers, c)
    world.converge(c, 5)
    status = assert_one_pod_per_rank(world)
    assert status["attempt"] == 1 and status["restarts"] == {"counted": 0, "uncounted": 0, "scaling": 0}


def test_a_crash_after_half_the_pods_creates_only_the_missing_ranks(world: World, controllers: list) -> None:
    c = new(world, controllers)
    checked(world, c)
    crash_after(world, "create_namespaced_pod", WORKERS // 2)
    world.step(c)
    assert len(world.server.pods_of("job")) == WORKERS // 2
    c = restart(world, controllers, c)
    world.converge(c, 5)
    assert assert_one_pod_per_rank(world)["attempt"] == 1
    assert sum(1 for kind, _ in world.server.writes if kind == "create pod") == WORKERS


def test_a_409_on_the_status_write_is_decided_again_on_the_newer_version(world: World, controllers: list) -> None:
    c = new(world, controllers)
    hits = {"n": 0}

    def someone_else_wrote_first(name: str, args: tuple, kwargs: dict) -> None:
        if name == "patch_namespaced_custom_object_status" and hits["n"] == 0:
            hits["n"] += 1
            world.server.jobs[("ns", "job")]["metadata"]["labels"] = {"team": "a"}  # e.g. a label change
            world.server.jobs[("ns", "job")]["metadata"]["resourceVersion"] = world.server.next_rv()
    world.server.interceptors.append(someone_else_wrote_first)
    world.step(c)
    assert not world.server.pods_of("job") and not world.server.job_status("job")  # refused: nothing placed
    world.converge(c, 5)
    assert assert_one_pod_per_rank(world)["attempt"] == 1


def test_a_429_storm_pauses_the_whole_client_and_then_converges(world: World, controllers: list) -> None:
    c = new(world, controllers)
    left = {"n": 12}

    def storm(name: str, args: tuple, kwargs: dict) -> None:
        if left["n"] > 0:
            left["n"] -= 1
            raise api_error(429, retry_after=2)
    world.server.interceptors.append(storm)
    world.converge(c, 10)
    assert_one_pod_per_rank(world)
    assert sum(c.kube.slept) >= 2 * 4  # every refused try paused the client for Retry-After (the first 4 at least)


def test_a_pod_that_already_exists_is_taken_as_created(world: World, controllers: list) -> None:
    c = new(world, controllers)
    checked(world, c)
    world.step(c)  # the attempt is placed and its pods created
    pods = world.server.pods_of("job")
    victim = pods[1]["metadata"]["name"]
    # a lagging index: the next passes see the world as before the pods existed; nothing is created twice
    world.step(c, lag=True)
    world.step(c, lag=True)
    world.converge(c, 5)
    assert_one_pod_per_rank(world)
    assert sum(1 for kind, name in world.server.writes if kind == "create pod" and name == victim) == 1


def test_deleting_a_pod_that_is_gone_is_done(world: World, controllers: list) -> None:
    c = new(world, controllers)
    world.converge(c, 4)
    assert_one_pod_per_rank(world)
    gone = {"done": False}

    def already_gone(name: str, args: tuple, kwargs: dict) -> None:
        if name == "delete_namespaced_pod" and not gone["done"]:
            gone["done"] = True
            world.server.pods.pop((args[1], args[0]), None)  # someone deleted it a moment before us
    world.server.interceptors.append(already_gone)
    world.nodes = [replace(n, conditions={"Ready": "False"}) if n.name == "h800-1" else n for n in world.nodes]
    world.converge(c, 8)
    status = assert_one_pod_per_rank(world)
    assert status["attempt"] == 2 and status["restarts"]["uncounted"] == 1  # a node fault: not counted
    assert gone["done"]


def test_losing_leadership_mid_apply_writes_nothing_more(world: World, controllers: list) -> None:
    c = new(world, controllers)

    def lose_lease_after_the_status(name: str, args: tuple, kwargs: dict) -> None:
        if name == "patch_namespaced_custom_object_status":
            world.leading = False  # the lease lapses while the pods are still queued
    world.server.interceptors.append(lose_lease_after_the_status)
    checked(world, c)
    world.step(c)
    writes_when_lost = len(world.server.writes)
    assert world.server.job_status("job")["attempt"] == 1
    world.step(c)
    world.step(c)
    assert len(world.server.writes) == writes_when_lost and not world.server.pods_of("job")
    world.server.interceptors.clear()
    world.leading = True  # leadership back (this replica or a new one): it starts from what is observed
    world.converge(c, 5)
    assert assert_one_pod_per_rank(world)["attempt"] == 1


def test_an_index_lagging_behind_the_operators_writes_never_places_twice(world: World, controllers: list) -> None:
    c = new(world, controllers)
    world.step(c)
    for _ in range(5):  # the watch shows the job still Queued, without pods, pass after pass
        world.step(c, lag=True)
    assert world.server.job_status("job")["attempt"] == 1
    world.converge(c, 5)
    status = assert_one_pod_per_rank(world)
    assert status["attempt"] == 1 and len(status["history"]) == 1
    assert sum(1 for kind, _ in world.server.writes if kind == "create pod") == WORKERS


def test_a_node_fault_counts_exactly_one_restart_through_crashes_and_lag(world: World, controllers: list) -> None:
    c = new(world, controllers)
    world.converge(c, 4)
    world.nodes = [replace(n, conditions={"Ready": "False"}) if n.name == "h800-2" else n for n in world.nodes]
    crash_after(world, "delete_namespaced_pod", 1)  # the fault is recorded, the crash comes mid-deletion
    world.step(c)
    c = restart(world, controllers, c)
    world.step(c, lag=True)
    world.converge(c, 10)
    status = assert_one_pod_per_rank(world)
    assert status["attempt"] == 2 and status["restarts"]["uncounted"] == 1 and status["restarts"]["counted"] == 0
    assert [h["attempt"] for h in status["history"]] == [1, 2]


def test_a_pod_the_api_server_refuses_on_create_stalls_the_job_until_its_spec_changes(
        world: World, controllers: list) -> None:
    """The dry run took the pod, the real create did not (the world changed in between): the attempt is rolled
    back, the job says why, and nothing is tried again on every pass."""
    c = new(world, controllers)
    tries = {"n": 0}

    def refuse(name: str, args: tuple, kwargs: dict) -> None:
        if name == "create_namespaced_pod":
            tries["n"] += 1
            raise api_error(422, "Invalid")
    world.server.interceptors.append(refuse)
    for _ in range(20):
        world.step(c, seconds=0.5)
    assert 0 < tries["n"] <= WORKERS, tries  # one gang's creates at most, then no more
    status = world.server.job_status("job")
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (status["phase"], stalled["status"], stalled["reason"]) == ("Queued", "True", "InvalidPodTemplate")
    assert "refuses the worker pod" in stalled["message"] and not world.server.pods_of("job")
    world.server.interceptors.clear()
    job = world.server.jobs[("ns", "job")]
    job["metadata"]["generation"] += 1  # the user fixes the template
    job["metadata"]["resourceVersion"] = world.server.next_rv()
    world.converge(c, 6)
    assert_one_pod_per_rank(world)


@pytest.mark.parametrize(("status", "reason", "asks"), [
    (422, "InvalidPodTemplate", 1),  # invalid: asked once per spec
    (403, "PodsRefused", 3),  # admission (a policy, a quota): asked again after 10 s, 20 s, then 40 s
])
def test_a_dry_run_refusal_places_nothing_and_asks_again_only_as_its_kind_allows(
        world: World, controllers: list, status: int, reason: str, asks: int) -> None:
    c = new(world, controllers)
    asked = {"n": 0}

    def refuse(name: str, args: tuple, kwargs: dict) -> None:
        if name == "dry_run_pod":
            asked["n"] += 1
            raise api_error(status, "Forbidden" if status == 403 else "Invalid")
    world.server.interceptors.append(refuse)
    for _ in range(35):  # 35 s
        world.step(c)
    assert asked["n"] == asks
    status_now = world.server.job_status("job")
    stalled = next(c for c in status_now["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", reason)
    assert "attempt" not in status_now or status_now["attempt"] == 0
    assert not world.server.pods_of("job")
    assert not any(kind == "create pod" for kind, _ in world.server.writes)


def test_defragmentation_moves_are_recorded_in_the_pools_status_before_any_job_stops(
        world: World, controllers: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool's status is the moves' memory (the budget of the hour, the target): written first, a crash
    between the two loses no move; when it cannot be written, no job stops."""
    import cardpool.controller.loop as loop_module
    from cardpool.api.cardpool import DefragmentationStatus, Migration
    from cardpool.api.trainingjob import Phase

    c = new(world, controllers)
    world.converge(c, 4)
    real = loop_module.reconcile_pool

    def with_a_move(*args: Any, **kwargs: Any):
        plan = real(*args, **kwargs)
        job_plan = plan.jobs[0]
        if job_plan.settling:
            return plan
        job_plan.status = job_plan.status.model_copy(deep=True)
        job_plan.status.phase = Phase.RESTARTING  # as the lifecycle's stop for a move leaves it
        job_plan.status_changed = True
        plan.status.defragmentation = DefragmentationStatus(target="ns/gang", since=world.now, migrations=[
            Migration(job="ns/job", made_room_for="ns/gang", time=world.now)])
        return replace(plan, moves=("ns/job",))
    monkeypatch.setattr(loop_module, "reconcile_pool", with_a_move)

    refused = {"pool": True}

    def refuse_pool_status(name: str, args: tuple, kwargs: dict) -> None:
        if name == "patch_cluster_custom_object_status" and refused["pool"]:
            raise api_error(422, "Invalid")
    world.server.interceptors.append(refuse_pool_status)
    before = len(world.server.writes)
    world.step(c)
    assert ("job status", "job") not in world.server.writes[before:]  # the move was not recorded: no stop
    refused["pool"] = False
    world.mono += 5  # past the pool's backoff
    world.step(c)
    kinds = [kind for kind, _ in world.server.writes[before:]]
    assert "pool status" in kinds and "job status" in kinds
    assert kinds.index("pool status") < kinds.index("job status")


def test_a_change_seen_while_a_pass_decides_makes_another_pass(world: World, controllers: list) -> None:
    """The watch saw a new job after the pass copied the indexes: the next pass must not wait for the resync."""
    c = new(world, controllers)
    world.converge(c, 3)
    c.observing()
    observed = world.observe()
    world.server.add_job("late")
    c.changed()  # the index handler of the new job, while the pass below decides
    c.run_pass(observed, world.now)
    settle(c)
    world.mono += 1
    assert c.due()


def test_a_work_that_finishes_wakes_the_loop(world: World, controllers: list) -> None:
    """The watch can show a job's last change (its pods, its status) while its work is still in flight: that
    pass leaves the job settling, and no later event would decide it again before the expectation timeout.
    So every finished work makes another pass, at once."""
    woken: list[int] = []
    c = new(world, controllers, wake=lambda: woken.append(1))
    checked(world, c)
    c.observing()
    c.run_pass(world.observe(), world.now)  # places the gang: a status write and four pod creates
    woken.clear()
    settle(c)
    world.mono += 1
    assert woken and c.due()


def test_a_pools_spec_is_parsed_again_only_when_its_generation_changes(world: World, controllers: list) -> None:
    c = new(world, controllers)
    body = next(iter(world.server.pools.values()))
    first = c._parse_pools({"p": body})["p"]
    written = {**body, "metadata": {**body["metadata"], "resourceVersion": "9001"}, "status": {"cards": 1}}
    second = c._parse_pools({"p": written})["p"]
    assert second.spec is first.spec and second.status is not None and second.status.cards == 1
    edited = {**written, "metadata": {**written["metadata"], "resourceVersion": "9002", "generation": 2},
              "spec": {**body["spec"], "health": {"probationSeconds": 5}}}
    third = c._parse_pools({"p": edited})["p"]
    assert third.spec is not first.spec and third.spec.health.probation_seconds == 5


def test_a_disruption_remembered_in_the_pools_status_holds_its_last_nodes_across_a_restart(
        world: World, controllers: list) -> None:
    c = new(world, controllers)
    world.converge(c, 4)
    before = assert_one_pod_per_rank(world)
    placed = {node for group in before["placement"] for node in group["nodes"]}

    def lost(names: set[str]) -> None:
        world.nodes = [replace(n, conditions={"Ready": "Unknown" if n.name in names else "True"}) for n in world.nodes]
    lost({f"h800-{i}" for i in range(6)})  # the API server came back: most of the pool is Unknown for a moment
    world.step(c)
    assert world.server.pools["mixed"]["status"]["disruption"]["nodes"] == [f"h800-{i}" for i in range(6)]
    c = restart(world, controllers, c)  # the record lives in the status, not in the process
    tail = sorted(placed)[:1]
    lost(set(tail))  # one node of the job's still silent once the rest reported again
    world.converge(c, 5)
    assert assert_one_pod_per_rank(world)["attempt"] == before["attempt"], "no restart for the disruption's tail"
    world.now += timedelta(seconds=120)  # the grace after most of the pool came back: a silent node is a fault
    world.converge(c, 8)
    after = assert_one_pod_per_rank(world)
    assert after["attempt"] == before["attempt"] + 1 and world.server.pools["mixed"]["status"].get("disruption") is None
