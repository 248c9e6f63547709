"""A pool pass counts every card still in use, whatever the phase of the job holding it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import yaml

from cardpool.api.cardpool import CardPoolSpec
from cardpool.api.trainingjob import Phase
from cardpool.core.observed import ObservedNode
from cardpool.core.pool import reconcile_pool

from ..examples import EXAMPLES
from .test_lifecycle import job, started

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
POOL = CardPoolSpec.model_validate(yaml.safe_load((EXAMPLES / "pool-mixed-vendor.yaml").read_text())["spec"])
NODES = [ObservedNode(f"h800-{i}", {"nvidia.com/gpu.product": "NVIDIA-H800"}, {"nvidia.com/gpu": 8},
                      {"nvidia.com/gpu": 8}, {"Ready": "True"}) for i in range(4)]


def test_pods_of_a_restarting_job_still_hold_their_cards() -> None:
    restarting = job({"phase": "Restarting", "attempt": 1}, pods=[(1, r, "Running") for r in range(4)],
                     deleting=True)
    waiting = replace(job(), name="other")
    plan = reconcile_pool(POOL, 1, None, NODES, [restarting, waiting], NOW)
    assert not plan.queue.admitted  # h800-0..3 are still busy with the terminating pods
    assert {p.job: p.status.phase for p in plan.jobs}["ns/other"] == Phase.QUEUED


def test_a_recorded_node_that_left_the_pool_is_a_fault() -> None:
    gone = job(started(phase="Running"), pods=[(1, r, "Running") for r in range(4)])
    plan = reconcile_pool(POOL, 1, None, NODES[:3], [gone], NOW)
    assert plan.faulty_nodes == {"h800-3": "NodeMissing"}
    assert plan.jobs[0].status.phase == Phase.RESTARTING


def test_pods_stuck_terminating_on_a_lost_node_are_force_removed_after_the_pools_limit() -> None:
    from datetime import timedelta

    lost = [replace(n, conditions={"Ready": "Unknown"}) if n.name == "h800-0" else n for n in NODES]
    limit = POOL.health.stuck_terminating_seconds
    pods = [(1, r, "Running") for r in range(2)]
    for age, expected in ((limit - 1, []), (limit, ["job-a1-0"])):
        restarting = job({"phase": "Restarting", "attempt": 1}, pods=pods, deleting=True,
                         deleting_since=NOW - timedelta(seconds=age))
        plan = reconcile_pool(POOL, 1, None, lost, [restarting], NOW)
        assert plan.jobs[0].force_delete == expected  # h800-1 is healthy: its kubelet ends its pod itself


def test_a_running_job_below_its_size_is_offered_the_room_to_grow_only_when_nobody_waits() -> None:
    spec = job().spec.model_copy(deep=True)
    spec.workers.size.min = 2
    small = {**started(phase="Running"), "placement": [{"group": "h800", "accelerator": "H800", "workers": 2,
                                                        "nodes": ["h800-0", "h800-1"]}]}
    running = job(small, pods=[(1, 0, "Running"), (1, 1, "Running")], spec=spec)
    plan = reconcile_pool(POOL, 1, None, NODES, [running], NOW)
    assert plan.jobs[0].status.larger_size_since == NOW
    waiting = replace(job(), name="other")  # 4 x 8 H800/A100: waits for the cards growth would take
    plan = reconcile_pool(POOL, 1, None, NODES, [running, waiting], NOW)
    assert plan.jobs[0].status.larger_size_since is None


def test_a_mixed_job_records_each_familys_throughput_and_share_of_the_global_batch() -> None:
    from cardpool.core.observed import ObservedNode as Node

    ascend = [Node(f"ascend910b-{i}", {"node.kubernetes.io/npu.chip.name": "910B"}, {"huawei.com/Ascend910": 8},
                   {"huawei.com/Ascend910": 8}, {"Ready": "True"}) for i in range(4)]
    spec = job().spec.model_copy(deep=True)
    spec.placement.accelerators, spec.placement.mode = ["H800", "Ascend910B"], "Mixed"
    spec.workers.size.min = spec.workers.size.max = 6
    spec.workers.global_batch_size = 1000
    spec.workers.overrides = []
    plan = reconcile_pool(POOL, 1, None, NODES + ascend, [job(spec=spec)], NOW)
    placement = plan.jobs[0].status.placement
    assert [(g.accelerator, g.workers, g.relative_throughput, g.batch_share) for g in placement] == [
        ("H800", 4, 1.0, 768), ("Ascend910B", 2, 0.6, 232)]  # per rank 192.3 and 115.4: the 2 left go to 115.4
    assert plan.jobs[0].status.accelerator == "H800+Ascend910B"


def test_only_one_job_grows_into_the_same_room_and_none_while_another_is_between_attempts() -> None:
    spec = job().spec.model_copy(deep=True)
    spec.workers.size.min = 1
    spec.placement.accelerators = ["H800"]

    def on(name: str, node: str):
        status = {**started(phase="Running"), "workers": 1, "placement": [
            {"group": "h800", "accelerator": "H800", "workers": 1, "nodes": [node]}]}
        return replace(job(status, pods=[(1, 0, "Running")], spec=spec), name=name,
                       pods=(replace(job(pods=[(1, 0, "Running")]).pods[0], job=name, node=node),))

    a, b = on("a", "h800-0"), on("b", "h800-1")  # two free nodes: room for one of them to grow
    plan = reconcile_pool(POOL, 1, None, NODES, [a, b], NOW)
    assert [p.job for p in plan.jobs if p.status.larger_size_since] == ["ns/a"]
    backing_off = replace(job({"phase": "Restarting", "attempt": 1}), name="c")
    plan = reconcile_pool(POOL, 1, None, NODES, [a, b, backing_off], NOW)
    assert not [p.job for p in plan.jobs if p.status.larger_size_since]


def test_a_drain_cap_hold_is_recorded_and_reported_once() -> None:
    from cardpool.core.drain import Hold

    held = {"h800-3": Hold("m", "NodeNotReady", "node h800-3 is not Ready; not drained: 1 of 4 drained (cap 1)")}
    first = reconcile_pool(POOL, 1, None, NODES, [], NOW, held=held)
    assert [(h.node, h.reason, h.since) for h in first.status.held_nodes] == [("h800-3", "NodeNotReady", NOW)]
    assert [e[1] for e in first.events] == ["DrainCapReached"]
    later = reconcile_pool(POOL, 1, first.status, NODES, [], NOW + timedelta(minutes=5), held=held)
    assert later.status.held_nodes == first.status.held_nodes and not later.events  # reported once
    released = reconcile_pool(POOL, 1, later.status, NODES, [], NOW + timedelta(minutes=6))
    assert released.status.held_nodes == []
    again = reconcile_pool(POOL, 1, released.status, NODES, [], NOW + timedelta(minutes=7), held=held)
    assert [e[1] for e in again.events] == ["DrainCapReached"]  # a new hold is a new report


def test_cards_held_by_pods_cardpool_does_not_manage_are_not_free() -> None:
    foreign = {"h800-0": {"nvidia.com/gpu": 8}, "h800-1": {"nvidia.com/gpu": 3, "example.com/other": 2}}
    waiting = job()
    plan = reconcile_pool(POOL, 1, None, NODES, [waiting], NOW, foreign=foreign)
    h800 = next(g for g in plan.status.groups if g.name == "h800")
    assert (h800.other_cards, h800.free_cards, h800.allocated_cards) == (11, 21, 0)
    assert not plan.queue.admitted  # 4 whole H800 nodes are needed; only 2 are whole


def test_group_figures_count_a_running_job_other_pods_and_an_unhealthy_node() -> None:
    """h800: 4 nodes of 8; a 2 x 8 job on h800-0 and h800-1; 3 cards of h800-2 held by a foreign pod; h800-3
    NotReady (its 8 cards unhealthy, neither free nor allocated)."""
    spec = job().spec.model_copy(deep=True)
    spec.workers.size.min = spec.workers.size.max = 2
    two = {**started(phase="Running"), "placement": [{"group": "h800", "accelerator": "H800", "workers": 2,
                                                      "nodes": ["h800-0", "h800-1"]}]}
    running = job(two, pods=[(1, 0, "Running"), (1, 1, "Running")], spec=spec)
    nodes = [replace(n, conditions={"Ready": "False"}) if n.name == "h800-3" else n for n in NODES]
    status = reconcile_pool(POOL, 1, None, nodes, [running], NOW, foreign={"h800-2": {"nvidia.com/gpu": 3}}).status
    h800 = next(g for g in status.groups if g.name == "h800")
    assert (h800.nodes, h800.cards, h800.healthy_cards, h800.unhealthy_cards) == (4, 32, 24, 8)
    assert (h800.allocated_cards, h800.other_cards, h800.free_cards) == (16, 3, 5)
    assert (status.cards, status.free_cards, status.unhealthy_cards) == (32, 5, 8)


def test_nodes_that_lose_contact_together_restart_nothing_but_one_alone_is_a_fault() -> None:
    """After an API server outage kube-controller-manager marks every node Unknown for a moment: with most of
    the pool Unknown at once, the running job stays; one Unknown node among healthy ones restarts it."""
    running = job(started(phase="Running"), pods=[(1, r, "Running") for r in range(4)])
    unknown = {"Ready": "Unknown"}
    together = [replace(n, conditions=unknown) if i < 3 else n for i, n in enumerate(NODES)]
    alone = [replace(n, conditions=unknown) if i == 1 else n for i, n in enumerate(NODES)]
    held = reconcile_pool(POOL, 1, None, together, [running], NOW).jobs[0]
    assert held.status.phase == Phase.RUNNING and not held.delete
    faulted = reconcile_pool(POOL, 1, None, alone, [running], NOW).jobs[0]
    assert faulted.status.phase == Phase.RESTARTING and faulted.status.last_failure.reason == "NodeUnknown"
