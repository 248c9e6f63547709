"""Checkpoint advice: faults counted once per drain in the group's history, the fault rate estimated from them
and a published prior, and the Young/Daly interval for the nodes a job runs on and the save time it reports."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import pytest

from cardpool.api.cardpool import CountedFault, FaultHistory
from cardpool.api.trainingjob import CheckpointAdvice, CheckpointRecord, TrainingJobStatus
from cardpool.core.advice import MIN_INTERVAL_S, PRIOR_NODE_SECONDS, GroupRate, advise, count_faults, fault_rates
from cardpool.core.drain import REQUESTED
from cardpool.core.lifecycle import plan_job
from cardpool.core.observed import DrainRecord
from cardpool.core.pool import reconcile_pool

from .test_lifecycle import OFFER, RUNNING4, job, started
from .test_pool_pass import NODES, NOW, POOL

HOUR = 3600.0
T1 = NOW - timedelta(hours=1)
T2 = NOW - timedelta(minutes=10)


def drain(reason: str, since=T1) -> DrainRecord:
    return DrainRecord(reason=reason, since=since, cordoned=True)


def history(count: int, *open_: tuple[str, str, object], since=NOW - timedelta(days=1)) -> FaultHistory:
    return FaultHistory(count=count, since=since, open=[CountedFault(node=n, reason=r, since=s) for n, r, s in open_])


@pytest.mark.parametrize(("previous", "drains", "count", "open_"), [
    (None, [], 0, []),
    (None, [("n1", drain("NodeNotReady"))], 1, ["n1"]),
    (history(0), [("n1", drain("NodeNotReady")), ("n2", drain("CardFault"))], 2, ["n1", "n2"]),
    # the same drain seen again (every pass, or another replica after a crash) is the same fault
    (history(3, ("n1", "NodeNotReady", T1)), [("n1", drain("NodeNotReady"))], 3, ["n1"]),
    # read back from status with whole seconds: still the same drain
    (history(3, ("n1", "NodeNotReady", T1.replace(microsecond=0))),
     [("n1", drain("NodeNotReady", T1.replace(microsecond=123456)))], 3, ["n1"]),
    # the node was undrained, then failed again: a new fault
    (history(3, ("n1", "NodeNotReady", T1)), [("n1", drain("NodeNotReady", T2))], 4, ["n1"]),
    # its drain ended: nothing counted, nothing open
    (history(3, ("n1", "NodeNotReady", T1)), [], 3, []),
    # a drain a person asked for is not a fault
    (history(3), [("n1", drain(REQUESTED))], 3, []),
], ids=["nothing", "first-fault", "two-nodes", "seen-again", "whole-seconds", "failed-again", "repaired",
        "requested"])
def test_each_drain_of_a_faulty_node_counts_once(previous, drains, count, open_) -> None:
    got = count_faults(previous, drains, NOW)
    assert (got.count, [f.node for f in got.open]) == (count, open_)
    assert got.since == (previous.since if previous else NOW)  # counting began when the group was first seen


def test_an_unchanged_history_is_the_same_object_so_the_status_does_not_change() -> None:
    before = history(3, ("n1", "NodeNotReady", T1))
    assert count_faults(before, [("n1", drain("NodeNotReady"))], NOW) is before


def test_the_rate_is_the_observed_one_with_the_published_prior_as_one_fault_seen() -> None:
    young = fault_rates([("g", 100, history(0, since=NOW))], NOW)["g"]
    assert young == GroupRate(1 / PRIOR_NODE_SECONDS, 0)  # nothing observed: the prior alone
    # 1,000 nodes over 30 days with 240 faults: the data dominate the prior
    old = fault_rates([("g", 1000, history(240, since=NOW - timedelta(days=30)))], NOW)["g"]
    assert old.faults == 240
    assert old.per_node_second == pytest.approx(241 / (1000 * 30 * 86400 + PRIOR_NODE_SECONDS))
    assert pytest.approx(6335, rel=1e-3) == PRIOR_NODE_SECONDS / HOUR  # Llama 3: 2,048 x 54 x 24 / 419


def running(save_seconds: float | None, nodes: int = 4, advice: CheckpointAdvice | None = None
            ) -> TrainingJobStatus:
    status = TrainingJobStatus.model_validate(started(phase="Running"))
    status.placement[0].nodes = status.placement[0].nodes[:nodes]
    status.last_checkpoint = CheckpointRecord(step=10, uri="s3://c/10", time=NOW, world_size=32,
                                              save_seconds=save_seconds)
    status.checkpoint_advice = advice
    return status


RATE = {"h800": GroupRate(1 / (4 * 3 * HOUR), 7)}  # 4 nodes: one fault every 3 hours


@pytest.mark.parametrize(("status", "interval", "mtbf"), [
    (running(60.0), math.sqrt(2 * 3 * HOUR * 60), 3 * HOUR),
    (running(1.0), math.sqrt(2 * 3 * HOUR * 1), 3 * HOUR),
    (running(60.0, nodes=2), math.sqrt(2 * 6 * HOUR * 60), 6 * HOUR),  # half the nodes, twice the MTBF
    (running(0.001), MIN_INTERVAL_S, 3 * HOUR),  # a free save: not more often than the floor
    (running(0.0), MIN_INTERVAL_S, 3 * HOUR),
    (running(8000.0), 3 * HOUR, 3 * HOUR),  # a save as long as the MTBF: once per MTBF (Young/Daly's cap)
], ids=["60s-save", "1s-save", "fewer-nodes", "tiny-save", "zero-save", "save-beyond-half-the-mtbf"])
def test_the_advice_is_young_daly_for_the_jobs_nodes_and_its_save_time(status, interval, mtbf) -> None:
    got = advise(status, RATE)
    assert got.interval_seconds == round(interval)
    assert got.mtbf_seconds == round(mtbf)
    assert (got.nodes, got.faults, got.save_seconds) == (len(status.placement[0].nodes), 7,
                                                         status.last_checkpoint.save_seconds)


def test_no_advice_before_a_save_time_is_reported_and_the_old_one_while_the_job_runs_nowhere() -> None:
    assert advise(running(None), RATE) is None
    kept = CheckpointAdvice(interval_seconds=900, mtbf_seconds=10800, save_seconds=60, nodes=4, faults=7)
    assert advise(running(None, advice=kept), RATE) is kept
    between = running(60.0, advice=kept)
    between.placement = []
    assert advise(between, RATE) is kept


@pytest.mark.parametrize(("kept_interval", "kept_nodes", "kept"), [
    (1100, 4, True),   # 1,138 s now: within a tenth of 1,100
    (1300, 4, False),  # more than a tenth away
    (1138, 3, False),  # the job's nodes changed
], ids=["small-drift", "large-drift", "other-nodes"])
def test_the_advice_moves_only_when_it_changes_by_more_than_a_tenth(kept_interval, kept_nodes, kept) -> None:
    old = CheckpointAdvice(interval_seconds=kept_interval, mtbf_seconds=10800, save_seconds=60, nodes=kept_nodes,
                           faults=6)
    got = advise(running(60.0, advice=old), RATE)
    assert (got is old) == kept
    if not kept:
        assert got.interval_seconds == 1138


def test_a_new_attempt_is_given_the_advice_and_keeps_it_for_its_whole_life() -> None:
    failed = job(started(phase="Running"), pods=RUNNING4)
    failed.status.last_checkpoint = CheckpointRecord(step=10, uri="s3://c/10", time=NOW, world_size=32,
                                                     save_seconds=60.0)
    stopped = plan_job(failed, NOW, faulty_nodes={"h800-1": "NodeNotReady"}, fault_rates=RATE)
    restarted = plan_job(job(stopped.status.model_dump(by_alias=True, mode="json")), NOW + timedelta(minutes=1),
                         offer=OFFER, fault_rates=RATE)
    this = restarted.status.history[-1]
    assert this.attempt == 2 and this.checkpoint_interval_seconds == 1138
    assert restarted.status.checkpoint_advice.interval_seconds == 1138
    later = plan_job(job(restarted.status.model_dump(by_alias=True, mode="json"), pods=[(2, r, "Running")
                                                                                         for r in range(4)]),
                     NOW + timedelta(minutes=2), fault_rates={"h800": GroupRate(1 / (4 * 12 * HOUR), 8)})
    assert later.status.checkpoint_advice.interval_seconds == 2277  # the estimate moved: the advice follows
    assert later.status.history[-1].checkpoint_interval_seconds == 1138  # what the running pods were given


def test_without_fault_rates_the_advice_is_left_alone() -> None:
    kept = CheckpointAdvice(interval_seconds=900, mtbf_seconds=10800, save_seconds=60, nodes=4, faults=7)
    status = started(phase="Running", checkpointAdvice=kept.model_dump(by_alias=True))
    assert plan_job(job(status, pods=RUNNING4), NOW).status.checkpoint_advice == kept


def test_the_pool_pass_counts_a_faulty_nodes_drain_once_and_advises_the_jobs_on_the_group() -> None:
    drained = [replace(n, drain=drain("NodeNotReady")) if n.name == "h800-3" else n for n in NODES]
    first = reconcile_pool(POOL, 1, None, drained, [], NOW).status
    h800 = next(g for g in first.groups if g.name == "h800")
    assert (h800.faults.count, [f.node for f in h800.faults.open], h800.faults.since) == (1, ["h800-3"], NOW)
    assert all(g.faults.count == 0 for g in first.groups if g.name != "h800")
    again = reconcile_pool(POOL, 1, first, drained, [], NOW + timedelta(minutes=5)).status
    assert next(g for g in again.groups if g.name == "h800").faults.count == 1  # the same drain
    repaired = reconcile_pool(POOL, 1, again, NODES, [], NOW + timedelta(hours=1)).status
    assert next(g for g in repaired.groups if g.name == "h800").faults == FaultHistory(count=1, since=NOW)
    later = NOW + timedelta(hours=1)
    ran = job(started(phase="Running", attemptStartTime=(later - timedelta(minutes=1)).isoformat()), pods=RUNNING4)
    ran.status.last_checkpoint = CheckpointRecord(step=10, uri="s3://c/10", time=NOW, world_size=32,
                                                  save_seconds=60.0)
    plan = reconcile_pool(POOL, 1, repaired, NODES, [ran], later).jobs[0]
    advice = plan.status.checkpoint_advice
    # 4 nodes observed for an hour with 1 fault, and the prior: (1 + 1) / (4 x 3,600 + PRIOR) per node-second
    mtbf = (4 * HOUR + PRIOR_NODE_SECONDS) / 2 / 4
    assert (advice.faults, advice.nodes, advice.mtbf_seconds) == (1, 4, round(mtbf))
    assert advice.interval_seconds == round(math.sqrt(2 * mtbf * 60))


def test_the_specs_expected_save_time_advises_until_a_checkpoint_reports_its_own() -> None:
    status = running(None)
    status.last_checkpoint = None
    assert advise(status, RATE) is None  # nothing known about the save: no advice
    assert advise(status, RATE, expected_save=60.0).interval_seconds == 1138
    reported = running(1.0)
    assert advise(reported, RATE, expected_save=60.0).interval_seconds == round(math.sqrt(2 * 3 * HOUR * 1))


def test_a_first_attempt_is_advised_from_the_specs_expected_save_time() -> None:
    spec = job().spec.model_copy(deep=True)
    spec.checkpoint.save_seconds = 60.0
    first = plan_job(job(spec=spec), NOW, offer=OFFER, fault_rates=RATE)
    assert first.status.attempt == 1 and first.status.history[-1].checkpoint_interval_seconds == 1138
    unknown = plan_job(job(), NOW, offer=OFFER, fault_rates=RATE)
    assert unknown.status.history[-1].checkpoint_interval_seconds is None
