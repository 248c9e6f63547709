"""The controller refuses Checkpoints of jobs that do not exist (NoSuchJob): once each, after the grace, and
again only when the write failed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from cardpool.controller.loop import Controller
from cardpool.core.checkpoints import ORPHAN_GRACE
from cardpool.core.observed import ObservedCheckpoint

from .fake import START, FakeServer, World, api_error, fast_retries, settle

ORPHAN = ObservedCheckpoint("gone-a1-s10", "gone", 1, 10, "s3://c/10", 8, True, START, owner_uid="uid-x")


@pytest.fixture(autouse=True)
def _no_retry_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_retries(monkeypatch)


@pytest.fixture
def world() -> Iterator[tuple[World, Controller, list[tuple]]]:
    server = FakeServer()
    server.add_pool()
    server.add_job("job")
    verdicts: list[tuple] = []

    def record(name: str, args: tuple, kwargs: dict) -> None:
        if name == "patch_namespaced_custom_object_status" and args[3] == "checkpoints":
            condition = args[5]["status"]["conditions"][0]
            verdicts.append((args[2], args[4], condition["status"], condition["reason"]))
    server.interceptors.append(record)
    w = World(server)
    c = w.controller()
    yield w, c, verdicts
    c.stop()


def run(world: World, controller: Controller, *checkpoints: ObservedCheckpoint, seconds: float = 1.0) -> None:
    observed = world.observe()
    by_job: dict[tuple[str, str], tuple] = {}
    for ck in checkpoints:
        by_job[("ns", ck.job)] = (*by_job.get(("ns", ck.job), ()), ck)
    controller.run_pass(replace(observed, checkpoints=by_job), world.now)
    settle(controller)
    world.now += timedelta(seconds=seconds)
    world.mono += seconds


def test_a_checkpoint_of_a_missing_job_is_refused_once_after_the_grace(world) -> None:
    w, c, verdicts = world
    run(w, c, ORPHAN)
    assert verdicts == []  # its job may be applied with it and not be seen yet
    assert c.sleep_for() <= ORPHAN_GRACE.total_seconds()  # the pass comes back when the grace ends
    w.now = START + ORPHAN_GRACE
    run(w, c, ORPHAN)
    assert verdicts == [("ns", "gone-a1-s10", "False", "NoSuchJob")]
    run(w, c, ORPHAN)  # the watch does not show the verdict yet: not written twice
    run(w, c, replace(ORPHAN, verdict="False"))
    assert len(verdicts) == 1


def test_a_checkpoint_of_an_existing_job_is_left_to_its_job(world) -> None:
    w, c, verdicts = world
    w.now = START + timedelta(minutes=5)
    run(w, c, replace(ORPHAN, job="job", name="job-a1-s10"))
    assert not [v for v in verdicts if v[1] == "job-a1-s10" and v[3] == "NoSuchJob"]


def test_a_failed_verdict_is_written_again(world) -> None:
    w, c, verdicts = world
    w.now = START + ORPHAN_GRACE
    failures = [api_error(500)] * 10

    def flaky(name: str, args: tuple, kwargs: dict) -> None:
        if name == "patch_namespaced_custom_object_status" and args[3] == "checkpoints" and failures:
            raise failures.pop()
    w.server.interceptors.insert(0, flaky)
    run(w, c, ORPHAN)
    assert verdicts == []
    failures.clear()
    run(w, c, ORPHAN)
    assert verdicts == [("ns", "gone-a1-s10", "False", "NoSuchJob")]
