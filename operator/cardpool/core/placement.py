"""Gang placement: all of a job's workers or none, packed into as few topology blocks as possible.

The one rule, applied at every tier of the topology (spine, rack, node) from the outside in:
- if one block can hold all the workers still to place, take the block that fits most tightly (best fit:
  the least free capacity left over, so large empty blocks stay whole for large gangs);
- otherwise take the largest blocks first (the fewest blocks) and best-fit the remainder into one more.
Ranks follow the fill order, so consecutive ranks share nodes and racks.

The same rule places a reservation for a job that cannot start yet, with each node counted as if cardpool's
jobs had left it and "busy cards" (cards still to be freed) as the first thing to minimise.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from .snapshot import Allocation, JobRequest, Mode, Node, Packing, Snapshot, Worker


@dataclass(frozen=True, slots=True)
class Placement(Allocation):
    """Where every worker of one gang goes: an allocation not yet made."""

    @property
    def cards(self) -> int:
        return sum(w.cards for w in self.workers)

    def models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(w.model for w in self.workers))

    def cards_by_model(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.workers:
            out[w.model] = out.get(w.model, 0) + w.cards
        return out


@dataclass(slots=True)
class _Slot:
    node: Node
    slots: int  # workers the node can take
    free: int  # free cards
    busy: int  # cards that would have to be freed first (reservations only)


@dataclass(slots=True)
class _Block:
    key: str
    members: list[_Slot]
    slots: int
    free: int
    busy: int


class Ledger:
    """Free cards per node during one planning pass. The snapshot stays frozen; the ledger changes as
    placements are committed and cards reserved."""

    def __init__(self, snapshot: Snapshot, free: dict[str, int]):
        self.snapshot = snapshot
        self.free = dict(free)
        self.reserved: dict[str, int] = {}
        by_model: dict[str, list[Node]] = {}
        for node in snapshot.nodes:
            by_model.setdefault(node.model, []).append(node)
        depth = max((len(n.topology) for n in snapshot.nodes), default=0)
        # outermost tier first; groups without topology sit in one unnamed block at each tier
        self._path = {n.name: ("",) * (depth - len(n.topology)) + tuple(reversed(n.topology))
                      for n in snapshot.nodes}
        self.depth = depth
        self.nodes_by_model = {m: sorted(ns, key=lambda n: (self._path[n.name], n.name))
                               for m, ns in by_model.items()}

    def path(self, node: str) -> tuple[str, ...]:
        return self._path[node]

    def available(self, node: str) -> int:
        """Free cards a placement may use: free minus cards reserved for a blocked job."""
        return max(self.free.get(node, 0) - self.reserved.get(node, 0), 0)

    def commit(self, placement: Placement) -> None:
        for node, cards in placement.cards_on().items():
            self.free[node] -= cards
            if self.free[node] < 0:
                raise ValueError(f"over-allocated node {node} committing {placement.job}")

    def reserve(self, placement: Placement) -> None:
        for node, cards in placement.cards_on().items():
            self.reserved[node] = self.reserved.get(node, 0) + cards


def _fill(slots: list[_Slot], need: int, cards: int, depth: int, ledger: Ledger) -> list[tuple[Node, int]]:
    """Choose (node, workers) pairs for `need` workers among `slots`, which share every tier above `depth`."""
    if depth >= ledger.depth:
        blocks = [_Block(s.node.name, [s], s.slots, s.free, s.busy) for s in slots]
        leaf = True
    else:
        blocks = []
        for key, members in groupby(slots, key=lambda s: ledger.path(s.node.name)[depth]):
            ms = list(members)
            blocks.append(_Block(key, ms, sum(m.slots for m in ms), sum(m.free for m in ms),
                                 sum(m.busy for m in ms)))
        leaf = False

    def tight(b: _Block, n: int) -> tuple[int, int, str]:
        return (_busy_to_host(b, n), b.free - n * cards, b.key)

    def descend(b: _Block, n: int) -> list[tuple[Node, int]]:
        return [(b.members[0].node, n)] if leaf else _fill(b.members, n, cards, depth + 1, ledger)

    fitting = [b for b in blocks if b.slots >= need]
    if fitting:
        return descend(min(fitting, key=lambda b: tight(b, need)), need)
    chosen: list[tuple[Node, int]] = []
    remaining = need
    ordered = sorted((b for b in blocks if b.slots > 0), key=lambda b: (-b.slots, b.busy, b.key))
    for i, block in enumerate(ordered):
        if block.slots >= remaining:
            candidates = [b for b in ordered[i:] if b.slots >= remaining]
            return chosen + descend(min(candidates, key=lambda b: tight(b, remaining)), remaining)
        chosen += descend(block, block.slots)
        remaining -= block.slots
    raise AssertionError("capacity was checked before filling")


def _busy_to_host(block: _Block, n: int) -> int:
    """Busy cards that would have to be freed to host `n` workers in the block (0 outside reservations):
    the nodes with the least busy cards per slot, taken until they hold `n`."""
    if block.busy == 0:
        return 0
    total, held = 0, 0
    for s in sorted(block.members, key=lambda s: (s.busy / s.slots, -s.slots)):
        total += s.busy
        held += s.slots
        if held >= n:
            break
    return total


def _slots(ledger: Ledger, model: str, cards: int, for_reservation: bool,
           allowed: frozenset[str] | None) -> list[_Slot]:
    out = []
    for node in ledger.nodes_by_model.get(model, ()):
        if not node.usable or (allowed is not None and node.name not in allowed):
            continue
        if for_reservation:
            # as if the pods on it had left (they all end some time): its cards minus other reservations;
            # what is in use now is "busy", to be waited for
            room = max(node.allocatable - ledger.reserved.get(node.name, 0), 0)
            busy = max(room - ledger.free.get(node.name, 0), 0)
        else:
            room, busy = ledger.available(node.name), 0
        if room >= cards:
            out.append(_Slot(node, room // cards, room, busy))
    return out


def _top_blocks(slots: list[_Slot], ledger: Ledger) -> dict[str, int]:
    """Worker slots per outermost topology block."""
    out: dict[str, int] = {}
    for s in slots:
        key = ledger.path(s.node.name)[0] if ledger.depth else ""
        out[key] = out.get(key, 0) + s.slots
    return out


def _capacity(slots: list[_Slot], packing: Packing, ledger: Ledger) -> int:
    """Most workers placeable under the packing rule."""
    if packing == Packing.REQUIRED:
        return max(_top_blocks(slots, ledger).values(), default=0)
    return sum(s.slots for s in slots)


def _assign(job: JobRequest, parts: list[tuple[str, list[_Slot], int]], ledger: Ledger,
            packing: Packing) -> Placement:
    workers: list[Worker] = []
    for model, slots, n in parts:
        if n == 0:
            continue
        if packing == Packing.REQUIRED and ledger.depth:
            top = _top_blocks(slots, ledger)
            fitting = [k for k, v in top.items() if v >= n]
            block = min(fitting, key=lambda k: (sum(s.busy for s in slots if ledger.path(s.node.name)[0] == k),
                                                top[k] - n, k))
            slots = [s for s in slots if ledger.path(s.node.name)[0] == block]
        depth = ledger.depth if packing == Packing.NONE else 0
        for node, count in _fill(slots, n, job.cards_per_worker, depth, ledger):
            for _ in range(count):
                workers.append(Worker(rank=len(workers), node=node.name, group=node.group, model=model,
                                      cards=job.cards_per_worker))
    return Placement(job.key, tuple(workers))


def place(job: JobRequest, ledger: Ledger, throughput: dict[str, float] | None = None,
          ceiling: int | None = None, for_reservation: bool = False) -> Placement | None:
    """The job's gang at the largest admissible size that fits now, or None.

    Homogeneous: at the largest size that fits any preferred model, the first such model in preference
    order. Mixed: the largest size that fits the preferred models together, filled from the highest relative
    throughput down (ties by preference), so the effective throughput (cards x relative throughput) is the
    most the bounds allow; each worker on one model, the ranks of a model consecutive, and each model's
    count a multiple of `unit`. Only nodes the job's pod template admits are used (core.constraints).
    `ceiling` caps the size (a running job that may not grow past its current size)."""
    cards = job.cards_per_worker
    models = [m for m in job.accelerators if m in ledger.nodes_by_model]
    if not models:
        return None
    allowed = ledger.snapshot.eligible(job.constraint)
    slots = {m: _slots(ledger, m, cards, for_reservation, allowed) for m in models}
    if job.mode == Mode.MIXED and len(models) > 1:
        rate = throughput or {}
        order = sorted(models, key=lambda m: (-rate.get(m, 1.0), models.index(m)))
        # each model's share is a whole number of units (data-parallel replicas or pipelines never span
        # families)
        capacity = {m: (c := _capacity(slots[m], job.packing, ledger)) - c % job.unit for m in order}
        total = sum(capacity.values())
        for size in job.sizes(ceiling):
            if size <= total:
                parts, left = [], size
                for m in order:
                    take = min(left, capacity[m])
                    parts.append((m, slots[m], take))
                    left -= take
                return _assign(job, parts, ledger, job.packing)
        return None
    capacity = {m: _capacity(slots[m], job.packing, ledger) for m in models}
    for size in job.sizes(ceiling):
        for m in models:
            if capacity[m] >= size:
                return _assign(job, [(m, slots[m], size)], ledger, job.packing)
    return None


def throughputs(snapshot: Snapshot) -> dict[str, float]:
    """Relative throughput per accelerator model (the highest of its groups)."""
    out: dict[str, float] = {}
    for g in snapshot.groups:
        out[g.model] = max(out.get(g.model, 0.0), g.relative_throughput)
    return out
