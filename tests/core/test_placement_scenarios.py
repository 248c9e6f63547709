"""Placement as a spec: each row is a pool (nodes, running jobs), a queue (pending jobs), and the outcome.

Fleet shorthand: nodes("h800", 8) is h800-0..7, two nodes a rack (h800-r0: nodes 0-1, r1: 2-3, ...), two
racks a spine (h800-s0: racks 0-1, ...). Outcomes: placed = {job: {node: workers}}, waiting = {job: reason}.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from cardpool.core.constraints import Constraint, Taint, from_template
from cardpool.core.queue import schedule
from cardpool.core.sizing import resize
from cardpool.core.snapshot import Allocation, JobRequest, Mode, Node, Packing

from .fleet import job, nodes, running, snapshot

MIXED = Mode.MIXED


def wants(request: JobRequest, **pod_spec: object) -> JobRequest:
    """The job with a pod template asking for `pod_spec` (nodeSelector=..., affinity=...)."""
    return replace(request, constraint=from_template({"spec": pod_spec}))


def labelled(node_list: list[Node], **labels: dict[str, str]) -> list[Node]:
    """The nodes with labels: labelled(nodes("h800", 4), h800_2={"zone": "b"})."""
    return [replace(n, labels=labels.get(n.name.replace("-", "_"), {})) for n in node_list]


def tainted(node_list: list[Node], *names: str) -> list[Node]:
    """The named nodes carry dedicated=research:NoSchedule, which their group does not tolerate."""
    return [replace(n, taints=(RESEARCH,)) if n.name in names else n for n in node_list]


def required(*exprs: dict) -> dict:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": list(exprs)}]}}}


ZONE_B = {"nodeSelector": {"zone": "b"}}
RESEARCH = Taint("dedicated", "research", "NoSchedule")
TOLERATES = {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "research", "effect": "NoSchedule"}]}
FAMILIES = labelled(nodes("h800", 2) + nodes("a100", 2), h800_0={"family": "hopper"}, h800_1={"family": "hopper"},
                    a100_0={"family": "ampere"}, a100_1={"family": "ampere"})


@dataclass(frozen=True)
class Scenario:
    name: str
    nodes: list[Node]
    pending: list[JobRequest]
    placed: dict[str, dict[str, int]]
    running: list[Allocation] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)


def one_each(*names: str) -> dict[str, int]:
    return dict.fromkeys(names, 1)


SCENARIOS = [
    # ---- gangs and preferences
    Scenario("a gang gets all its workers or none",
             nodes("h800", 3), [job("a", 4)], placed={}, waiting={"a": "Unplaceable"}),
    Scenario("the first preferred model that fits wins",
             nodes("h800", 2) + nodes("a100", 2), [job("a", 2, models=("H800", "A100"))],
             placed={"a": one_each("h800-0", "h800-1")}),
    Scenario("a job falls back to its next preference when the first is full",
             nodes("h800", 2) + nodes("a100", 2), [job("a", 2, models=("H800", "A100"))],
             running=[running("x", ("h800-0", 8), ("h800-1", 8))],
             placed={"a": one_each("a100-0", "a100-1")}),
    Scenario("a homogeneous job never mixes models, even when the sum would fit",
             nodes("h800", 2) + nodes("a100", 2), [job("a", 4, models=("H800", "A100"))],
             placed={}, waiting={"a": "Unplaceable"}),
    # ---- elastic sizes
    Scenario("an elastic job starts at the largest size that fits",
             nodes("h800", 4), [job("a", (2, 6))], running=[running("x", ("h800-0", 8))],
             placed={"a": one_each("h800-1", "h800-2", "h800-3")}),
    Scenario("sizes are multiples of unit",
             nodes("h800", 6), [job("a", (2, 6), unit=2)], running=[running("x", ("h800-0", 8))],
             placed={"a": one_each("h800-1", "h800-2", "h800-3", "h800-4")}),
    Scenario("the desired size caps the start size",
             nodes("h800", 4), [job("a", (1, 4), desired=2)], placed={"a": one_each("h800-0", "h800-1")}),
    # ---- topology and fragmentation
    Scenario("best fit: a gang takes the rack it fills exactly and leaves the empty rack whole",
             nodes("h800", 8, per_rack=4), [job("a", 3)], running=[running("x", ("h800-0", 8))],
             placed={"a": one_each("h800-1", "h800-2", "h800-3")}),
    Scenario("a gang that fits one spine stays in it",
             nodes("h800", 8), [job("a", 4)], running=[running("x", ("h800-0", 8), ("h800-2", 8))],
             placed={"a": one_each("h800-4", "h800-5", "h800-6", "h800-7")}),
    Scenario("a gang too big for one rack spans the fewest racks",
             nodes("h800", 8), [job("a", 3)], running=[running("x", ("h800-0", 8), ("h800-2", 8))],
             placed={"a": one_each("h800-4", "h800-5", "h800-6")}),
    Scenario("Required packing waits rather than cross spines",
             nodes("h800", 8, per_rack=2, racks_per_spine=2), [job("a", 6, packing=Packing.REQUIRED)],
             placed={}, waiting={"a": "Unplaceable"}),
    Scenario("Preferred packing crosses spines when it must, filling the first one",
             nodes("h800", 8), [job("a", 6)],
             placed={"a": one_each(*(f"h800-{i}" for i in range(6)))}),
    Scenario("partial-node workers go to the rack with the tightest fit",
             nodes("h800", 4), [job("a", 1, cards=4)],
             running=[running("x", ("h800-1", 8)), running("y", ("h800-2", 4))],
             placed={"a": {"h800-0": 1}}),
    Scenario("without packing, partial-node workers go to the tightest node",
             nodes("h800", 4), [job("a", 1, cards=4, packing=Packing.NONE)],
             running=[running("x", ("h800-1", 8)), running("y", ("h800-2", 4))],
             placed={"a": {"h800-2": 1}}),
    Scenario("two workers share a node when cards allow",
             nodes("h800", 2), [job("a", 2, cards=4)], placed={"a": {"h800-0": 2}}),
    # ---- health and capacity
    Scenario("unhealthy and cordoned nodes are never used",
             nodes("h800", 4, n0={"healthy": False}, n1={"schedulable": False}),
             [job("a", 2), job("b", 1, minute=1)],
             placed={"a": one_each("h800-2", "h800-3")}, waiting={"b": "Reserved"}),
    Scenario("allocatable below capacity (unhealthy cards) is respected",
             nodes("h800", 2, n0={"allocatable": 6}), [job("a", 2), job("b", 2, cards=6, minute=1)],
             placed={"b": one_each("h800-0", "h800-1")}, waiting={"a": "Unplaceable"}),
    Scenario("cards held by other pods are not free, but a job can wait for them",
             nodes("h800", 2, n1={"used_by_others": 4}), [job("a", 2)],
             placed={}, waiting={"a": "Reserved"}),
    # ---- queue order, reservation and backfill
    Scenario("higher priority goes first even when submitted later",
             nodes("h800", 2), [job("a", 2, minute=0), job("b", 2, priority=10, minute=5)],
             placed={"b": one_each("h800-0", "h800-1")}, waiting={"a": "Reserved"}),
    Scenario("equal priority goes in submission order",
             nodes("h800", 2), [job("b", 2, minute=5), job("a", 2, minute=0)],
             placed={"a": one_each("h800-0", "h800-1")}, waiting={"b": "Reserved"}),
    Scenario("a blocked big gang reserves the block it waits for; small jobs cannot take it",
             nodes("h800", 4), [job("big", 3), job("s1", 1, minute=1), job("s2", 1, minute=2)],
             running=[running("x", ("h800-0", 8)), running("y", ("h800-2", 8))],
             placed={}, waiting={"big": "Reserved", "s1": "BehindReservation", "s2": "BehindReservation"}),
    Scenario("small jobs backfill onto cards outside the reservation",
             nodes("h800", 6), [job("big", 4), job("s1", 1, minute=1), job("s2", 1, minute=2)],
             running=[running("x", ("h800-0", 8)), running("y", ("h800-2", 8)), running("z", ("h800-4", 8))],
             placed={"s1": {"h800-5": 1}}, waiting={"big": "Reserved", "s2": "BehindReservation"}),
    Scenario("a job larger than the pool does not block the queue",
             nodes("h800", 2), [job("big", 4), job("small", 1, minute=1)],
             placed={"small": {"h800-0": 1}}, waiting={"big": "Unplaceable"}),
    Scenario("a job on another model is not held back by a reservation",
             nodes("h800", 2) + nodes("ascend", 2),
             [job("big", 2), job("npu", 2, models=("Ascend910B",), minute=1)],
             running=[running("x", ("h800-0", 8))],
             placed={"npu": one_each("ascend-0", "ascend-1")}, waiting={"big": "Reserved"}),
    # ---- mixed families
    Scenario("Mixed fills the fastest cards first",
             nodes("h800", 2) + nodes("ascend", 4), [job("a", (4, 6), models=("Ascend910B", "H800"), mode=MIXED)],
             placed={"a": one_each("h800-0", "h800-1", "ascend-0", "ascend-1", "ascend-2", "ascend-3")}),
    Scenario("Mixed stays on one family when it is enough",
             nodes("h800", 2) + nodes("ascend", 4), [job("a", 2, models=("Ascend910B", "H800"), mode=MIXED)],
             placed={"a": one_each("h800-0", "h800-1")}),
    Scenario("Mixed keeps whole units (replicas) on one family: 3 H800 nodes hold one unit of 2",
             nodes("h800", 3) + nodes("ascend", 4), [job("a", (4, 6), unit=2, models=("H800", "Ascend910B"),
                                                         mode=MIXED)],
             placed={"a": one_each("h800-0", "h800-1", "ascend-0", "ascend-1", "ascend-2", "ascend-3")}),
    Scenario("Mixed maximises throughput within the bounds: the size's remainder goes to the next family",
             nodes("h800", 2) + nodes("ascend", 2) + nodes("mlu", 4),
             [job("a", (3, 5), models=("MLU590", "Ascend910B", "H800"), mode=MIXED)],
             placed={"a": one_each("h800-0", "h800-1", "ascend-0", "ascend-1", "mlu-0")}),
    # ---- the pod template's scheduling constraints (nodeSelector, required node affinity)
    Scenario("a template's nodeSelector narrows the nodes: the gang skips free nodes it does not admit",
             labelled(nodes("h800", 4), h800_2={"zone": "b"}, h800_3={"zone": "b"}), [wants(job("a", 2), **ZONE_B)],
             placed={"a": one_each("h800-2", "h800-3")}),
    Scenario("a required affinity that only the second preference satisfies takes it",
             FAMILIES, [wants(job("a", 2, models=("H800", "A100")), affinity=required(
                 {"key": "family", "operator": "In", "values": ["ampere"]}))],
             placed={"a": one_each("a100-0", "a100-1")}),
    Scenario("matchFields metadata.name NotIn keeps the gang off the named node",
             nodes("h800", 2), [wants(job("a", 1), affinity={"nodeAffinity": {
                 "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [
                     {"key": "metadata.name", "operator": "NotIn", "values": ["h800-0"]}]}]}}})],
             placed={"a": {"h800-1": 1}}),
    Scenario("a nodeSelector no node of the job's models satisfies: NoNodeMatchesTemplate",
             FAMILIES, [wants(job("a", 1, models=("H800", "A100")), nodeSelector={"zone": "mars"})],
             placed={}, waiting={"a": "NoNodeMatchesTemplate"}),
    Scenario("a node of another model that matches does not count",
             labelled(nodes("h800", 2) + nodes("ascend", 2), ascend_0={"zone": "b"}),
             [wants(job("a", 1), **ZONE_B)], placed={}, waiting={"a": "NoNodeMatchesTemplate"}),
    Scenario("some nodes match, too few for the minimum: Unplaceable",
             labelled(nodes("h800", 4), h800_3={"zone": "b"}), [wants(job("a", 2), **ZONE_B)],
             placed={}, waiting={"a": "Unplaceable"}),
    Scenario("the matching nodes are busy: the job reserves them and a job without constraint backfills the rest",
             labelled(nodes("h800", 4), h800_2={"zone": "b"}, h800_3={"zone": "b"}),
             [wants(job("a", 2), **ZONE_B), job("s", 1, minute=1)],
             running=[running("x", ("h800-2", 8)), running("y", ("h800-3", 8))],
             placed={"s": {"h800-0": 1}}, waiting={"a": "Reserved"}),
    Scenario("a job no node admits holds no reservation: the next blocked job gets it",
             nodes("h800", 2), [wants(job("a", 1), **ZONE_B), job("b", 1, minute=1)],
             running=[running("x", ("h800-0", 8), ("h800-1", 8))],
             placed={}, waiting={"a": "NoNodeMatchesTemplate", "b": "Reserved"}),
    Scenario("Mixed uses only the admitted nodes of each family",
             labelled(nodes("h800", 2) + nodes("ascend", 4), h800_0={"zone": "b"}, ascend_1={"zone": "b"},
                      ascend_2={"zone": "b"}),
             [wants(job("a", (2, 6), models=("Ascend910B", "H800"), mode=MIXED), **ZONE_B)],
             placed={"a": one_each("h800-0", "ascend-1", "ascend-2")}),
    Scenario("Required packing counts only admitted nodes in a block",
             labelled(nodes("h800", 8), h800_0={"zone": "b"}, h800_1={"zone": "b"}, h800_6={"zone": "b"},
                      h800_7={"zone": "b"}),
             [wants(job("a", 3, packing=Packing.REQUIRED), **ZONE_B)], placed={}, waiting={"a": "Unplaceable"}),
    Scenario("tainted nodes are skipped by a template that does not tolerate the taint",
             tainted(nodes("h800", 4), "h800-0", "h800-1"), [job("a", 2)], placed={"a": one_each("h800-2", "h800-3")}),
    Scenario("a template that tolerates the taint may use the tainted nodes",
             tainted(nodes("h800", 2), "h800-0", "h800-1"), [wants(job("a", 2), **TOLERATES)],
             placed={"a": one_each("h800-0", "h800-1")}),
    Scenario("every node tainted and no toleration: NoNodeMatchesTemplate",
             tainted(nodes("h800", 2), "h800-0", "h800-1"), [job("a", 1)], placed={},
             waiting={"a": "NoNodeMatchesTemplate"}),
    Scenario("a toleration with another value does not tolerate it",
             tainted(nodes("h800", 2), "h800-0", "h800-1"), [wants(job("a", 1), tolerations=[
                 {"key": "dedicated", "operator": "Equal", "value": "infra"}])], placed={},
             waiting={"a": "NoNodeMatchesTemplate"}),
    Scenario("a job without the toleration takes the untainted nodes, the one with it the tainted ones",
             tainted(nodes("h800", 4), "h800-2", "h800-3"), [job("b", 2), wants(job("a", 2, minute=1), **TOLERATES)],
             placed={"a": one_each("h800-2", "h800-3"), "b": one_each("h800-0", "h800-1")}),
]


@pytest.mark.parametrize("case", SCENARIOS, ids=lambda c: c.name)
def test_scenario(case: Scenario) -> None:
    plan = schedule(snapshot(case.nodes, case.running, case.pending))
    placed = {p.job: p.cards_on() for p in plan.admitted}
    got = {job_: {node: cards // next(j.cards_per_worker for j in case.pending if j.key == job_)
                  for node, cards in on.items()} for job_, on in placed.items()}
    assert got == case.placed
    assert {w.job: w.reason for w in plan.waiting} == case.waiting


def test_mixed_ranks_are_consecutive_per_family_fastest_first() -> None:
    plan = schedule(snapshot(nodes("h800", 2) + nodes("ascend", 4),
                             pending=[job("a", (4, 6), models=("Ascend910B", "H800"), mode=MIXED)]))
    workers = plan.admitted[0].workers
    assert [w.model for w in workers] == ["H800"] * 2 + ["Ascend910B"] * 4
    assert [w.rank for w in workers] == list(range(6))


def test_ranks_follow_topology_so_neighbours_share_racks() -> None:
    plan = schedule(snapshot(nodes("h800", 8), pending=[job("a", 8, cards=4)]))
    racks = [w.node for w in plan.admitted[0].workers]
    assert racks == ["h800-0", "h800-0", "h800-1", "h800-1"] + [f"h800-{i}" for i in (2, 2, 3, 3)]


def test_reservation_names_the_block_with_fewest_cards_still_busy() -> None:
    busy = [running(f"x{i}", (f"h800-{i}", 8)) for i in (0, 2, 3, 4, 5)]
    plan = schedule(snapshot(nodes("h800", 6), busy, [job("big", 2)]))
    # only h800-1 is free. Spine s1 (nodes 4-5) needs 16 busy cards freed; spine s0 only 8, through rack r0
    # (h800-0 busy, h800-1 free), while rack r1 would need 16.
    assert plan.reservation is not None
    assert sorted(plan.reservation.cards_on()) == ["h800-0", "h800-1"]


@dataclass(frozen=True)
class ResizeCase:
    name: str
    nodes: list[Node]
    job: JobRequest
    current: int
    allocations: list[Allocation]
    size: int | None
    grow: bool = False
    shrink: bool = False


RUNNING_A = running("a", ("h800-0", 8), ("h800-1", 8), ("h800-2", 8), ("h800-3", 8))
RESIZES = [
    ResizeCase("after losing a node, restart at the largest size that still fits",
               nodes("h800", 4, n3={"healthy": False}), job("a", (2, 4)), 4, [RUNNING_A], size=3, shrink=True),
    ResizeCase("below its minimum, the job cannot restart now",
               nodes("h800", 4, n3={"healthy": False}), job("a", (4, 4)), 4, [RUNNING_A], size=None),
    ResizeCase("when capacity returns, the job can grow toward its desired size",
               nodes("h800", 4), job("a", (2, 4)), 2, [running("a", ("h800-0", 8), ("h800-1", 8))],
               size=4, grow=True),
    ResizeCase("growth stops at the desired size",
               nodes("h800", 4), job("a", (2, 4), desired=3), 2, [running("a", ("h800-0", 8), ("h800-1", 8))],
               size=3, grow=True),
    ResizeCase("nothing changes when nothing freed up",
               nodes("h800", 4), job("a", (2, 4)), 2,
               [running("a", ("h800-0", 8), ("h800-1", 8)), running("x", ("h800-2", 8), ("h800-3", 8))], size=2),
    ResizeCase("growth only onto nodes the template admits",
               labelled(nodes("h800", 4), h800_0={"zone": "b"}, h800_1={"zone": "b"}, h800_2={"zone": "b"}),
               wants(job("a", (2, 4)), **ZONE_B), 2, [running("a", ("h800-0", 8), ("h800-1", 8))], size=3,
               grow=True),
]


@pytest.mark.parametrize("case", RESIZES, ids=lambda c: c.name)
def test_resize(case: ResizeCase) -> None:
    result = resize(snapshot(case.nodes, case.allocations), case.job, case.current)
    assert result.size == case.size
    assert (result.can_grow, result.must_shrink) == (case.grow, case.shrink)


def test_fragmentation_counts_free_cards_off_whole_free_nodes() -> None:
    snap = snapshot(nodes("h800", 4), [running("x", ("h800-0", 4)), running("y", ("h800-1", 8))])
    frag = schedule(snap).fragmentation["h800"]
    assert (frag.free_cards, frag.whole_free_nodes, frag.largest_free_block, frag.largest_gang_cards) == (
        20, 2, 8, 16)
    assert frag.percent == 20


def test_no_node_matches_names_what_the_template_asks_and_the_pools_nodes_of_its_models() -> None:
    plan = schedule(snapshot(FAMILIES, pending=[
        wants(job("a", 1, models=("H800", "A100", "MLU590")), nodeSelector={"zone": "mars"})]))
    assert plan.waiting[0].message == ("spec.workers.template.spec.nodeSelector {zone: mars} matches none of the "
                                       "pool's 4 H800/A100 nodes")


def test_too_few_matching_nodes_names_the_constraint() -> None:
    plan = schedule(snapshot(labelled(nodes("h800", 4), h800_3={"zone": "b"}), pending=[wants(job("a", 2),
                                                                                                **ZONE_B)]))
    assert plan.waiting[0].message == ("needs 2 x 8 cards of H800: more than the 1 of the pool's 4 H800 nodes that "
                                       "spec.workers.template.spec.nodeSelector {zone: b} admits can hold even "
                                       "when empty")


def test_a_constraint_is_evaluated_once_per_node_per_pass_however_many_jobs_share_it(monkeypatch) -> None:
    calls = []
    admits = Constraint.admits
    monkeypatch.setattr(Constraint, "admits", lambda self, name, labels, taints=(): calls.append(name) or admits(
        self, name, labels, taints))
    pool = labelled(nodes("h800", 20), **{f"h800_{i}": {"zone": "b"} for i in range(0, 20, 2)})
    pending = [wants(job(f"j{i}", 1, cards=1, minute=i), **ZONE_B) for i in range(50)]
    pending += [wants(job(f"k{i}", 1, minute=i), nodeSelector={"zone": "c"}) for i in range(50)]
    plan = schedule(snapshot(pool, pending=pending))
    assert len(plan.admitted) == 50 and {w.reason for w in plan.waiting} == {"NoNodeMatchesTemplate"}
    assert len(calls) == 2 * 20  # two distinct constraints, twenty nodes
