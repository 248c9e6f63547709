"""Defragmentation planning as a spec: a pool (nodes, running jobs, which may move and what a move would
lose), a gang that cannot start, and the expected moves (job -> where it goes) or no plan."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from cardpool.core.defrag import Movable, plan_defrag
from cardpool.core.placement import Ledger, place
from cardpool.core.snapshot import Allocation, JobRequest, Node

from .fleet import job, nodes, running, snapshot


def small(key: str, node: str, cards: int = 2, lost: float = 100.0, workers: tuple[int, int] = (1, 1),
          priority: int = 0) -> tuple[Allocation, Movable]:
    """A one-worker job of `cards` cards on `node` that may move."""
    request = job(key, workers, cards=cards, priority=priority)
    return running(key, (node, cards)), Movable(request, 1, lost)


@dataclass(frozen=True)
class Scenario:
    name: str
    nodes: list[Node]
    jobs: list[tuple[Allocation, Movable | None]]
    """Running jobs; None: may not move (opted out, not elastic, no checkpoint)."""
    target: JobRequest
    moves: dict[str, dict[str, int]] | None
    """job -> {node: cards} after its move; None: no plan."""
    gang_on: list[str] = field(default_factory=list)


GANG8 = job("gang", 1, cards=8)  # one full 8-card node
SCENARIOS = [
    Scenario("four nodes each with 2 busy cards: one small job moves and a node opens up",
             nodes("h800", 4), [small(f"s{i}", f"h800-{i}") for i in range(4)], GANG8,
             moves={"s0": {"h800-1": 2}}, gang_on=["h800-0"]),
    Scenario("the move that loses least work is chosen among equal plans",
             nodes("h800", 4), [small("s0", "h800-0", lost=900), small("s1", "h800-1", lost=5),
                                small("s2", "h800-2", lost=900), small("s3", "h800-3", lost=900)], GANG8,
             moves={"s1": {"h800-0": 2}}, gang_on=["h800-1"]),
    Scenario("a node needing one move beats a node needing two",
             nodes("h800", 3), [small("a", "h800-0"), small("b", "h800-0"), small("c", "h800-1", cards=4),
                                small("d", "h800-2", cards=6, lost=0.0)], GANG8,
             moves={"c": {"h800-0": 4}}, gang_on=["h800-1"]),
    Scenario("opted-out jobs stay: the planner opens the node of a movable one",
             nodes("h800", 4), [(running("pinned", ("h800-0", 2)), None), small("s1", "h800-1", lost=500),
                                (running("p2", ("h800-2", 2)), None), (running("p3", ("h800-3", 2)), None)],
             GANG8, moves={"s1": {"h800-0": 2}}, gang_on=["h800-1"]),
    Scenario("no plan when no moved job would have a place to go",
             nodes("h800", 4), [small(f"s{i}", f"h800-{i}", cards=6) for i in range(4)], GANG8, moves=None),
    Scenario("no plan when only opted-out jobs block",
             nodes("h800", 2), [(running("x", ("h800-0", 2)), None), (running("y", ("h800-1", 2)), None)],
             GANG8, moves=None),
    Scenario("an elastic job shrinks within its bounds to make room",
             nodes("h800", 2), [(running("el", ("h800-0", 4), ("h800-0", 4), ("h800-1", 4)),
                                 Movable(job("el", (1, 3), cards=4), 3, 50.0))], GANG8,
             moves={"el": {"h800-1": 8}}, gang_on=["h800-0"]),
    Scenario("jobs of higher priority than the gang never move",
             nodes("h800", 2), [small("hi", "h800-0", priority=5), small("hi2", "h800-1", priority=5)], GANG8,
             moves=None),
    Scenario("leftovers on nodes that already offer a slot are gathered: 3 x 4 cards on two 6-free nodes",
             nodes("h800", 3), [small("a", "h800-0", lost=10), small("b", "h800-1", lost=20),
                                (running("full", ("h800-2", 8)), None)], job("gang", 3, cards=4),
             moves={"a": {"h800-1": 2}}, gang_on=["h800-0", "h800-1"]),
    Scenario("a two-node gang opens two nodes",
             nodes("h800", 4), [small(f"s{i}", f"h800-{i}", lost=10 * i) for i in range(4)], job("gang", 2, cards=8),
             moves={"s0": {"h800-2": 2}, "s1": {"h800-2": 2}}, gang_on=["h800-0", "h800-1"]),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_defrag_scenarios(scenario: Scenario) -> None:
    snap = snapshot(scenario.nodes, [a for a, _ in scenario.jobs], [scenario.target])
    assert place(scenario.target, Ledger(snap, snap.free())) is None, "the gang must be blocked to begin with"
    plan = plan_defrag(snap, scenario.target, [m for _, m in scenario.jobs if m is not None])
    if scenario.moves is None:
        assert plan is None
        return
    assert plan is not None
    assert {m.job: m.to.cards_on() for m in plan.moves} == scenario.moves
    assert sorted(plan.placement.cards_on()) == scenario.gang_on
    # the plan is sound: after the moves, the gang and every moved job fit together
    moved = frozenset(plan_job for plan_job in scenario.moves)
    ledger = Ledger(snap, snap.free(moved))
    ledger.commit(plan.placement)
    for move in plan.moves:
        ledger.commit(move.to)
