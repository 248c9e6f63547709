"""One pass over a pool: the single place where the pool's cards are decided.

Observed nodes and jobs in; out: a snapshot for the queue, a plan per job and the pool's status. Cards are
held by the recorded placement of every job in Starting or Running, and by pods of any attempt that still
exist, so a job between attempts never frees cards its old pods still use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cardpool.api.cardpool import CardPoolSpec, CardPoolStatus, GroupStatus
from cardpool.api.conditions import Condition, set_condition
from cardpool.api.trainingjob import Phase

from .drain import member_group
from .health import LOST, classify
from .lifecycle import JobPlan, needs_placement, plan_job, rank_nodes, request
from .migrations import active_target, decide_defrag
from .observed import ObservedBudget, ObservedJob, ObservedNode, ObservedPod
from .queue import QueuePlan, queue_order, schedule
from .sizing import resize
from .snapshot import Allocation, Group, Node, Snapshot, Worker


@dataclass
class PoolPlan:
    jobs: list[JobPlan]
    status: CardPoolStatus
    queue: QueuePlan
    faulty_nodes: dict[str, str] = field(default_factory=dict)
    """node -> reason, for nodes of the pool classified unhealthy."""
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """Events on the pool: (type, reason, message)."""


def build_snapshot(spec: CardPoolSpec, nodes: list[ObservedNode], jobs: list[ObservedJob], now: datetime,
                   other_pods: tuple[ObservedPod, ...] = ()) -> tuple[Snapshot, dict[str, str]]:
    """`other_pods`: cardpool pods of other pools' jobs, whose cards on shared nodes are not free here."""
    others: dict[str, int] = {}
    for pod in other_pods:
        if pod.node and pod.phase not in ("Succeeded", "Failed"):
            others[pod.node] = others.get(pod.node, 0) + pod.cards
    core_nodes, faulty = [], {}
    for node in sorted(nodes, key=lambda n: n.name):
        group = member_group(spec, node.labels)
        if group is None:
            continue
        health = classify(node, group.accelerator.resource, group.accelerator.cards_per_node, spec.health)
        if not health.healthy:
            faulty[node.name] = health.reason
        resource = group.accelerator.resource
        core_nodes.append(Node(
            name=node.name, group=group.name, model=group.accelerator.model,
            allocatable=node.allocatable.get(resource, 0),
            capacity=node.capacity.get(resource, group.accelerator.cards_per_node),
            topology=tuple(node.labels.get(k, "") for k in group.topology_keys),
            healthy=health.healthy, schedulable=health.schedulable, used_by_others=others.get(node.name, 0)))
    groups = tuple(Group(g.name, g.accelerator.model, g.accelerator.cards_per_node,
                         g.accelerator.relative_throughput) for g in spec.node_groups)
    known = {n.name: n for n in core_nodes}
    allocations, pending = [], []
    for job in jobs:
        held: dict[str, int] = {}
        live = job.status.phase in (Phase.STARTING, Phase.RUNNING)
        if live:
            for node, _, _ in rank_nodes(job.status).values():
                held[node] = held.get(node, 0) + job.spec.workers.cards_per_worker
        for pod in job.pods:  # every other pod still holds its cards until it has ended
            if live and pod.attempt == job.status.attempt:
                continue  # counted through the recorded placement
            if pod.node and pod.phase not in ("Succeeded", "Failed"):
                held[pod.node] = held.get(pod.node, 0) + job.spec.workers.cards_per_worker
        workers = tuple(Worker(i, node, known[node].group, known[node].model, cards)
                        for i, (node, cards) in enumerate(sorted(held.items())) if node in known)
        if workers:
            allocations.append(Allocation(job.key, workers))
        if needs_placement(job, now, faulty):
            pending.append(request(job))
    return Snapshot(nodes=tuple(core_nodes), groups=groups, allocations=tuple(allocations),
                    pending=tuple(pending)), faulty


def reconcile_pool(spec: CardPoolSpec, generation: int, previous: CardPoolStatus | None,
                   nodes: list[ObservedNode], jobs: list[ObservedJob], now: datetime,
                   other_pods: tuple[ObservedPod, ...] = (), budgets: tuple[ObservedBudget, ...] = ()) -> PoolPlan:
    """`budgets`: PodDisruptionBudgets, which defragmentation respects."""
    snapshot, faulty = build_snapshot(spec, nodes, jobs, now, other_pods)
    known = {n.name for n in snapshot.nodes}
    for job in jobs:  # a recorded node that left the pool (deleted, relabelled) is as good as faulty
        for node, _, _ in rank_nodes(job.status).values():
            if node not in known:
                faulty.setdefault(node, "NodeMissing")
    earlier = previous.defragmentation if previous else None
    queue = schedule(snapshot, first=active_target(earlier, jobs, now))
    frag_since = fragmented_since(spec, previous, queue, now)
    drained: dict[str, int] = {}
    for node in nodes:
        if node.drain is not None and (group := member_group(spec, node.labels)) is not None:
            drained[group.name] = drained.get(group.name, 0) + 1
    status = pool_status(spec, generation, previous, snapshot, queue, now, drained, frag_since)
    defrag = decide_defrag(spec.defragmentation, earlier, snapshot, queue, jobs, frag_since,
                           status.fragmentation_percent, now, budgets)
    status.defragmentation = defrag.status
    offers = {p.job: p for p in queue.admitted}
    waits = {w.job: w for w in queue.waiting}
    growth = room_to_grow(snapshot, queue, jobs) if not defrag.migrate else {}
    rates = {g.name: g.accelerator.relative_throughput for g in spec.node_groups}
    plans = [plan_job(job, now, offers.get(job.key), waits.get(job.key), faulty, growth.get(job.key),
                      defrag.migrate.get(job.key), rates) for job in jobs]
    stuck = timedelta(seconds=spec.health.stuck_terminating_seconds)
    for job, job_plan in zip(jobs, plans, strict=True):
        job_plan.force_delete = [p.name for p in job.pods if p.deleting and faulty.get(p.node or "") in LOST
                                 and p.deleting_since is not None and now - p.deleting_since >= stuck]
    return PoolPlan(plans, status, queue, faulty, defrag.events)


