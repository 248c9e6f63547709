"""Draining faulty nodes, bounded so that a fault storm cannot empty a pool, and their return after probation.

One pass over every node of every pool decides (nodes can match groups of several pools: the first pool by
name owns a node's drain, so each node has one writer):
- a faulty node without a drain record is drained (cordoned, tainted cardpool.io/drain:NoSchedule, its
  other pods evicted) while its group has fewer than the cap drained; the rest wait ("held"), still faulty
  for placement and for the jobs on them;
- a drained node that is healthy again starts its probation; a fault during probation restarts it;
- after probationSeconds of health the node is returned: taint and drain record removed, uncordoned if
  cardpool cordoned it;
- a node a person asked to drain (annotation cardpool.io/drain-request, `cardpool drain`) is drained even
  beyond the cap, and returned as soon as the request is removed (no probation: nothing was wrong with it).
The training pods on a faulty node are not touched here: their jobs restart as new attempts (lifecycle).
Which other pods a drain evicts is a filter chain, as in kubectl drain: a decision and a reason per pod.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cardpool.api.cardpool import CardPoolSpec, Disruption, HealthPolicy, NodeGroup

from . import disruption
from .clock import Deadlines
from .health import NODE_UNKNOWN, NodeHealth, classify
from .observed import DrainRecord, ObservedNode

REQUESTED = "DrainRequested"


def member_group(spec: CardPoolSpec, labels: dict[str, str]) -> NodeGroup | None:
    """The first node group whose selector the labels match."""
    return next((g for g in spec.node_groups if all(labels.get(k) == v for k, v in g.node_selector.items())), None)


@dataclass(frozen=True, slots=True)
class Member:
    """A node of a pool: its group and its health under the pool's policy, classified once per pass and read by
    both the node pass (drains) and the pool pass (placement)."""

    node: ObservedNode
    group: NodeGroup
    health: NodeHealth


def members(spec: CardPoolSpec, nodes: list[ObservedNode], now: datetime,
            previous: Disruption | None = None) -> list[Member]:
    """The pool's nodes, by name, classified once per pass (see `classify_pool`)."""
    return classify_pool(spec, nodes, now, previous)[0]


def classify_pool(spec: CardPoolSpec, nodes: list[ObservedNode], now: datetime,
                  previous: Disruption | None = None) -> tuple[list[Member], Disruption | None]:
    """The pool's nodes, by name, and the control-plane or network disruption in progress (see
    core.disruption): `previous` is the last pass's record; the nodes it holds are healthy and not schedulable,
    so no job restarts and no node is drained for them."""
    out = []
    for node in sorted(nodes, key=lambda n: n.name):
        if (group := member_group(spec, node.labels)) is not None:
            out.append(Member(node, group, classify(node, group.accelerator.resource,
                                                    group.accelerator.cards_per_node, spec.health)))
    lost = [m.node.name for m in out if m.health.reason == NODE_UNKNOWN]
    if not lost and previous is None:
        return out, None
    current = disruption.assess(lost, len(out), previous, now, spec.health.disruption_grace_seconds)
    if current is not None:
        hold, health = set(current.nodes), disruption.held_health(current, len(out))
        out = [Member(m.node, m.group, health) if m.node.name in hold and m.health.reason == NODE_UNKNOWN else m
               for m in out]
    return out, current


@dataclass(frozen=True, slots=True)
class NodeAction:
    node: str
    kind: str
    """Drain (cordon, taint, record), Record (update the drain record) or Return (undo the drain)."""
    record: DrainRecord | None
    """The drain record to write (None for Return)."""
    message: str


@dataclass(frozen=True, slots=True)
class NodeEvent:
    node: str
    type: str
    reason: str
    message: str
    pool: str = ""
    """Set for events about a pool (e.g. its drain cap)."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A faulty node not drained because its group is at its drain cap."""

    pool: str
    reason: str
    message: str


@dataclass
class DrainPlan:
    actions: list[NodeAction] = field(default_factory=list)
    held: dict[str, Hold] = field(default_factory=dict)
    """Faulty nodes not drained because their group is at its cap."""
    recheck_at: datetime | None = None
    """When a probation ends: the plan could say otherwise then on the same nodes."""
    events: list[NodeEvent] = field(default_factory=list)


