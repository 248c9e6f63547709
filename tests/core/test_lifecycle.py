"""A job's next step as a table: recorded status + observed pods + the queue's offer -> plan."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from cardpool.api.trainingjob import Phase, TrainingJobSpec, TrainingJobStatus
from cardpool.core.attempts import outdated, pod_shape, rank_nodes, record
from cardpool.core.candidates import needs_placement
from cardpool.core.lifecycle import plan_job, plan_missing_pool
from cardpool.core.observed import ObservedJob, ObservedPod, PodRefusal
from cardpool.core.placement import Placement
from cardpool.core.queue import Waiting
from cardpool.core.snapshot import Worker

from ..examples import EXAMPLES

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
SPEC = TrainingJobSpec.model_validate(yaml.safe_load((EXAMPLES / "job-pytorch-homogeneous.yaml").read_text())["spec"])
OFFER = Placement("ns/job", tuple(Worker(r, f"h800-{r}", "h800", "H800", 8) for r in range(4)))


def job(status: dict | None = None, pods: list[tuple[int, int, str]] = (), spec: TrainingJobSpec = SPEC,
        **pod_fields) -> ObservedJob:
    """pods: (attempt, rank, phase)."""
    observed = tuple(ObservedPod(f"job-a{a}-{r}", "ns", "job", a, r, f"h800-{r}", phase, **pod_fields)
                     for a, r, phase in pods)
    return ObservedJob("ns", "job", "uid-1", 1, NOW - timedelta(minutes=5), spec,
                       TrainingJobStatus.model_validate(status or {}), observed)


def started(attempt: int = 1, phase: str = "Starting", **extra) -> dict:
    status = TrainingJobStatus(attempt=attempt, phase=phase, placement=record(OFFER),
                               attempt_start_time=NOW - timedelta(seconds=10))
    return {**status.model_dump(by_alias=True, mode="json", exclude_none=True), **extra}


RUNNING4 = [(1, r, "Running") for r in range(4)]


def test_a_new_job_waits_in_the_queue_with_the_queues_reason() -> None:
    plan = plan_job(job(), NOW, waiting=Waiting("ns/job", "Reserved", "needs 4 x 8 cards of H800"))
    assert plan.status.phase == Phase.QUEUED and not plan.create
    ready = next(c for c in plan.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "Reserved")


def test_an_offer_records_the_attempt_before_any_pod_exists() -> None:
    plan = plan_job(job(), NOW, offer=OFFER)
    assert plan.status.phase == Phase.STARTING and plan.status.attempt == 1
    assert rank_nodes(plan.status) == {r: (f"h800-{r}", "h800", "H800") for r in range(4)}
    assert [s.rank for s in plan.create] == [0, 1, 2, 3]
    assert plan.events[0].reason == "GangPlaced"


def test_after_a_crash_only_the_missing_ranks_are_created_on_their_recorded_nodes() -> None:
    plan = plan_job(job(started(), pods=[(1, 0, "Running"), (1, 2, "Pending")]), NOW)
    assert [(s.rank, s.node) for s in plan.create] == [(1, "h800-1"), (3, "h800-3")]
    assert plan.status.attempt == 1 and not plan.delete


def test_all_ranks_running_makes_the_job_running_once() -> None:
    plan = plan_job(job(started(), pods=RUNNING4), NOW)
    assert plan.status.phase == Phase.RUNNING and plan.status.start_time == NOW
    again = plan_job(job(plan.status.model_dump(by_alias=True, mode="json"), pods=RUNNING4), NOW + timedelta(seconds=1))
    assert not again.status_changed and not again.events


def test_pods_of_other_attempts_are_deleted_before_a_new_attempt_is_placed() -> None:
    plan = plan_job(job({"phase": "Restarting", "attempt": 1}, pods=[(1, 0, "Running")]), NOW, offer=OFFER)
    assert plan.delete == ["job-a1-0"] and not plan.create and plan.status.attempt == 1
    assert needs_placement(job({"phase": "Restarting", "attempt": 1}, pods=[(1, 0, "Running")]), NOW) is False


@pytest.mark.parametrize(("counted", "expected"), [(0, Phase.RESTARTING), (20, Phase.FAILED)])
def test_a_failed_worker_restarts_within_the_budget_and_fails_beyond_it(counted: int, expected: Phase) -> None:
    pods = [(1, 0, "Running"), (1, 1, "Failed"), (1, 2, "Running"), (1, 3, "Running")]
    plan = plan_job(job(started(phase="Running", restarts={"counted": counted}), pods=pods, exit_code=137), NOW)
    assert plan.status.phase == expected
    assert sorted(plan.delete) == ["job-a1-0", "job-a1-1", "job-a1-2", "job-a1-3"]
    assert plan.status.last_failure.reason == "ExitCode137"
    assert plan.status.restarts.counted == min(counted + 1, 20)


def test_a_worker_on_a_faulty_node_restarts_without_spending_the_budget() -> None:
    plan = plan_job(job(started(phase="Running"), pods=RUNNING4), NOW, faulty_nodes={"h800-2": "NodeNotReady"})
    assert plan.status.phase == Phase.RESTARTING
    assert (plan.status.restarts.counted, plan.status.restarts.uncounted) == (0, 1)
    assert plan.status.last_failure.reason == "NodeNotReady"


def test_a_gang_that_does_not_start_in_time_is_rolled_back_with_backoff() -> None:
    status = started(attemptStartTime=(NOW - timedelta(seconds=SPEC.startup_timeout_seconds + 1)).isoformat())
    plan = plan_job(job(status, pods=[(1, 0, "Running"), (1, 1, "Pending")]), NOW)
    assert plan.status.phase == Phase.QUEUED and plan.status.start_timeouts == 1
    assert plan.status.not_before == NOW + timedelta(seconds=10)
    assert sorted(plan.delete) == ["job-a1-0", "job-a1-1"] and not plan.create
    ready = next(c for c in plan.status.conditions if c.type == "Ready")
    assert ready.reason == "GangStartTimeout" and "did not start within 600 s (1 of 4 workers" in ready.message
    backing_off = job(plan.status.model_dump(by_alias=True, mode="json"))
    assert not needs_placement(backing_off, NOW)
    later = plan_job(backing_off, NOW + timedelta(seconds=5))
    assert next(c for c in later.status.conditions if c.type == "Ready").reason == "GangStartTimeout"
    assert needs_placement(backing_off, NOW + timedelta(seconds=10))
    # its pods are still going (a busy kubelet): the job still says why it backs off, not only that it waits
    going = job(plan.status.model_dump(by_alias=True, mode="json"), pods=[(1, 0, "Running"), (1, 1, "Pending")],
                deleting=True)
    ready = next(c for c in plan_job(going, NOW + timedelta(seconds=5)).status.conditions if c.type == "Ready")
    assert ready.reason == "GangStartTimeout" and "did not start within 600 s" in ready.message
    after = next(c for c in plan_job(going, NOW + timedelta(seconds=10)).status.conditions if c.type == "Ready")
    assert after.reason == "WaitingForPods"  # the backoff is over: now only the old pods hold it back


def test_suspend_stops_the_workers_and_keeps_the_attempt() -> None:
    spec = SPEC.model_copy(update={"suspend": True})
    plan = plan_job(job(started(phase="Running"), pods=RUNNING4, spec=spec), NOW)
    assert plan.status.phase == Phase.SUSPENDED and len(plan.delete) == 4 and plan.status.attempt == 1


def test_rank_zero_decides_success_for_pytorch_and_the_rest_are_stopped() -> None:
    pods = [(1, 0, "Succeeded"), (1, 1, "Running"), (1, 2, "Running"), (1, 3, "Running")]
    plan = plan_job(job(started(phase="Running"), pods=pods), NOW)
    assert plan.status.phase == Phase.SUCCEEDED and plan.status.completion_time == NOW
    assert sorted(plan.delete) == ["job-a1-0", "job-a1-1", "job-a1-2", "job-a1-3"]


def test_a_finished_job_is_deleted_after_its_ttl() -> None:
    spec = SPEC.model_copy(update={"ttl_seconds_after_finished": 60})
    done = {"phase": "Succeeded", "attempt": 1, "completionTime": (NOW - timedelta(seconds=59)).isoformat()}
    assert not plan_job(job(done, spec=spec), NOW).delete_job
    assert plan_job(job(done, spec=spec), NOW + timedelta(seconds=1)).delete_job


def test_a_rank_whose_recorded_node_is_faulty_restarts_the_gang_at_once_without_spending_the_budget() -> None:
    plan = plan_job(job(started(), pods=[(1, 0, "Running")]), NOW, faulty_nodes={"h800-3": "CardFault"})
    assert plan.status.phase == Phase.RESTARTING and plan.status.restarts.uncounted == 1
    assert plan.status.start_timeouts == 0 and "h800-3" in plan.status.last_failure.message


def test_pods_already_deleted_on_a_faulty_node_do_not_hold_back_the_next_attempt() -> None:
    stuck = job({"phase": "Restarting", "attempt": 1}, pods=[(1, 0, "Running")], deleting=True)
    assert not needs_placement(stuck, NOW)
    assert needs_placement(stuck, NOW, {"h800-0": "NodeUnknown"})
    plan = plan_job(stuck, NOW, offer=OFFER, faulty_nodes={"h800-0": "NodeUnknown"})
    assert plan.status.attempt == 2 and len(plan.create) == 4


def test_ranks_that_already_succeeded_count_as_started() -> None:
    spec = SPEC.model_copy(update={"framework": "Generic"})
    pods = [(1, 0, "Succeeded"), (1, 1, "Running"), (1, 2, "Running"), (1, 3, "Running")]
    assert plan_job(job(started(), pods=pods, spec=spec), NOW).status.phase == Phase.RUNNING


def checkpoint(name: str, attempt: int, step: int, complete: bool = True, verdict: str | None = None):
    from cardpool.core.observed import ObservedCheckpoint

    return ObservedCheckpoint(name, "job", attempt, step, f"s3://c/{step}", 32, complete, NOW, verdict, "uid-1")


def with_checkpoints(observed: ObservedJob, *checkpoints) -> ObservedJob:
    return replace(observed, checkpoints=checkpoints)


def test_the_newest_complete_checkpoint_of_the_attempt_is_recorded_and_others_are_ignored() -> None:
    observed = with_checkpoints(job(started(attempt=2, phase="Running"), pods=[(2, r, "Running") for r in range(4)]),
                                checkpoint("old", 1, 500), checkpoint("c100", 2, 100), checkpoint("c200", 2, 200),
                                checkpoint("partial", 2, 300, complete=False))
    plan = plan_job(observed, NOW)
    assert plan.status.last_checkpoint.step == 200 and plan.status.last_checkpoint.name == "c200"
    verdicts = {v.checkpoint: (v.accepted, v.reason) for v in plan.verdicts}
    assert verdicts == {"old": (False, "OlderAttempt"), "c100": (True, "Recorded"), "c200": (True, "Recorded")}
    assert "partial" not in verdicts  # judged once it is complete


def test_a_checkpoint_is_judged_once_even_before_its_verdict_is_observed() -> None:
    status = started(phase="Running", lastCheckpoint={"step": 200, "uri": "s3://c/200", "time": NOW.isoformat(),
                                                      "worldSize": 32, "attempt": 1, "name": "c200"})
    observed = with_checkpoints(job(status, pods=RUNNING4), checkpoint("c200", 1, 200),
                                checkpoint("c150", 1, 150, verdict=None))
    plan = plan_job(observed, NOW)
    assert [(v.checkpoint, v.reason) for v in plan.verdicts] == [("c150", "NotNewer")]
    assert plan.status.last_checkpoint.step == 200


def test_a_job_whose_pool_does_not_exist_waits_for_it_once_it_is_reported() -> None:
    plan = plan_missing_pool(job(), NOW)
    ready = next(c for c in plan.status.conditions if c.type == "Ready")
    assert (plan.status.phase, ready.reason) == (Phase.QUEUED, "PoolNotFound") and "mixed" in ready.message
    assert next(c for c in plan.status.conditions if c.type == "Stalled").status == "True"  # a person must act
    again = plan_missing_pool(job(plan.status.model_dump(by_alias=True, mode="json")), NOW)
    assert not again.status_changed


def test_a_job_whose_pool_is_gone_is_still_judged() -> None:
    running = plan_missing_pool(job(started(phase="Running"), pods=RUNNING4), NOW)
    assert running.status.phase == Phase.RUNNING
    settled = job(running.status.model_dump(by_alias=True, mode="json"), pods=RUNNING4)
    assert not plan_missing_pool(settled, NOW).status_changed
    failed = [(1, 0, "Running"), (1, 1, "Failed"), (1, 2, "Running"), (1, 3, "Running")]
    restart = plan_missing_pool(job(running.status.model_dump(by_alias=True, mode="json"), pods=failed,
                                    exit_code=1), NOW)
    assert restart.status.phase == Phase.RESTARTING and restart.status.restarts.counted == 1
    assert sorted(restart.delete) == [f"job-a1-{r}" for r in range(4)]
    done = plan_missing_pool(job(running.status.model_dump(by_alias=True, mode="json"),
                                 pods=[(1, 0, "Succeeded"), *RUNNING4[1:]]), NOW)
    assert done.status.phase == Phase.SUCCEEDED


def test_each_attempt_is_recorded_with_its_size_resume_step_and_end() -> None:
    resumed = {"phase": "Restarting", "attempt": 1, "lastCheckpoint": {
        "step": 300, "uri": "s3://c/300", "time": NOW.isoformat(), "worldSize": 32, "attempt": 1},
        "history": [{"attempt": 1, "workers": 4, "startTime": NOW.isoformat(), "endTime": NOW.isoformat(),
                     "endReason": "NodeNotReady"}]}
    smaller = Placement("ns/job", OFFER.workers[:3])
    plan = plan_job(job(resumed), NOW, offer=smaller)
    last = plan.status.history[-1]
    assert (last.attempt, last.workers, last.resumed_from_step, last.end_time) == (2, 3, 300, None)
    assert [e.reason for e in plan.events] == ["GangPlaced", "Resized"]
    assert "from step 300" in plan.events[0].message and "(attempt 1: 4" in plan.events[1].message
    failed = plan_job(job(plan.status.model_dump(by_alias=True, mode="json"), pods=[(2, 0, "Running")]), NOW,
                      faulty_nodes={"h800-0": "CardFault"})
    assert (failed.status.history[-1].end_reason, failed.status.history[-1].end_time) == ("CardFault", NOW)


def test_a_repeated_counted_failure_waits_for_its_backoff() -> None:
    pods = [(1, 0, "Failed"), (1, 1, "Running"), (1, 2, "Running"), (1, 3, "Running")]
    plan = plan_job(job(started(phase="Running", restarts={"counted": 2}, failureStreak=2), pods=pods, exit_code=1),
                    NOW)
    assert plan.status.restarts.counted == 3 and plan.status.failure_streak == 3
    assert plan.status.not_before == NOW + timedelta(seconds=20)
    waiting = job(plan.status.model_dump(by_alias=True, mode="json"))
    assert not needs_placement(waiting, NOW + timedelta(seconds=19))
    ready = next(c for c in plan_job(waiting, NOW + timedelta(seconds=5)).status.conditions if c.type == "Ready")
    assert ready.reason == "ExitCode1" and "backoff" in ready.message
    assert needs_placement(waiting, NOW + timedelta(seconds=20))


@pytest.mark.parametrize(("ran_s", "streak_before", "streak_after", "delay_s"), [
    (None, 6, 7, 320),  # never ran with all its workers: the row goes on
    (30, 2, 3, 20),  # failed again after 30 s
    (599, 7, 8, 600),  # the longest backoff
    (600, 7, 1, 0),  # ran 10 minutes: a new row, restarted at once
    (86400, 30, 1, 0),  # failed once a day: never waits
])
def test_the_backoff_doubles_with_failures_in_a_row_and_a_long_run_resets_it(
        ran_s: int | None, streak_before: int, streak_after: int, delay_s: int) -> None:
    running = None if ran_s is None else (NOW - timedelta(seconds=ran_s)).isoformat()
    history = [{"attempt": 1, "workers": 4, "startTime": (NOW - timedelta(days=2)).isoformat(),
                **({"runningTime": running} if running else {})}]
    pods = [(1, 0, "Failed"), (1, 1, "Running"), (1, 2, "Running"), (1, 3, "Running")]
    plan = plan_job(job(started(phase="Running", restarts={"counted": 5}, failureStreak=streak_before,
                                history=history), pods=pods, exit_code=1), NOW)
    assert plan.status.failure_streak == streak_after and plan.status.restarts.counted == 6
    assert plan.status.not_before == (NOW + timedelta(seconds=delay_s) if delay_s else None)


def test_a_fail_rule_ends_the_job_at_once() -> None:
    pods = [(1, 0, "Running"), (1, 1, "Failed"), (1, 2, "Running"), (1, 3, "Running")]
    plan = plan_job(job(started(phase="Running"), pods=pods, exit_code=2), NOW)  # the example: exit 2 -> Fail
    ready = next(c for c in plan.status.conditions if c.type == "Ready")
    assert plan.status.phase == Phase.FAILED and ready.reason == "FailedByPolicy" and "rule 0" in ready.message
    assert plan.status.restarts.counted == 0


def progress(step: int, seconds_ago: float):
    from cardpool.core.observed import ObservedProgress

    return ObservedProgress(step, 1000, NOW - timedelta(seconds=seconds_ago))


def test_progress_of_rank_zero_is_recorded_and_silence_beyond_the_timeout_is_a_hang() -> None:
    timeout = 1800
    spec = SPEC.model_copy(deep=True)  # the example has no timeout: its demo workers never report progress
    spec.failure_policy.progress_timeout_seconds = timeout
    long_ago = (NOW - timedelta(seconds=timeout + 100)).isoformat()
    observed = job(started(phase="Running", attemptStartTime=long_ago), pods=RUNNING4, spec=spec)
    observed = replace(observed, pods=(replace(observed.pods[0], progress=progress(42, 60)), *observed.pods[1:]))
    plan = plan_job(observed, NOW)
    assert plan.status.phase == Phase.RUNNING
    assert (plan.status.progress.step, plan.status.progress.attempt) == (42, 1)
    silent = plan_job(observed, NOW + timedelta(seconds=timeout))
    assert silent.status.phase == Phase.RESTARTING and silent.status.last_failure.reason == "Hang"
    assert "last at step 42" in silent.status.last_failure.message
    assert silent.status.restarts.counted == 1


def test_a_job_below_its_size_grows_once_room_has_stayed_free_for_the_hysteresis() -> None:
    spec = SPEC.model_copy(deep=True)
    spec.workers.size.min, spec.workers.size.grow_after_seconds = 2, 60
    small = {**started(phase="Running"), "placement": [{"group": "h800", "accelerator": "H800", "workers": 2,
                                                        "nodes": ["h800-0", "h800-1"]}]}
    two = [(1, 0, "Running"), (1, 1, "Running")]
    first = plan_job(job(small, pods=two, spec=spec), NOW, grow_to=4)
    assert first.status.phase == Phase.RUNNING and first.status.larger_size_since == NOW
    seen = first.status.model_dump(by_alias=True, mode="json")
    gone = plan_job(job(seen, pods=two, spec=spec), NOW + timedelta(seconds=30), grow_to=None)
    assert gone.status.larger_size_since is None  # the room went away: the clock restarts
    grow = plan_job(job(seen, pods=two, spec=spec), NOW + timedelta(seconds=60), grow_to=4)
    assert grow.status.phase == Phase.RESTARTING and grow.status.restarts.scaling == 1
    assert sorted(grow.delete) == ["job-a1-0", "job-a1-1"] and grow.status.restarts.counted == 0
    no_checkpoint = spec.model_copy(update={"checkpoint": None})
    assert plan_job(job(seen, pods=two, spec=no_checkpoint), NOW + timedelta(seconds=60),
                    grow_to=4).status.phase == Phase.RUNNING


def test_after_growing_the_next_attempt_waits_for_the_graceful_save_it_asked_for() -> None:
    spec = SPEC.model_copy(deep=True)
    spec.workers.size.min, spec.workers.size.grow_after_seconds = 2, 0
    small = {**started(phase="Running"), "placement": [{"group": "h800", "accelerator": "H800", "workers": 2,
                                                        "nodes": ["h800-0", "h800-1"]}],
             "history": [{"attempt": 1, "workers": 2, "startTime": NOW.isoformat()}]}
    stopped = plan_job(job(small, pods=[(1, 0, "Running"), (1, 1, "Running")], spec=spec), NOW, grow_to=4).status
    assert stopped.history[-1].planned and stopped.phase == Phase.RESTARTING
    gone = job(stopped.model_dump(by_alias=True, mode="json"), spec=spec)
    assert not needs_placement(gone, NOW + timedelta(seconds=5))
    waiting = plan_job(gone, NOW + timedelta(seconds=5), offer=OFFER)
    assert waiting.status.attempt == 1 and not waiting.create
    assert next(c for c in waiting.status.conditions if c.type == "Ready").reason == "WaitingForCheckpoint"
    saved = with_checkpoints(gone, checkpoint("graceful", 1, 640))
    placed = plan_job(saved, NOW + timedelta(seconds=6), offer=OFFER)
    assert placed.status.attempt == 2 and placed.status.history[-1].resumed_from_step == 640
    # a trainer that never reports: the wait ends after gracefulSaveSeconds (120 in the example)
    assert needs_placement(gone, NOW + timedelta(seconds=120))


def test_a_plan_says_when_a_time_based_rule_could_decide_otherwise() -> None:
    starting = job(started(), pods=[(1, 0, "Running"), (1, 1, "Pending")])
    plan = plan_job(starting, NOW)
    limit = NOW - timedelta(seconds=10) + timedelta(seconds=SPEC.startup_timeout_seconds, microseconds=1)
    assert plan.recheck_at == limit  # the gang start timeout
    assert plan_job(starting, limit).status.phase == Phase.QUEUED  # and then it is rolled back
    assert plan_job(job(), NOW).recheck_at is None  # a queued job: nothing happens by time alone


# ---- edits under a live attempt, and pods the API server refuses ----------------------------------------------

def edited(**changes) -> TrainingJobSpec:
    """SPEC with fields replaced, paths joined by "__": edited(workers__size={"min": 1, "max": 2})."""
    body = SPEC.model_dump(by_alias=True, mode="json", exclude_none=True)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = body
        for part in parents:
            node = node[part]
        node[leaf] = value
    return TrainingJobSpec.model_validate(body)


def running_with_hash() -> dict:
    """A running attempt of SPEC as it stood when the attempt started."""
    return started(phase="Running", templateHash=pod_shape(SPEC))


@pytest.mark.parametrize(("spec", "why"), [
    (SPEC, None),  # nothing changed
    (edited(priority=SPEC.priority + 1), None),  # a field that does not shape the pods
    (edited(workers__template__metadata={"labels": {"team": "b"}}), "spec.workers.template"),
    (edited(workers__globalBatchSize=4096), "globalBatchSize"),
    (edited(placement__accelerators=["A100"]), "no longer lists H800"),
    (edited(workers__size={"min": 1, "max": 2}), "outside spec.workers.size"),
    (edited(workers__size={"min": 8, "max": 8}), "outside spec.workers.size"),
])
def test_an_edit_that_the_live_attempt_cannot_take_is_named(spec: TrainingJobSpec, why: str | None) -> None:
    status = TrainingJobStatus.model_validate(running_with_hash())
    found = outdated(replace(job(spec=spec), shape=pod_shape(spec)), status)
    assert (found is None) if why is None else (why in (found or "")), found


def test_an_attempt_started_before_hashes_were_recorded_is_not_restarted_for_its_template() -> None:
    status = TrainingJobStatus.model_validate(started(phase="Running"))  # no templateHash
    assert outdated(job(spec=edited(workers__globalBatchSize=4096)), status) is None


def test_an_edited_template_restarts_the_running_attempt_with_a_graceful_save_uncounted() -> None:
    spec = edited(workers__template__metadata={"labels": {"team": "b"}})
    plan = plan_job(job(running_with_hash(), pods=RUNNING4, spec=spec), NOW)
    assert (plan.status.phase, plan.status.conditions[0].reason) == (Phase.RESTARTING, "SpecChanged")
    assert sorted(plan.delete) == [f"job-a1-{r}" for r in range(4)] and not plan.create
    assert plan.status.restarts.uncounted == 1 and plan.status.restarts.counted == 0
    assert plan.status.observed_generation == 1
    # the next attempt records the new hash: it is not restarted again
    again = plan_job(job(plan.status.model_dump(by_alias=True, mode="json"), spec=spec), NOW, offer=OFFER)
    assert again.status.template_hash == pod_shape(spec) and again.status.attempt == 2


REFUSED = PodRefusal("InvalidPodTemplate", "the API server refuses the worker pod for H800: spec.containers[0].name")


@pytest.mark.parametrize(("status", "pods", "phase", "deleted"), [
    ({}, [], Phase.QUEUED, []),  # never placed: no attempt starts
    ({"phase": "Suspended"}, [], Phase.QUEUED, []),  # resumed: the refusal, not Suspended
    (started(), [(1, 0, "Pending")], Phase.QUEUED, ["job-a1-0"]),  # a starting attempt is rolled back
])
def test_a_refused_pod_places_nothing_and_the_job_is_stalled_with_the_api_servers_words(
        status: dict, pods: list, phase: Phase, deleted: list[str]) -> None:
    plan = plan_job(job(status, pods=pods), NOW, offer=OFFER, refusal=REFUSED)
    assert plan.status.phase == phase and not plan.create and plan.delete == deleted
    assert plan.status.attempt == (1 if status.get("attempt") else 0)
    conditions = {c.type: (c.status, c.reason) for c in plan.status.conditions}
    assert conditions["Stalled"] == ("True", "InvalidPodTemplate")
    assert conditions["Ready"] == ("False", "InvalidPodTemplate")
    assert REFUSED.message in plan.status.conditions[0].message


def test_a_running_attempt_is_not_stopped_by_a_refusal_of_its_next_pods() -> None:
    """A refusal found later (a PriorityClass deleted) matters for the next attempt; the running one keeps going."""
    plan = plan_job(job(started(phase="Running"), pods=RUNNING4), NOW, refusal=REFUSED)
    assert plan.status.phase == Phase.RUNNING and not plan.delete


@dataclass(frozen=True)
class Transition:
    """One row of the lifecycle as a table: a job as observed, what the pool pass says, and what follows."""

    what: str
    status: dict
    pods: list = field(default_factory=list)
    given: dict = field(default_factory=dict)
    """plan_job's other inputs: offer, waiting, faulty_nodes, grow_to, migrate, refusal."""
    spec: dict = field(default_factory=dict)
    phase: str = ""
    reason: str = ""
    creates: int = 0
    deletes: int = 0
    delete_job: bool = False


