"""The observed world the core decides on: frozen, built by cardpool.kube.observe (or by the simulator).

Cards are counted per node: which physical cards a worker gets inside a node is the device plugin's choice
(its preferred allocation), so the core reasons about nodes and the topology blocks above them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cardpool.api.trainingjob import PlacementMode as Mode
from cardpool.api.trainingjob import TopologyPacking as Packing

from .constraints import ANY, Constraint, Taint

__all__ = ["Allocation", "Group", "JobRequest", "Mode", "Node", "Packing", "Snapshot", "Worker"]


@dataclass(frozen=True, slots=True)
class Node:
    """One node of the pool as observed."""

    name: str
    group: str
    model: str
    allocatable: int
    """Cards the device plugin reports allocatable (drops below capacity when cards go unhealthy)."""
    capacity: int
    topology: tuple[str, ...] = ()
    """Topology blocks holding the node, nearest first (e.g. (rack, spine)); empty when the group has none."""
    healthy: bool = True
    schedulable: bool = True
    """False when cordoned, draining or on probation."""
    used_by_others: int = 0
    """Cards held by pods cardpool does not own."""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    """The node's labels, which a job's template may select on (core.constraints)."""
    taints: tuple[Taint, ...] = ()
    """Its taints that keep pods off it despite its group's tolerations: a job's template must tolerate them
    (core.constraints.blocking)."""

    @property
    def usable(self) -> bool:
        return self.healthy and self.schedulable


@dataclass(frozen=True, slots=True)
class Group:
    """A node group of the pool: one accelerator model."""

    name: str
    model: str
    cards_per_node: int
    relative_throughput: float = 1.0


@dataclass(frozen=True, slots=True)
class Worker:
    """One placed worker (one pod)."""

    rank: int
    node: str
    group: str
    model: str
    cards: int


@dataclass(frozen=True, slots=True)
class Allocation:
    """Cards a job holds now, worker by worker."""

    job: str
    workers: tuple[Worker, ...]

    @property
    def size(self) -> int:
        return len(self.workers)

    def cards_on(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.workers:
            out[w.node] = out.get(w.node, 0) + w.cards
        return out


@dataclass(frozen=True, slots=True)
class JobRequest:
    """What a job asks for; sizes are in workers."""

    key: str
    """namespace/name."""
    cards_per_worker: int
    min_workers: int
    max_workers: int
    accelerators: tuple[str, ...]
    """Models in order of preference."""
    unit: int = 1
    desired_workers: int | None = None
    mode: Mode = Mode.HOMOGENEOUS
    packing: Packing = Packing.PREFERRED
    priority: int = 0
    submitted: datetime | None = None
    constraint: Constraint = ANY
    """What the pod template requires of a node (nodeSelector, required node affinity)."""

    @property
    def target(self) -> int:
        """The size the job works toward: desired, else max."""
        return self.desired_workers if self.desired_workers is not None else self.max_workers

    def sizes(self, ceiling: int | None = None) -> range:
        """Admissible sizes from the largest down: multiples of unit in [min, min(target, ceiling)]."""
        top = min(self.target, self.max_workers if ceiling is None else ceiling)
        top -= top % self.unit
        return range(top, self.min_workers - 1, -self.unit)


@dataclass(frozen=True)
class Snapshot:
    """Everything a pool-wide decision needs, as observed at one moment."""

    nodes: tuple[Node, ...]
    groups: tuple[Group, ...]
    allocations: tuple[Allocation, ...] = ()
    pending: tuple[JobRequest, ...] = ()
    _by_name: dict[str, Node] = field(init=False, repr=False, compare=False)
    _eligible: dict[Constraint, frozenset[str]] = field(init=False, repr=False, compare=False)
    _tainted: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {n.name: n for n in self.nodes})
        object.__setattr__(self, "_eligible", {})
        object.__setattr__(self, "_tainted", any(n.taints for n in self.nodes))

    def eligible(self, constraint: Constraint) -> frozenset[str] | None:
        """The nodes a job's template lets its pods onto; None: any node. Each distinct constraint is
        evaluated once per snapshot, however many jobs share it and however often placement asks."""
        if not constraint.narrows and not self._tainted:
            return None
        out = self._eligible.get(constraint)
        if out is None:
            out = self._eligible[constraint] = constraint.eligible((n.name, n.labels, n.taints)
                                                                   for n in self.nodes)
        return out

    def node(self, name: str) -> Node:
        return self._by_name[name]

    def group(self, name: str) -> Group:
        return next(g for g in self.groups if g.name == name)

    def used(self) -> dict[str, int]:
        """Cards in use per node: cardpool's allocations plus other pods."""
        used = {n.name: n.used_by_others for n in self.nodes}
        for alloc in self.allocations:
            for node, cards in alloc.cards_on().items():
                if node in used:
                    used[node] += cards
        return used

    def free(self, release: frozenset[str] = frozenset()) -> dict[str, int]:
        """Free cards per usable node; the allocations of jobs in `release` count as free."""
        used = {n.name: n.used_by_others for n in self.nodes}
        for alloc in self.allocations:
            if alloc.job in release:
                continue
            for node, cards in alloc.cards_on().items():
                if node in used:
                    used[node] += cards
        return {n.name: max(n.allocatable - used[n.name], 0) if n.usable else 0 for n in self.nodes}
