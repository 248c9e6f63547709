"""Drains as a table: the pool's nodes (health, drain record) + now -> actions, held nodes, events."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from cardpool.api.cardpool import CardPoolSpec
from cardpool.core.drain import PodOnNode, drain_cap, eviction_decisions, plan_drains
from cardpool.core.observed import DrainRecord, ObservedNode

from ..examples import EXAMPLES

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
POOL = CardPoolSpec.model_validate(yaml.safe_load((EXAMPLES / "pool-mixed-vendor.yaml").read_text())["spec"])
# the example pool: maxDrainedPercent 25, probationSeconds 600
H800 = {"nvidia.com/gpu.product": "NVIDIA-H800"}
READY = {"Ready": "True"}


def node(i: int, conditions: dict | None = None, cards: int = 8, drain: DrainRecord | None = None,
         unschedulable: bool = False, labels: dict | None = None) -> ObservedNode:
    return ObservedNode(f"h800-{i}", labels or H800, {"nvidia.com/gpu": 8}, {"nvidia.com/gpu": cards},
                        conditions or READY, (), unschedulable, drain)


def drained(reason: str = "NodeNotReady", healthy_for: float | None = None, cordoned: bool = True) -> DrainRecord:
    since = None if healthy_for is None else NOW - timedelta(seconds=healthy_for)
    return DrainRecord(reason, NOW - timedelta(hours=1), cordoned, since)


NOT_READY = {"Ready": "False"}
UNKNOWN = {"Ready": "Unknown"}
SCENARIOS = [
    # (name, nodes of the h800 group, expected actions (node, kind), held nodes)
    ("healthy nodes are left alone", [node(i) for i in range(8)], [], []),
    ("a NotReady node is drained", [node(0, NOT_READY)] + [node(i) for i in range(1, 8)], [("h800-0", "Drain")], []),
    ("more than half of the pool losing contact at once is a disruption, not faults: nothing is drained",
     [node(i, UNKNOWN) for i in range(5)] + [node(i) for i in range(5, 8)], [], []),
    ("half of it or less losing contact are faults (within the drain cap)",
     [node(0, UNKNOWN), node(1, UNKNOWN)] + [node(i) for i in range(2, 8)], [("h800-0", "Drain"), ("h800-1", "Drain")],
     []),
    ("a node Ready again whose unreachable taint is not lifted yet is no fault",
     [ObservedNode("h800-0", H800, {"nvidia.com/gpu": 8}, {"nvidia.com/gpu": 8}, READY,
                   (("node.kubernetes.io/unreachable", "NoExecute", ""),))] + [node(i) for i in range(1, 8)], [], []),
    ("a node whose kubelet reports NotReady during a disruption is still a fault",
     [node(i, UNKNOWN) for i in range(5)] + [node(5, NOT_READY), node(6), node(7)], [("h800-5", "Drain")], []),
    ("a card fault drains the node", [node(3, cards=7)] + [node(i) for i in range(3)], [("h800-3", "Drain")], []),
    ("a node whose device plugin has not reported yet is not a fault",
     [ObservedNode("h800-0", H800, {}, {}, READY)] + [node(i) for i in range(1, 4)], [], []),
    ("a configured condition drains", [node(1, {"Ready": "True", "GPUUnhealthy": "True"}), node(2)],
     [("h800-1", "Drain")], []),
    ("a storm of 4 of 8 drains the cap (2), holds the rest",
     [node(i, NOT_READY) for i in range(4)] + [node(i) for i in range(4, 8)],
     [("h800-0", "Drain"), ("h800-1", "Drain")], ["h800-2", "h800-3"]),
    ("nodes already drained count against the cap",
     [node(0, NOT_READY, drain=drained()), node(1, NOT_READY, drain=drained()), node(2, NOT_READY)]
     + [node(i) for i in range(3, 8)], [], ["h800-2"]),
    ("a recovered node starts probation", [node(0, drain=drained())], [("h800-0", "Record")], []),
    ("a node on probation stays out until it has passed", [node(0, drain=drained(healthy_for=599))], [], []),
    ("a node that passed probation is returned", [node(0, drain=drained(healthy_for=600))], [("h800-0", "Return")],
     []),
    ("a fault during probation restarts it", [node(0, NOT_READY, drain=drained(healthy_for=300))],
     [("h800-0", "Record")], []),
    ("a requested drain is carried out even beyond the cap",
     [node(0, NOT_READY, drain=drained()), node(1, NOT_READY, drain=drained()),
      replace(node(2), drain_requested="bios update")] + [node(i) for i in range(3, 8)], [("h800-2", "Drain")], []),
    ("a node whose drain request is removed is returned at once, without probation",
     [node(0, drain=drained("DrainRequested"))], [("h800-0", "Return")], []),
    ("a node still requested stays drained",
     [replace(node(0, drain=drained("DrainRequested")), drain_requested="x")], [], []),
    ("a drained node no pool selects any more is returned",
     [node(0, labels={"other": "x"}, drain=drained())], [("h800-0", "Return")], []),
]


@pytest.mark.parametrize(("nodes", "actions", "held"), [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS])
def test_drain_scenarios(nodes: list[ObservedNode], actions: list[tuple[str, str]], held: list[str]) -> None:
    plan = plan_drains({"mixed": POOL}, nodes, NOW)
    assert [(a.node, a.kind) for a in plan.actions] == actions
    assert sorted(plan.held) == held


def test_a_drain_records_why_and_whether_cardpool_cordoned() -> None:
    healthy = [node(i) for i in range(2, 8)]
    plan = plan_drains({"mixed": POOL}, [node(0, NOT_READY), node(1, cards=6, unschedulable=True), *healthy], NOW)
    records = {a.node: a.record for a in plan.actions}
    assert records["h800-0"] == DrainRecord("NodeNotReady", NOW, cordoned=True)
    # an admin cordoned it first: returning it later must leave it cordoned
    assert records["h800-1"] == DrainRecord("CardFault", NOW, cordoned=False)
    assert {e.reason for e in plan.events} == {"NodeDrained"}


def test_probation_records_when_the_node_became_healthy() -> None:
    plan = plan_drains({"mixed": POOL}, [node(0, drain=drained())], NOW)
    assert plan.actions[0].record.healthy_since == NOW


def test_the_first_pool_by_name_owns_a_node_selected_by_two() -> None:
    strict = POOL.model_copy(deep=True)
    strict.health.max_drained_percent = 100
    plan = plan_drains({"b-pool": POOL, "a-pool": strict}, [node(i, NOT_READY) for i in range(4)], NOW)
    assert len([a for a in plan.actions if a.kind == "Drain"]) == 4  # a-pool's cap (100%) applies


@pytest.mark.parametrize(("percent", "nodes", "cap"), [(25, 8, 2), (20, 4, 1), (1, 10, 1), (100, 6, 6), (30, 10, 3)])
def test_the_cap_rounds_down_but_allows_one(percent: int, nodes: int, cap: int) -> None:
    policy = POOL.health.model_copy(update={"max_drained_percent": percent})
    assert drain_cap(policy, nodes) == cap


def test_the_eviction_filter_skips_what_a_drain_must_not_evict() -> None:
    pods = [PodOnNode("web", "a"), PodOnNode("ds", "a", ("DaemonSet",)), PodOnNode("static", "a", mirror=True),
            PodOnNode("worker", "a", cardpool=True), PodOnNode("done", "a", phase="Succeeded"),
            PodOnNode("going", "a", deleting=True), PodOnNode("rs", "b", ("ReplicaSet",))]
    decisions = {d.pod.name: (d.evict, d.reason) for d in eviction_decisions(pods)}
    assert [n for n, (evict, _) in decisions.items() if evict] == ["web", "rs"]
    assert decisions["ds"][1].startswith("a DaemonSet pod")
    assert decisions["worker"][1].startswith("a cardpool worker")


def test_every_fault_reason_is_a_documented_one() -> None:
    from cardpool.core.health import FAULTS, LOST

    reasons = {a.record.reason for _, nodes, *_ in SCENARIOS
               for a in plan_drains({"mixed": POOL}, nodes, NOW).actions if a.record is not None}
    assert reasons and reasons <= set(FAULTS) and set(LOST) <= set(FAULTS)


def test_the_plan_says_when_a_probation_ends() -> None:
    from datetime import timedelta

    on_probation = node(0, drain=replace(drained(), healthy_since=NOW - timedelta(seconds=1)))
    plan = plan_drains({"mixed": POOL}, [on_probation], NOW)
    assert not plan.actions
    assert plan.recheck_at == NOW - timedelta(seconds=1) + timedelta(seconds=POOL.health.probation_seconds)