ALL_RUNNING = [(1, r, "Running") for r in range(4)]
LONG_AGO = (NOW - timedelta(hours=2)).isoformat()
JUST_NOW = (NOW - timedelta(seconds=10)).isoformat()
ELASTIC = SPEC.workers.model_copy(update={"size": SPEC.workers.size.model_copy(update={"min": 2, "max": 8})})
TRANSITIONS = [  # (the phase's check that decides, in the order core.lifecycle.PHASES, BETWEEN and LIVE try them)
    # between attempts
    Transition("a new job waits with the queue's reason", {}, given={"waiting": Waiting("ns/job", "Reserved", "")},
               phase="Queued", reason="Reserved"),
    Transition("a new job the queue has not seen yet is Queued", {}, phase="Queued", reason="Queued"),
    Transition("the queue's offer records attempt 1; its pods follow", {}, given={"offer": OFFER},
               phase="Starting", reason="GangPlaced", creates=4),
    Transition("pods of an earlier attempt go before the next is placed", {"phase": "Restarting", "attempt": 1},
               pods=[(1, 0, "Running")], given={"offer": OFFER}, phase="Restarting", reason="WaitingForPods",
               deletes=1),
    Transition("after a planned stop the next attempt waits for the graceful save",
               {"phase": "Restarting", "attempt": 1, "history": [
                   {"attempt": 1, "workers": 4, "startTime": LONG_AGO, "endTime": JUST_NOW, "endReason": "GrowTo6",
                    "planned": True}]}, given={"offer": OFFER}, phase="Restarting", reason="WaitingForCheckpoint"),
    Transition("a spec the API server refuses places nothing", {}, given={"offer": OFFER, "refusal": "REFUSED"},
               phase="Queued", reason="InvalidPodTemplate"),
    Transition("a resumed job leaves Suspended for the queue", {"phase": "Suspended"}, phase="Queued",
               reason="Queued"),
    # a live attempt
    Transition("rank 0 done: a PyTorch job succeeded, its pods go", started(phase="Running"),
               pods=[(1, 0, "Succeeded"), *ALL_RUNNING[1:]], phase="Succeeded", reason="Succeeded", deletes=4),
    Transition("a node fault under a rank restarts the gang", started(phase="Running"), pods=ALL_RUNNING,
               given={"faulty_nodes": {"h800-1": "NodeNotReady"}}, phase="Restarting", reason="NodeNotReady",
               deletes=4),
    Transition("a refusal rolls a starting gang back", started(), pods=[(1, 0, "Pending")],
               given={"refusal": "REFUSED"}, phase="Queued", reason="InvalidPodTemplate", deletes=1),
    Transition("an edit the attempt cannot take restarts it", started(phase="Running", templateHash="0" * 16),
               pods=ALL_RUNNING, phase="Restarting", reason="SpecChanged", deletes=4),
    Transition("a gang that did not start in time is rolled back", started(attemptStartTime=LONG_AGO),
               pods=[(1, 0, "Running")], phase="Queued", reason="GangStartTimeout", deletes=1),
    Transition("defragmentation moves a running job", started(phase="Running"), pods=ALL_RUNNING,
               given={"migrate": "room for ns/big"}, phase="Restarting", reason="Migrating", deletes=4),
    Transition("room to grow that stayed free long enough: a planned stop, restarted larger",
               started(phase="Running", largerSizeSince=LONG_AGO), pods=ALL_RUNNING, given={"grow_to": 6},
               spec={"workers": ELASTIC}, phase="Restarting", reason="Growing", deletes=4),
    Transition("missing ranks are created on their recorded nodes", started(), pods=[(1, 0, "Running")],
               phase="Starting", reason="Starting", creates=3),
    Transition("all ranks running: Running", started(), pods=ALL_RUNNING, phase="Running", reason="Running"),
    # suspended, finished
    Transition("spec.suspend stops a running attempt", started(phase="Running"), pods=ALL_RUNNING,
               spec={"suspend": True}, phase="Suspended", reason="Suspended", deletes=4),
    Transition("a finished job stays as it ended", {"phase": "Succeeded", "completionTime": NOW.isoformat()},
               phase="Succeeded", reason="Succeeded"),
    Transition("a finished job goes once its TTL has passed", {"phase": "Failed", "completionTime": LONG_AGO},
               spec={"ttl_seconds_after_finished": 60}, phase="Failed", delete_job=True),
]


@pytest.mark.parametrize("t", TRANSITIONS, ids=[t.what for t in TRANSITIONS])
def test_the_lifecycle_as_a_table(t: Transition) -> None:
    given = {k: REFUSED if v == "REFUSED" else v for k, v in t.given.items()}
    observed = job(t.status, pods=t.pods, spec=SPEC.model_copy(update=t.spec))
    plan = plan_job(observed, NOW, **given)
    ready = next((c for c in plan.status.conditions if c.type == "Ready"), None)
    assert (plan.status.phase, len(plan.create), len(plan.delete), plan.delete_job) == (
        t.phase, t.creates, t.deletes, t.delete_job)
    if t.reason:
        assert ready is not None and ready.reason == t.reason, ready
