"""A pool's defragmentation decisions through whole pool passes: plan, budget, dry run, one at a time,
the target placed first, background compaction."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from cardpool.api.cardpool import CardPoolStatus, DefragmentationStatus, Migration
from cardpool.api.trainingjob import Phase
from cardpool.core.observed import ObservedJob, ObservedNode, ObservedPod
from cardpool.core.pool import reconcile_pool

from .test_lifecycle import NOW, SPEC, job
from .test_pool_pass import POOL

NODES = [ObservedNode(f"h800-{i}", {"nvidia.com/gpu.product": "NVIDIA-H800"}, {"nvidia.com/gpu": 8},
                      {"nvidia.com/gpu": 8}, {"Ready": "True"}) for i in range(4)]


def small(name: str, node: str, checkpoint_age: float = 60, elastic: bool = True, **spec_changes) -> ObservedJob:
    """A running 1-worker, 4-card job on `node` that checkpoints."""
    spec = SPEC.model_copy(deep=True)
    spec.workers.cards_per_worker = 4
    spec.workers.size.min, spec.workers.size.max = 1, (2 if elastic else 1)
    spec.placement.accelerators = ["H800"]
    spec.failure_policy.progress_timeout_seconds = None
    for k, v in spec_changes.items():
        setattr(spec.placement, k, v)
    hour_ago = (NOW - timedelta(hours=1)).isoformat()
    status = {"phase": "Running", "attempt": 1, "workers": 1, "attemptStartTime": hour_ago,
              "placement": [{"group": "h800", "accelerator": "H800", "workers": 1, "nodes": [node]}],
              "history": [{"attempt": 1, "workers": 1, "startTime": hour_ago}],
              "lastCheckpoint": {"step": 10, "uri": "s3://c/10", "worldSize": 4, "attempt": 1,
                                 "time": (NOW - timedelta(seconds=checkpoint_age)).isoformat()}}
    base = job(status, spec=spec)
    pod = ObservedPod(f"{name}-a1-0", "ns", name, 1, 0, node, "Running", cards=4)
    return replace(base, name=name, pods=(pod,))


def gang(name: str = "gang", priority: int = 0) -> ObservedJob:
    spec = SPEC.model_copy(deep=True)
    spec.workers.size.min = spec.workers.size.max = 1
    spec.placement.accelerators = ["H800"]
    spec.priority = priority
    return replace(job(spec=spec), name=name)


def pool(**defrag):
    spec = POOL.model_copy(deep=True)
    for k, v in defrag.items():
        setattr(spec.defragmentation, k, v)
    return spec


FRAGMENTED = [small(f"s{i}", f"h800-{i}", checkpoint_age=60 * (i + 1)) for i in range(4)]  # 4 free on each node


def test_a_blocked_gang_gets_a_plan_and_the_moved_job_stops_with_a_graceful_save() -> None:
    plan = reconcile_pool(pool(), 1, None, NODES, [*FRAGMENTED, gang()], NOW)
    moved = {p.job: p for p in plan.jobs if p.status.phase == Phase.RESTARTING}
    assert list(moved) == ["ns/s0"]  # the freshest checkpoint: the least work to lose
    assert moved["ns/s0"].delete == ["s0-a1-0"] and moved["ns/s0"].status.history[-1].planned
    assert "making room for ns/gang" in moved["ns/s0"].status.conditions[0].message
    defrag = plan.status.defragmentation
    assert (defrag.target, defrag.since, defrag.fragmentation_before_percent) == ("ns/gang", NOW, 100)
    assert [(m.job, m.from_nodes, m.lost_card_seconds) for m in defrag.migrations] == [("ns/s0", ["h800-0"], 240)]
    assert [e[1] for e in plan.events] == ["Defragmenting"]


def test_while_moves_are_in_flight_nothing_else_moves_and_the_target_goes_first() -> None:
    first = reconcile_pool(pool(), 1, None, NODES, [*FRAGMENTED, gang()], NOW)
    s0 = replace(FRAGMENTED[0], status=first.jobs[0].status, pods=())  # its pod is gone, its save awaited
    later = NOW + timedelta(seconds=5)
    plan = reconcile_pool(pool(), 1, first.status, NODES, [s0, *FRAGMENTED[1:], gang()], later)
    assert plan.status.defragmentation.target == "ns/gang" and len(plan.status.defragmentation.migrations) == 1
    assert [p.job for p in plan.queue.admitted] == ["ns/gang"]  # h800-0 is free: the gang takes it
    assert plan.queue.admitted[0].cards_on() == {"h800-0": 8}


def test_the_budget_holds_a_plan_back() -> None:
    plan = reconcile_pool(pool(max_migrations_per_hour=0, max_concurrent_migrations=1), 1, None, NODES,
                          [*FRAGMENTED, gang()], NOW)
    assert not [p for p in plan.jobs if p.status.phase == Phase.RESTARTING]
    assert "needs 1 moves; the budget allows 0" in plan.status.defragmentation.waiting


def moved_before(*moves: tuple[str, str], minutes_ago: float = 30) -> CardPoolStatus:
    """A pool status recording earlier moves: (job, the job it made room for)."""
    when = NOW - timedelta(minutes=minutes_ago)
    return CardPoolStatus(defragmentation=DefragmentationStatus(migrations=[
        Migration(job=job_, made_room_for=for_, time=when, from_nodes=[], to_nodes=[]) for job_, for_ in moves]))


@pytest.mark.parametrize(("earlier", "minutes_ago", "moved"), [
    ((), 30, "ns/s0"),  # nothing moved before: the freshest checkpoint goes
    ((("ns/s0", "ns/other"),), 30, "ns/s1"),  # s0 was moved this hour: the next freshest goes
    ((("ns/s0", "ns/other"),), 61, "ns/s0"),  # an hour later it may move again
    ((("ns/gang", "ns/s0"),), 30, "ns/s1"),  # the gang was moved for s0: s0 is not moved for the gang
    ((("ns/s0", "ns/x"), ("ns/s1", "ns/x"), ("ns/s2", "ns/x"), ("ns/s3", "ns/x")), 30, None),  # nobody left
])
def test_no_job_is_moved_twice_in_an_hour_nor_for_the_job_moved_for_it(
        earlier: tuple, minutes_ago: float, moved: str | None) -> None:
    plan = reconcile_pool(pool(max_migrations_per_hour=20), 1, moved_before(*earlier, minutes_ago=minutes_ago),
                          NODES, [*FRAGMENTED, gang()], NOW)
    restarting = [p.job for p in plan.jobs if p.status.phase == Phase.RESTARTING]
    assert restarting == ([moved] if moved else [])


def test_a_dry_run_reports_the_plan_and_moves_nothing() -> None:
    plan = reconcile_pool(pool(dry_run=True), 1, None, NODES, [*FRAGMENTED, gang()], NOW)
    assert not [p for p in plan.jobs if p.status.phase == Phase.RESTARTING]
    assert plan.status.defragmentation.planned == ["ns/s0 -> h800-1"]
    assert plan.status.defragmentation.target is None


def test_jobs_that_opted_out_or_are_not_elastic_stay() -> None:
    stay = [small(f"s{i}", f"h800-{i}", allow_migration=False) for i in range(2)] + [
        small(f"s{i}", f"h800-{i}", elastic=False) for i in range(2, 4)]
    plan = reconcile_pool(pool(), 1, None, NODES, [*stay, gang()], NOW)
    assert not [p for p in plan.jobs if p.status.phase == Phase.RESTARTING]
    plan = reconcile_pool(pool(movable_jobs="All"), 1, None, NODES, [*stay, gang()], NOW)
    assert [p.job for p in plan.jobs if p.status.phase == Phase.RESTARTING] == ["ns/s2"]


def test_disabled_defragmentation_decides_nothing() -> None:
    plan = reconcile_pool(pool(enabled=False), 1, None, NODES, [*FRAGMENTED, gang()], NOW)
    assert plan.status.defragmentation is None
    assert not [p for p in plan.jobs if p.status.phase == Phase.RESTARTING]


@pytest.mark.parametrize(("fragmented_for", "moves"), [(599, 0), (600, 1)])
def test_compaction_carves_out_a_node_once_fragmentation_has_lasted(fragmented_for: int, moves: int) -> None:
    first = reconcile_pool(pool(), 1, None, NODES, FRAGMENTED, NOW)
    assert first.status.groups[0].fragmented_since == NOW and first.status.groups[0].fragmentation_percent == 100
    plan = reconcile_pool(pool(), 1, first.status, NODES, FRAGMENTED, NOW + timedelta(seconds=fragmented_for))
    restarting = [p.job for p in plan.jobs if p.status.phase == Phase.RESTARTING]
    assert len(restarting) == moves
    if moves:
        assert plan.status.defragmentation.target == "compaction/h800"
        assert plan.status.defragmentation.migrations[0].made_room_for == ""


def test_a_job_whose_pods_a_disruption_budget_protects_is_not_moved() -> None:
    from cardpool.core.observed import ObservedBudget

    labelled = [replace(j, pods=tuple(replace(p, labels=(("cardpool.io/job", j.name), ("team", "x")))
                                      for p in j.pods)) for j in FRAGMENTED]
    guard_s0 = ObservedBudget("ns", {"team": "x"}, (("cardpool.io/job", "In", ("s0",)),), 0)
    plan = reconcile_pool(pool(), 1, None, NODES, [*labelled, gang()], NOW, budgets=(guard_s0,))
    assert [p.job for p in plan.jobs if p.status.phase == Phase.RESTARTING] == ["ns/s1"]  # next least lost work
    allows_one = replace(guard_s0, disruptions_allowed=1)
    plan = reconcile_pool(pool(), 1, None, NODES, [*labelled, gang()], NOW, budgets=(allows_one,))
    assert [p.job for p in plan.jobs if p.status.phase == Phase.RESTARTING] == ["ns/s0"]
    elsewhere = replace(guard_s0, namespace="other")
    plan = reconcile_pool(pool(), 1, None, NODES, [*labelled, gang()], NOW, budgets=(elsewhere,))
    assert [p.job for p in plan.jobs if p.status.phase == Phase.RESTARTING] == ["ns/s0"]
