"""The applier: stages in order, a failure ends a work, urgent tasks first, nothing written once fenced; and the
urgency of a plan's effects."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from cardpool.controller.applier import Applier, Fenced, Priority, Task, Work
from cardpool.controller.expectations import Expectations
from cardpool.controller.work import create_priority, status_priority
from cardpool.core.lifecycle import plan_job

from ..core.test_lifecycle import NOW, OFFER, RUNNING4, job, started


def wait(condition, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.001)


@pytest.fixture
def applier():
    made: list[Applier] = []

    def make(workers: int = 2, fence=lambda: True) -> Applier:
        made.append(Applier(workers, fence))
        return made[-1]
    yield make
    for a in made:
        a.stop()


def test_stages_run_in_order_and_a_stage_runs_its_tasks_together(applier) -> None:
    a = applier(4)
    log: list[str] = []
    both = threading.Barrier(2, timeout=5)  # the two pods of stage 2 must be in flight at the same time
    done: list = []
    pods = [Task(f"pod {i}", Priority.BULK, lambda: (both.wait(), log.append("pod"))) for i in range(2)]
    a.submit(Work("ns/j", [[Task("status", Priority.NORMAL, lambda: log.append("status"))], pods], done.append))
    wait(lambda: done, "the work to finish")
    assert log == ["status", "pod", "pod"] and done == [None] and not a.in_flight("ns/j")


def test_a_failed_task_ends_its_work_and_drops_later_stages(applier) -> None:
    a = applier(1)
    ran: list[str] = []
    done: list = []

    def refuse() -> None:
        raise ValueError("refused")
    a.submit(Work("ns/j", [[Task("status", Priority.NORMAL, refuse)], [Task("pod", Priority.BULK,
                                                                            lambda: ran.append("pod"))]],
                  done.append, then=[Work("ns/k", [[Task("after", Priority.NORMAL, lambda: ran.append("k"))]])]))
    wait(lambda: done, "the work to finish")
    assert isinstance(done[0], ValueError) and ran == []


def test_urgent_tasks_overtake_queued_bulk_ones(applier) -> None:
    a = applier(1)
    gate = threading.Event()
    order: list[str] = []
    a.submit(Work("block", [[Task("busy", Priority.BULK, gate.wait)]]))
    a.submit(Work("ns/new", [[Task(f"create {i}", Priority.BULK, lambda i=i: order.append(f"bulk{i}"))
                              for i in range(50)]]))
    a.submit(Work("ns/faulted", [[Task("restart", Priority.URGENT, lambda: order.append("urgent"))]]))
    gate.set()
    wait(lambda: len(order) == 51, "every task to run")
    assert order[0] == "urgent"


def test_a_fenced_replica_writes_nothing(applier) -> None:
    leading = {"yes": True}
    a = applier(1, fence=lambda: leading["yes"])
    gate = threading.Event()
    calls: list[int] = []
    done: list = []
    a.submit(Work("block", [[Task("busy", Priority.URGENT, gate.wait)]]))
    a.submit(Work("ns/j", [[Task(f"pod {i}", Priority.BULK, lambda i=i: calls.append(i)) for i in range(5)]],
                  done.append))
    leading["yes"] = False
    gate.set()
    wait(lambda: done, "the work to end")
    assert calls == [] and isinstance(done[0], Fenced)


def test_dropping_the_queue_ends_every_waiting_work(applier) -> None:
    a = applier(1)
    gate = threading.Event()
    done: list = []
    started = threading.Event()
    a.submit(Work("block", [[Task("busy", Priority.URGENT, lambda: (started.set(), gate.wait()))]]))
    wait(started.is_set, "the worker to be busy")
    a.submit(Work("ns/j", [[Task("pod", Priority.BULK, lambda: None)]], done.append))
    assert a.drop_queued() == 1
    gate.set()
    wait(lambda: done, "the dropped work to end")
    assert isinstance(done[0], Fenced) and not a.in_flight("ns/j")


def test_a_restart_and_its_pods_are_urgent_a_new_jobs_pods_are_bulk() -> None:
    first = plan_job(job(), NOW, offer=OFFER)
    assert status_priority(job(), first) == Priority.NORMAL and create_priority(first) == Priority.BULK
    running = job(started(phase="Running"), pods=RUNNING4)
    failed = job(started(phase="Running"), pods=[*RUNNING4[:3], (1, 3, "Failed")], exit_code=1)
    stop = plan_job(failed, NOW)
    assert stop.status.phase.value == "Restarting" and status_priority(failed, stop) == Priority.URGENT
    restarted = job(stop.status.model_dump(by_alias=True, mode="json"))
    second = plan_job(restarted, NOW + timedelta(minutes=20), offer=OFFER)
    assert second.status.attempt == 2
    assert status_priority(restarted, second) == Priority.URGENT and create_priority(second) == Priority.URGENT
    assert status_priority(running, plan_job(running, NOW)) == Priority.NORMAL


def test_expectations_hold_a_job_until_the_watch_shows_what_was_written() -> None:
    exp = Expectations(timeout=60)
    exp.expect("ns/j", now=0, decided_on=10, status="written", creates=["j-a1-0", "j-a1-1"])
    assert exp.overlay("ns/j") == "written" and not exp.settled("ns/j", 1, 10)
    exp.wrote("ns/j", 11)
    exp.finished("ns/j", 1)
    assert not exp.settled("ns/j", 2, 10, pods={"j-a1-0", "j-a1-1"})  # the status is not seen yet
    assert not exp.settled("ns/j", 2, 11, pods={"j-a1-0"})  # nor one pod
    assert exp.settled("ns/j", 2, 11, pods={"j-a1-0", "j-a1-1"})
    assert exp.overlay("ns/j") is None


def test_expectations_give_up_after_their_timeout_and_back_off_after_failures() -> None:
    exp = Expectations(timeout=60, base_backoff=1, max_backoff=4)
    exp.expect("ns/j", now=0, decided_on=10, creates=["j-a1-0"])
    exp.finished("ns/j", 0)
    assert not exp.settled("ns/j", 59, 10) and exp.settled("ns/j", 60, 10)  # a lost watch event
    for failures, delay in ((1, 1), (2, 2), (3, 4), (4, 4)):
        exp.expect("ns/j", now=100 * failures, decided_on=10)
        exp.finished("ns/j", 100 * failures, ValueError("refused"))
        assert not exp.settled("ns/j", 100 * failures + delay - 0.01, 10), failures
        assert exp.settled("ns/j", 100 * failures + delay, 10), failures
    exp.expect("ns/j", now=500, decided_on=10)
    exp.finished("ns/j", 500, ValueError("409"), conflict=True)
    assert not exp.settled("ns/j", 501, 10) and exp.settled("ns/j", 501, 11)  # a conflict waits for news
