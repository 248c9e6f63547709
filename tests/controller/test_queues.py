"""The controller with tenant queues: admission within quota, the queues' status written, quota released when
an attempt ends, and usage counted from the operator's own writes before the watch shows them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from cardpool.controller.loop import Controller

from .fake import FakeServer, World, fast_retries, settle

QUOTA = [{"model": "H800", "guaranteed": 32, "borrowingLimit": 0}]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    fast_retries(monkeypatch)
    server = FakeServer()
    server.add_pool()
    server.add_queue("team-a", namespaces=["ns"], quotas=QUOTA)
    for name in ("first", "second"):  # 4 x 8 cards each: the queue allows one at a time
        server.add_job(name, placement={"accelerators": ["H800"]})
    yield World(server)


@pytest.fixture
def controller(world: World) -> Iterator[Controller]:
    c = world.controller()
    yield c
    c.stop()


def ready(world: World, job: str) -> tuple[str, str, str]:
    status = world.server.job_status(job)
    condition = next(c for c in status.get("conditions", []) if c["type"] == "Ready")
    return status.get("phase"), condition["reason"], condition["message"]


def test_a_queue_admits_within_its_quota_and_says_why_the_rest_waits(world: World, controller: Controller) -> None:
    world.converge(controller, 6)
    assert ready(world, "first")[0] == "Running"
    phase, reason, message = ready(world, "second")
    assert (phase, reason) == ("Queued", "BorrowingLimitReached")
    assert message == "queue team-a holds 32 H800 cards (guaranteed 32, may borrow 0); this job needs 32"
    status = world.server.queues["team-a"]["status"]
    assert (status["usedCards"], status["runningJobs"], status["waitingJobs"]) == (32, 1, 1)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Ready": "True", "Stalled": "False"}


def test_quota_is_released_the_moment_an_attempt_ends(world: World, controller: Controller) -> None:
    world.converge(controller, 6)
    with world.server.lock:
        world.server.jobs[("ns", "first")]["spec"]["suspend"] = True
        world.server.jobs[("ns", "first")]["metadata"]["generation"] = 2
        world.server.jobs[("ns", "first")]["metadata"]["resourceVersion"] = world.server.next_rv()
    world.converge(controller, 8)
    assert ready(world, "first")[0] == "Suspended"
    assert ready(world, "second")[0] == "Running"
    assert world.server.queues["team-a"]["status"]["usedCards"] == 32


def test_usage_counts_an_admission_the_watch_does_not_show_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first job's admission is written but its status lags in the watch while a second job arrives: the
    second must not be admitted on quota the first already took."""
    fast_retries(monkeypatch)
    server = FakeServer()
    server.add_pool()
    server.add_queue("team-a", namespaces=["ns"], quotas=QUOTA)
    server.add_job("first", placement={"accelerators": ["H800"]})
    world = World(server)
    c = world.controller()
    try:
        world.step(c)  # the dry run of its pods
        world.step(c)  # admitted: its status (the attempt and its placement) is written
        stale = next(j for j in world.lagging.jobs["mixed"] if j.name == "first")
        assert ready(world, "first")[0] == "Starting" and not stale.status.placement
        server.add_job("second", placement={"accelerators": ["H800"]})
        for _ in range(4):
            observed = world.observe()
            observed.jobs["mixed"] = [stale if j.name == "first" else j for j in observed.jobs["mixed"]]
            c.observing()
            c.run_pass(observed, world.now)
            settle(c)
            world.now += timedelta(seconds=1)
            world.mono += 1
        assert ready(world, "second")[:2] == ("Queued", "BorrowingLimitReached")
        assert not server.pods_of("second")
    finally:
        c.stop()


def test_a_job_naming_a_queue_when_no_queue_exists_waits_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_retries(monkeypatch)
    server = FakeServer()
    server.add_pool()
    server.add_job("typo", placement={"accelerators": ["H800"]}, queue="team-aa")
    world = World(server)
    c = world.controller()
    try:
        world.converge(c, 4)
        assert ready(world, "typo") == ("Queued", "QueueNotFound", "spec.queue: no TenantQueue named team-aa")
    finally:
        c.stop()