def drain_cap(policy: HealthPolicy, group_nodes: int) -> int:
    """Most nodes of a group drained at once: maxDrainedPercent of its nodes, rounded down, at least one."""
    return max(1, policy.max_drained_percent * group_nodes // 100)


def owners(pools: dict[str, CardPoolSpec], nodes: list[ObservedNode], now: datetime,
           classified: dict[str, list[Member]] | None = None) -> dict[str, tuple[str, Member]]:
    """node -> (pool, its membership) of the first pool by name with a group selecting the node.
    `classified`: each pool's members, when the caller has them already."""
    out: dict[str, tuple[str, Member]] = {}
    for name in sorted(pools):
        for member in classified[name] if classified and name in classified else members(pools[name], nodes, now):
            out.setdefault(member.node.name, (name, member))
    return out


def plan_drains(pools: dict[str, CardPoolSpec], nodes: list[ObservedNode], now: datetime,
                classified: dict[str, list[Member]] | None = None) -> DrainPlan:
    """`classified`: pool -> its members (see `members`), computed once per pass for this and the pool pass."""
    plan = DrainPlan()
    clock = Deadlines(now)
    owner = owners(pools, nodes, now, classified)
    by_group: dict[tuple[str, str], list[Member]] = {}
    for node in sorted(nodes, key=lambda n: n.name):
        if node.name not in owner:
            if node.drain is not None:  # its pool (or group) is gone: nothing decides about it any more
                plan.actions.append(NodeAction(node.name, "Return", None, "no pool selects the node any more"))
            continue
        pool, member = owner[node.name]
        by_group.setdefault((pool, member.group.name), []).append(member)
    for (pool, group_name), group_members in by_group.items():
        spec = pools[pool]
        policy = spec.health
        cap = drain_cap(policy, len(group_members))
        drained = sum(1 for m in group_members if m.node.drain is not None)
        for member in group_members:
            node, health = member.node, member.health
            record = node.drain
            if record is None:
                if health.healthy:
                    continue
                if drained < cap or health.reason == REQUESTED:  # a person's request is not held to the cap
                    drained += 1
                    plan.actions.append(NodeAction(node.name, "Drain", DrainRecord(
                        health.reason, now, cordoned=not node.unschedulable), health.message))
                    plan.events.append(NodeEvent(node.name, "Warning", "NodeDrained",
                                                 f"{health.message}; drained ({drained} of at most {cap} in "
                                                 f"group {group_name})"))
                else:  # reported once per hold by the pool pass, which records the hold in the pool's status
                    plan.held[node.name] = Hold(pool, health.reason,
                                                f"{health.message}; not drained: {drained} of {len(group_members)} "
                                                f"nodes of group {group_name} are drained (cap {cap})")
            elif record.reason == REQUESTED and node.drain_requested is None and health.healthy:
                plan.actions.append(NodeAction(node.name, "Return", None, f"node {node.name}: drain request removed"))
                plan.events.append(NodeEvent(node.name, "Normal", "NodeReturned",
                                             f"node {node.name}: the drain request was removed; it takes workers "
                                             f"again"))
            elif not health.healthy:
                if record.healthy_since is not None:
                    plan.actions.append(NodeAction(node.name, "Record", replace(record, healthy_since=None),
                                                   f"{health.message}; probation starts again when it recovers"))
            elif record.healthy_since is None:
                plan.actions.append(NodeAction(node.name, "Record", replace(record, healthy_since=now),
                                               f"node {node.name} is healthy again; probation of "
                                               f"{policy.probation_seconds} s"))
            elif clock.reached(record.healthy_since + timedelta(seconds=policy.probation_seconds)):
                plan.actions.append(NodeAction(node.name, "Return", None,
                                               f"node {node.name} stayed healthy for {policy.probation_seconds} s"))
                plan.events.append(NodeEvent(node.name, "Normal", "NodeReturned",
                                             f"node {node.name} passed probation and takes workers again"))
    plan.recheck_at = clock.next
    return plan


@dataclass(frozen=True, slots=True)
class PodOnNode:
    """A pod on a node being drained, as the eviction filter sees it."""

    name: str
    namespace: str
    owner_kinds: tuple[str, ...] = ()
    mirror: bool = False
    cardpool: bool = False
    deleting: bool = False
    phase: str = "Running"


@dataclass(frozen=True, slots=True)
class PodDecision:
    pod: PodOnNode
    evict: bool
    reason: str


def _daemonset(p: PodOnNode) -> str | None:
    return "a DaemonSet pod: its controller would put it back" if "DaemonSet" in p.owner_kinds else None


def _mirror(p: PodOnNode) -> str | None:
    return "a static (mirror) pod: only its kubelet can remove it" if p.mirror else None


def _cardpool(p: PodOnNode) -> str | None:
    return "a cardpool worker: its job restarts it as a new attempt" if p.cardpool else None


def _finished(p: PodOnNode) -> str | None:
    return f"already {p.phase}" if p.phase in ("Succeeded", "Failed") else None


def _deleting(p: PodOnNode) -> str | None:
    return "already being deleted" if p.deleting else None


SKIP_FILTERS = (_mirror, _daemonset, _cardpool, _finished, _deleting)


def eviction_decisions(pods: list[PodOnNode]) -> list[PodDecision]:
    """Which pods of a drained node to evict (through the Eviction API, so PodDisruptionBudgets hold)."""
    out = []
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name)):
        skip = next((why for f in SKIP_FILTERS if (why := f(pod))), None)
        out.append(PodDecision(pod, skip is None, skip or "evicted to drain the node"))
    return out
