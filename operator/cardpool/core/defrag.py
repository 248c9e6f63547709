"""Defragmentation planning: which running jobs to move, and where, so that a gang that cannot start does.

A plan is committed only when the gang fits once the moved jobs have left and every moved job has a place
to go (at its current size, or smaller within its own bounds) on what is left. Moving is a planned restart:
the job saves on SIGTERM and resumes from that save, so a move loses little; what it can lose is counted
as lost work, cards x seconds since the job's last checkpoint.

The search is greedy, one node at a time: while the gang does not fit, release the movable jobs of the
node that is cheapest to open up for one more worker (least lost work, then fewest moves; nodes already
free cost nothing, so a node needing one small job gone comes first). Once the gang fits, only the
released jobs under its placement move; each is placed again on the rest, largest first. A job that finds
no place is pinned and the search starts over without it. Only jobs of the gang's priority or lower move.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .placement import Ledger, Placement, place, throughputs
from .snapshot import Allocation, JobRequest, Snapshot


@dataclass(frozen=True, slots=True)
class Movable:
    """A running job defragmentation may move."""

    request: JobRequest
    current: int
    """Workers it runs with; a move never makes it larger."""
    lost_work: float
    """Card-seconds since its last checkpoint (what a move could lose)."""

    @property
    def key(self) -> str:
        return self.request.key


@dataclass(frozen=True, slots=True)
class Move:
    job: str
    to: Placement
    lost_work: float


@dataclass(frozen=True, slots=True)
class DefragPlan:
    target: str
    placement: Placement
    """Where the gang starts once the moves are done."""
    moves: tuple[Move, ...]

    @property
    def lost_work(self) -> float:
        return sum(m.lost_work for m in self.moves)


def plan_defrag(snapshot: Snapshot, target: JobRequest, movable: list[Movable]) -> DefragPlan | None:
    """The cheapest plan found to start `target` at its minimum size, or None (no plan: nothing moves)."""
    gang = replace(target, desired_workers=target.min_workers)
    rates = throughputs(snapshot)
    candidates = {m.key: m for m in movable if m.request.priority <= target.priority and m.key != target.key}
    allocations = {a.job: a for a in snapshot.allocations if a.job in candidates}
    candidates = {k: m for k, m in candidates.items() if k in allocations}
    pinned: set[str] = set()
    while True:
        released: set[str] = set()
        while (placement := place(gang, Ledger(snapshot, snapshot.free(frozenset(released))), rates)) is None:
            opened = _cheapest_node_to_open(snapshot, gang, candidates, allocations, released | pinned, released)
            if opened is None:
                return None
            released |= opened
        plan = _settle(snapshot, target.key, placement, released, candidates, allocations, rates)
        if isinstance(plan, DefragPlan):
            return plan
        pinned.add(plan)  # this job has nowhere to go: plan again without moving it


def _cheapest_node_to_open(snapshot: Snapshot, gang: JobRequest, candidates: dict[str, Movable],
                           allocations: dict[str, Allocation], excluded: set[str],
                           released: set[str]) -> set[str] | None:
    """The movable jobs to release so that one more node can take a worker of the gang, cheapest first."""
    free = snapshot.free(frozenset(released))
    on_node: dict[str, list[str]] = {}
    for key, alloc in allocations.items():
        if key not in excluded:
            for node in alloc.cards_on():
                on_node.setdefault(node, []).append(key)
    best: tuple[tuple[float, int, str], set[str]] | None = None
    for node in snapshot.nodes:
        if not node.usable or node.model not in gang.accelerators or not on_node.get(node.name):
            continue
        # cards to free for one more worker slot here (a node with whole slots free can still offer another)
        need = gang.cards_per_worker - free[node.name] % gang.cards_per_worker
        if free[node.name] - free[node.name] % gang.cards_per_worker + gang.cards_per_worker > node.allocatable:
            continue  # the node cannot hold another worker even empty
        chosen, cards, lost = set(), 0, 0.0
        for key in sorted(on_node.get(node.name, ()), key=lambda k: (candidates[k].lost_work, k)):
            if cards >= need:
                break
            chosen.add(key)
            cards += allocations[key].cards_on()[node.name]
            lost += candidates[key].lost_work
        if cards < need:
            continue  # what cannot move here blocks the node
        cost = (lost, len(chosen), node.name)
        if best is None or cost < best[0]:
            best = (cost, chosen)
    return best[1] if best else None


def _settle(snapshot: Snapshot, target: str, placement: Placement, released: set[str],
            candidates: dict[str, Movable], allocations: dict[str, Allocation],
            rates: dict[str, float]) -> DefragPlan | str:
    """Move only the released jobs the gang's placement needs gone; find each a place. Returns the plan, or
    the key of a job that has nowhere to go."""
    free = snapshot.free()
    taken = placement.cards_on()
    crowded = {n for n, cards in taken.items() if cards > free.get(n, 0)}
    moving = sorted((k for k in released if crowded & allocations[k].cards_on().keys()),
                    key=lambda k: (-sum(allocations[k].cards_on().values()), k))
    ledger = Ledger(snapshot, snapshot.free(frozenset(moving)))
    ledger.commit(placement)
    moves = []
    for key in moving:
        job = candidates[key]
        to = place(job.request, ledger, rates, ceiling=job.current)
        if to is None:
            return key
        ledger.commit(to)
        moves.append(Move(key, to, job.lost_work))
    return DefragPlan(target, placement, tuple(moves))