def fragmented_since(spec: CardPoolSpec, previous: CardPoolStatus | None, queue: QueuePlan,
                     now: datetime) -> dict[str, datetime | None]:
    """Per group: since when its fragmentation has been above the compaction threshold (None: it is not)."""
    before = {g.name: g.fragmented_since for g in previous.groups} if previous else {}
    out: dict[str, datetime | None] = {}
    for g in spec.node_groups:
        figures = queue.fragmentation.get(g.name)
        above = figures is not None and figures.percent > spec.defragmentation.compaction_threshold_percent
        out[g.name] = (before.get(g.name) or now) if above else None
    return out


def room_to_grow(snapshot: Snapshot, queue: QueuePlan, jobs: list[ObservedJob]) -> dict[str, int]:
    """The running job below its target size that could restart larger now (at most one a pass, the first
    in queue order, so two jobs never stop for the same room), with the size it would get. Growth never
    competes with waiting jobs: none when the queue admits or keeps waiting any job (those that cannot fit
    even an empty pool aside), or a job is between attempts (backing off, awaiting a save or its old pods)."""
    if queue.admitted or any(w.reason != "Unplaceable" for w in queue.waiting):
        return {}
    if any(j.status.phase == Phase.RESTARTING or (j.status.phase == Phase.QUEUED and j.status.attempt > 0)
           for j in jobs if not j.spec.suspend):
        return {}
    growing = {j.key: j for j in jobs if j.status.phase == Phase.RUNNING
               and j.status.workers < (j.spec.workers.size.desired or j.spec.workers.size.max)}
    for req in queue_order([request(j) for j in growing.values()]):
        grown = resize(snapshot, req, growing[req.key].status.workers)
        if grown.can_grow and grown.size is not None:
            return {req.key: grown.size}
    return {}
def pool_status(spec: CardPoolSpec, generation: int, previous: CardPoolStatus | None, snapshot: Snapshot,
                queue: QueuePlan, now: datetime, drained: dict[str, int] | None = None,
                frag_since: dict[str, datetime | None] | None = None) -> CardPoolStatus:
    used, free_now = snapshot.used(), snapshot.free()
    groups = []
    for g in spec.node_groups:
        members = [n for n in snapshot.nodes if n.group == g.name]
        frag = queue.fragmentation.get(g.name)
        healthy = sum(n.allocatable for n in members if n.usable)
        cards = sum(n.capacity for n in members)
        allocated = sum(min(used[n.name], n.allocatable) for n in members if n.usable)
        free = sum(free_now[n.name] for n in members)
        groups.append(GroupStatus(
            name=g.name, model=g.accelerator.model, nodes=len(members), cards=cards, healthy_cards=healthy,
            allocated_cards=allocated, free_cards=free, unhealthy_cards=cards - healthy,
            draining_nodes=(drained or {}).get(g.name, 0),
            largest_free_block=frag.largest_free_block if frag else 0,
            fragmentation_percent=frag.percent if frag else 0,
            fragmented_since=(frag_since or {}).get(g.name)))
    free_total = sum(g.free_cards for g in groups)
    whole = sum(f.largest_gang_cards for f in queue.fragmentation.values())
    empty_groups = [g.name for g in groups if g.nodes == 0]
    conditions: list[Condition] = list(previous.conditions) if previous else []
    if empty_groups:
        msg = f"no node matches the selector of group(s) {', '.join(empty_groups)}"
        conditions = set_condition(conditions, "Ready", False, "GroupWithoutNodes", msg, now, generation)
    else:
        msg = f"{sum(g.nodes for g in groups)} nodes, {free_total} free cards"
        conditions = set_condition(conditions, "Ready", True, "NodesObserved", msg, now, generation)
    conditions = set_condition(conditions, "Reconciling", False, "Observed", "", now, generation)
    conditions = set_condition(conditions, "Stalled", False, "Observed", "", now, generation)
    return CardPoolStatus(
        observed_generation=generation, conditions=conditions, groups=groups, group_count=len(groups),
        cards=sum(g.cards for g in groups), free_cards=free_total,
        unhealthy_cards=sum(g.unhealthy_cards for g in groups),
        fragmentation_percent=round(100 * (1 - whole / free_total)) if free_total else 0)
