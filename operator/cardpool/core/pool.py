"""One pass over a pool: the single place where the pool's cards are decided.

Observed nodes and jobs in; out: a snapshot for the queue, a plan per job and the pool's status. Cards are
held by the recorded placement of every job in Starting or Running, and by pods of any attempt that still
exist, so a job between attempts never frees cards its old pods still use.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cardpool.api.cardpool import CardPoolSpec, CardPoolStatus, Disruption, GroupStatus, HeldNode, NodeGroup
from cardpool.api.conditions import Condition, set_condition
from cardpool.api.trainingjob import Phase

from .advice import count_faults, fault_rates
from .candidates import needs_placement, request
from .clock import Deadlines
from .constraints import Taint, blocking, tolerations
from .disruption import ends_at as disruption_ends_at
from .drain import Hold, Member, classify_pool, member_group, members
from .lifecycle import MIGRATED, plan_job
from .migrations import HOUR, TARGET_TIMEOUT, active_target, decide_defrag
from .observed import DrainRecord, ObservedBudget, ObservedJob, ObservedNode, ObservedPod, PodRefusal
from .plan import JobPlan
from .queue import NEVER, QueuePlan, queue_order, schedule
from .quota import QueueAdmission, Tally
from .reclaim import plan_reclaim
from .sizing import resize
from .snapshot import Allocation, Group, JobRequest, Node, Snapshot, Worker


@dataclass
class PoolPlan:
    jobs: list[JobPlan]
    status: CardPoolStatus
    queue: QueuePlan
    faulty_nodes: dict[str, str] = field(default_factory=dict)
    """node -> reason, for nodes of the pool classified unhealthy."""
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """Events on the pool: (type, reason, message), posted after the pool's status is written."""
    recheck_at: datetime | None = None
    """The earliest moment a time-based rule could decide otherwise on the same inputs."""
    moves: tuple[str, ...] = ()
    """Jobs that defragmentation moves now. The pool's status records the moves (the budget's memory), so it is
    written before any of them stops."""


Foreign = Mapping[str, Mapping[str, int]]
"""node -> card resource -> cards held there by pods cardpool does not manage."""


def group_taints(node: ObservedNode, group: NodeGroup) -> tuple[Taint, ...]:
    """The node's taints that its group's tolerations leave for a job's template to tolerate."""
    return blocking((Taint(k, v, e) for k, e, v in node.taints), tolerations([t.wire() for t in group.tolerations]))


class NodeCache:
    """The last pass's snapshot nodes. `by_name`: node name -> (the observed node, its group, its health, cards
    others use, the Node built from them): a node whose inputs are the very same objects (and equal figures)
    as in the last pass is not built again. `last`: (members, others' cards, foreign cards, nodes, faulty
    nodes) of the last pass as a whole, reused while the caller passes the very same members list."""

    def __init__(self) -> None:
        self.by_name: dict[str, tuple] = {}
        self.last: tuple | None = None


def _build_nodes(spec: CardPoolSpec, nodes: list[ObservedNode], classified: list[Member] | None,
                 others: Mapping[str, int], foreign: Foreign, cache: NodeCache | None, now: datetime
                 ) -> tuple[list[Node], dict[str, str], bool]:
    """The snapshot's nodes, the faulty ones, and whether every node is as in the last pass."""
    core_nodes, faulty = [], {}
    built: dict[str, tuple] = {}
    same_nodes = cache is not None  # every node as in the last pass: then so is each job's allocation
    for member in members(spec, nodes, now) if classified is None else classified:
        node, group, health = member.node, member.group, member.health
        if not health.healthy:
            faulty[node.name] = health.reason
        resource = group.accelerator.resource
        taken = foreign.get(node.name)
        used = others.get(node.name, 0) + (taken.get(resource, 0) if taken else 0)
        hit = cache.by_name.get(node.name) if cache is not None else None
        if hit is not None and hit[0] is node and hit[1] is group and hit[2] == health and hit[3] == used:
            core = hit[4]
        else:
            same_nodes = False
            core = Node(
                name=node.name, group=group.name, model=group.accelerator.model,
                allocatable=node.allocatable.get(resource, 0),
                capacity=node.capacity.get(resource, group.accelerator.cards_per_node),
                topology=tuple(node.labels.get(k, "") for k in group.topology_keys),
                healthy=health.healthy, schedulable=health.schedulable, used_by_others=used,
                labels=node.labels, taints=group_taints(node, group) if node.taints else ())
        built[node.name] = (node, group, health, used, core)
        core_nodes.append(core)
    if cache is not None:
        same_nodes = same_nodes and len(built) == len(cache.by_name)
        cache.by_name = built
    return core_nodes, faulty, same_nodes


def build_snapshot(spec: CardPoolSpec, nodes: list[ObservedNode], jobs: list[ObservedJob], now: datetime,
                   other_pods: tuple[ObservedPod, ...] = (), foreign: Foreign | None = None,
                   classified: list[Member] | None = None,
                   settling: Collection[str] = (), cache: NodeCache | None = None,
                   held_cache: dict | None = None) -> tuple[Snapshot, dict[str, str]]:
    """`other_pods`: cardpool pods of other pools' jobs, whose cards on shared nodes are not free here.
    `foreign`: cards held by pods cardpool does not manage. `classified`: the pool's members, if known.
    `settling`: jobs whose last plan is still being carried out: they hold what their status says, and the
    queue does not consider them. `cache`: the last pass's nodes (see NodeCache), replaced by this pass's.
    `held_cache`: job key -> (status, pods, spec, allocation) of the last pass, kept while the nodes are the same and
    reused for a job whose status, pods and spec are the very same objects."""
    others: dict[str, int] = {}
    for pod in other_pods:
        if pod.node and pod.phase not in ("Succeeded", "Failed"):
            others[pod.node] = others.get(pod.node, 0) + pod.cards
    foreign = foreign or {}
    last = cache.last if cache is not None else None
    if last is not None and classified is not None and last[0] is classified and last[1] == others and (
            last[2] == foreign):  # the very same members and cards held by others: the very same nodes
        core_nodes, faulty, same_nodes = last[3], dict(last[4]), True
    else:
        core_nodes, faulty, same_nodes = _build_nodes(spec, nodes, classified, others, foreign, cache,
                                                      now.now if isinstance(now, Deadlines) else now)
        if cache is not None:
            cache.last = (classified, others, foreign, core_nodes, dict(faulty)) if classified is not None else None
    if held_cache is not None and not same_nodes:
        held_cache.clear()
    groups = tuple(Group(g.name, g.accelerator.model, g.accelerator.cards_per_node,
                         g.accelerator.relative_throughput) for g in spec.node_groups)
    known = {n.name: n for n in core_nodes}
    clock = now if isinstance(now, Deadlines) else Deadlines(now)
    allocations, pending = [], []
    for job in jobs:
        kept = held_cache.get(job.key) if held_cache is not None else None
        if kept is not None and kept[0] is job.status and kept[1] is job.pods and kept[2] is job.spec:
            allocation = kept[3]
        else:
            allocation = _allocation(job, known)
            if held_cache is not None:
                held_cache[job.key] = (job.status, job.pods, job.spec, allocation)
        if allocation is not None:
            allocations.append(allocation)
        if job.key not in settling and needs_placement(job, clock, faulty):
            pending.append(request(job))
    return Snapshot(nodes=tuple(core_nodes), groups=groups, allocations=tuple(allocations),
                    pending=tuple(pending)), faulty


def _allocation(job: ObservedJob, known: Mapping[str, Node]) -> Allocation | None:
    """The cards the job holds: its recorded placement while an attempt is live, and every pod not ended."""
    held: dict[str, int] = {}
    live = job.status.phase in (Phase.STARTING, Phase.RUNNING)
    cards = job.spec.workers.cards_per_worker
    if live:
        for gp in job.status.placement:
            for node in gp.nodes:
                held[node] = held.get(node, 0) + cards
    for pod in job.pods:  # every other pod still holds its cards until it has ended
        if live and pod.attempt == job.status.attempt:
            continue  # counted through the recorded placement
        if pod.node and pod.phase not in ("Succeeded", "Failed"):
            held[pod.node] = held.get(pod.node, 0) + cards
    workers = tuple(Worker(i, node, known[node].group, known[node].model, n)
                    for i, (node, n) in enumerate(sorted(held.items())) if node in known)
    return Allocation(job.key, workers) if workers else None


class PlanMemo:
    """Plans that decided nothing, reused while their inputs stay the same and no deadline they looked at has
    come: a pass's cost then grows with what changed, not with the number of jobs. Inputs are compared by
    identity where the caller keeps objects of unchanged API objects (spec, status), by value otherwise."""

    def __init__(self) -> None:
        self.nodes = NodeCache()
        self.allocations: dict = {}
        self._pool: tuple | None = None
        self._plans: dict[str, tuple[tuple, JobPlan]] = {}
        self._finished: dict[str, tuple[tuple, JobPlan]] = {}
        self._queue: tuple[Snapshot, str | None, QueuePlan, QueueAdmission | None] | None = None
        self._tallies: tuple[tuple, dict] | None = None

    def schedule(self, snapshot: Snapshot, first: str | None, admission: QueueAdmission | None = None) -> QueuePlan:
        """The queue's answer, computed again only when the cards, the waiting jobs or the quotas changed."""
        if self._queue is not None and self._queue[1] == first and self._queue[0] == snapshot and (
                self._queue[3] == admission):
            return self._queue[2]
        plan = schedule(snapshot, first, admission)
        self._queue = (snapshot, first, plan, admission)
        return plan

    def tallies(self, spec: CardPoolSpec, snapshot: Snapshot, foreign: Foreign | None) -> dict:
        """The group figures, summed again only when the nodes, the allocations or the foreign cards changed
        (unchanged nodes and allocations are the very same objects, so the comparison is cheap)."""
        key = (spec, snapshot.nodes, snapshot.allocations, foreign or {})
        if self._tallies is None or self._tallies[0] != key:
            self._tallies = (key, group_tallies(spec, snapshot, foreign))
        return self._tallies[1]

    def start(self, pool_inputs: tuple) -> None:
        """A pass begins; a change of what every job's plan reads (faults, the pool's spec) forgets all."""
        if pool_inputs != self._pool:
            self._pool = pool_inputs
            self._plans.clear()

    def get(self, job: ObservedJob, inputs: tuple, now: datetime) -> JobPlan | None:
        entry = self._plans.get(job.key)
        if entry is None:
            return None
        kept, plan = entry
        same = kept[0] is job.spec and kept[1] is job.status and kept[2:-2] == (job.generation, *inputs) \
            and kept[-2] == job.pods and kept[-1] == job.checkpoints
        if not same or (plan.recheck_at is not None and now >= plan.recheck_at):
            del self._plans[job.key]
            return None
        return plan

    def put(self, job: ObservedJob, inputs: tuple, plan: JobPlan) -> None:
        if plan.acts or plan.settling:
            self._plans.pop(job.key, None)
        else:
            self._plans[job.key] = ((job.spec, job.status, job.generation, *inputs, job.pods, job.checkpoints),
                                    plan)

    def finished(self, jobs: list[ObservedJob], settling: Collection[str]) -> dict[str, JobPlan]:
        """The plans of finished jobs that rest (see `rest`), for those whose spec, status and checkpoints are
        still the same: the pass leaves these jobs out of everything else, so its cost does not grow with the
        jobs that ended long ago."""
        out = {}
        for job in jobs:
            entry = self._finished.get(job.key)
            if entry is None:
                continue
            kept, plan = entry
            if kept[0] is job.spec and kept[1] is job.status and kept[2] == job.generation and not job.pods and (
                    kept[3] is job.checkpoints or kept[3] == job.checkpoints) and job.key not in settling:
                out[job.key] = plan
            else:
                del self._finished[job.key]
        return out

    def rest(self, job: ObservedJob, plan: JobPlan) -> None:
        """Keep the plan of a job that ended, has no pod left and whose plan neither acts nor waits for a time
        (no TTL): such a plan reads nothing but the job itself (no offer, fault or fault rate changes a finished
        job without placement), so it survives `start` forgetting the other plans."""
        if job.status.phase in (Phase.SUCCEEDED, Phase.FAILED) and not job.pods and not plan.acts and (
                plan.recheck_at is None and not plan.settling):
            self._finished[job.key] = ((job.spec, job.status, job.generation, job.checkpoints), plan)

    def keep_only(self, keys: Collection[str]) -> None:
        keep = set(keys)
        for key in self._plans.keys() - keep:
            del self._plans[key]
        for key in self._finished.keys() - keep:
            del self._finished[key]
        for key in self.allocations.keys() - keep:
            del self.allocations[key]


def reconcile_pool(spec: CardPoolSpec, generation: int, previous: CardPoolStatus | None,
                   nodes: list[ObservedNode], jobs: list[ObservedJob], now: datetime,
                   other_pods: tuple[ObservedPod, ...] = (), budgets: tuple[ObservedBudget, ...] = (),
                   foreign: Foreign | None = None, classified: list[Member] | None = None,
                   settling: Collection[str] = (), held: Mapping[str, Hold] | None = None,
                   memo: PlanMemo | None = None, refusals: Mapping[str, PodRefusal] | None = None,
                   disruption: Disruption | None = None, admission: QueueAdmission | None = None) -> PoolPlan:
    """`budgets`: PodDisruptionBudgets, which defragmentation respects. `foreign`, `classified`, `settling`: see
    build_snapshot; `disruption`: the one `classified` was made with (core.drain.classify_pool), recorded in the
    status; without `classified`, both are found here from the nodes and the previous status. `held`: the pool's
    faulty nodes that the node pass holds back from draining (drain cap).
    `memo`: plans of earlier passes to reuse (see PlanMemo). `refusals`: jobs whose worker pod the API server
    refuses as their spec stands; the queue does not consider them. `admission`: the tenant queues (core.tenants):
    a job is admitted only within its queue's quota."""
    clock = Deadlines(now)
    if classified is None:
        classified, disruption = classify_pool(spec, nodes, now, previous.disruption if previous else None)
    refusals = refusals or {}
    unplaceable = {*settling, *refusals} if refusals else settling
    everyone = jobs
    finished = memo.finished(jobs, settling) if memo is not None else {}
    if finished:  # they hold no cards, wait for nothing and are no candidates for anything below
        jobs = [j for j in jobs if j.key not in finished]
    snapshot, faulty = build_snapshot(spec, nodes, jobs, clock, other_pods, foreign, classified, unplaceable,
                                      memo.nodes if memo is not None else None,
                                      memo.allocations if memo is not None else None)
    known = {n.name for n in snapshot.nodes}
    for job in jobs:  # a recorded node that left the pool (deleted, relabelled) is as good as faulty
        for gp in job.status.placement:
            for node in gp.nodes:
                if node not in known:
                    faulty.setdefault(node, "NodeMissing")
    earlier = previous.defragmentation if previous else None
    first = active_target(earlier, jobs, now)
    queue = memo.schedule(snapshot, first, admission) if memo is not None else schedule(snapshot, first, admission)
    frag_since = fragmented_since(spec, previous, queue, now)
    drains: dict[str, list[tuple[str, DrainRecord]]] = {}
    for node in nodes:
        if node.drain is not None and (group := member_group(spec, node.labels)) is not None:
            drains.setdefault(group.name, []).append((node.name, node.drain))
    status = pool_status(spec, generation, previous, snapshot, queue, now, drains, frag_since, foreign, memo)
    faults = fault_rates(((g.name, g.nodes, g.faults) for g in status.groups), now)
    decidable = [j for j in jobs if j.key not in settling] if settling else jobs
    defrag = decide_defrag(spec.defragmentation, earlier, snapshot, queue, decidable, frag_since,
                           status.fragmentation_percent, now, budgets)
    status.defragmentation = defrag.status
    events = list(defrag.events)
    status.held_nodes, hold_events = held_nodes(previous, held or {}, now)
    events += hold_events
    status.disruption = disruption
    events += disruption_events(previous.disruption if previous else None, disruption, len(classified))
    clock.note(disruption_ends_at(disruption, spec.health.disruption_grace_seconds))
    offers = {p.job: p for p in queue.admitted}
    waits = {w.job: w for w in queue.waiting}
    stops: dict[str, str] = {}
    if admission is not None and queue.waiting and not defrag.migrate:  # one of them makes room at a time
        reclaims = plan_reclaim(admission, queue, decidable, free_by_model(snapshot, queue), now)
        waits.update(reclaims.waits)
        stops = reclaims.stops
    growth = room_to_grow(snapshot, queue, decidable, admission) if not defrag.migrate else {}
    rates = {g.name: g.accelerator.relative_throughput for g in spec.node_groups}
    stuck = timedelta(seconds=spec.health.stuck_terminating_seconds)
    if memo is not None:
        # a fault counted changes every job's advice; the estimate's slow drift with time alone does not
        # forget the plans (a job's advice follows it when anything else about the job changes)
        memo.start((spec, tuple(sorted(faulty.items())), tuple((g, r.faults) for g, r in faults.items())))
    plans = []
    for job in everyone:
        if (plan := finished.get(job.key)) is not None:
            plans.append(plan)
            continue
        if job.key in settling:
            plans.append(JobPlan(job.key, job.status, status_changed=False, settling=True))
            continue
        inputs = (offers.get(job.key), waits.get(job.key), growth.get(job.key), defrag.migrate.get(job.key),
                  refusals.get(job.key), stops.get(job.key))
        plan = memo.get(job, inputs, now) if memo is not None else None
        if plan is None:
            offer, wait, grow_to, migrate, refusal, stop = inputs
            plan = plan_job(job, now, offer, wait, faulty, grow_to, migrate, rates, stuck_after=stuck,
                            refusal=refusal, fault_rates=faults, reclaim=stop)
            if memo is not None:
                memo.put(job, inputs, plan)
                memo.rest(job, plan)
        clock.note(plan.recheck_at)
        plans.append(plan)
    if memo is not None:
        memo.keep_only([j.key for j in everyone])
    _pool_deadlines(spec, status, jobs, frag_since, clock)
    return PoolPlan(plans, status, queue, faulty, events, clock.next, tuple(sorted(defrag.migrate)))


def held_nodes(previous: CardPoolStatus | None, held: Mapping[str, Hold],
               now: datetime) -> tuple[list[HeldNode], list[tuple[str, str, str]]]:
    """The pool's held nodes, and a DrainCapReached event for each hold that begins: the status written before
    the event is the memory that each hold is reported once, whoever runs the pass."""
    before = {h.node: h for h in previous.held_nodes} if previous else {}
    out, events = [], []
    for node in sorted(held):
        hold = held[node]
        kept = before.get(node)
        out.append(HeldNode(node=node, reason=hold.reason, since=kept.since if kept else now))
        if kept is None:
            events.append(("Warning", "DrainCapReached", hold.message))
    return out, events


def disruption_events(before: Disruption | None, after: Disruption | None,
                      pool_nodes: int) -> list[tuple[str, str, str]]:
    """An event as a disruption begins and as it ends (the status, written first, remembers which was told)."""
    if before is None and after is not None:
        return [("Warning", "Disruption", f"{len(after.nodes)} of the pool's {pool_nodes} nodes lost contact at "
                                          f"once: held as a control-plane or network disruption (no restart, no "
                                          f"drain) until they report again")]
    if before is not None and after is None:
        return [("Normal", "DisruptionOver", f"the disruption since {before.since.isoformat()} is over; nodes "
                                             f"still out of contact count as faults")]
    return []


def _pool_deadlines(spec: CardPoolSpec, status: CardPoolStatus, jobs: list[ObservedJob],
                    frag_since: dict[str, datetime | None], clock: Deadlines) -> None:
    """When the pool's own time-based rules (compaction, the defragmentation target's timeout, moves leaving
    the hour's budget) could decide otherwise."""
    for since in frag_since.values():
        if since is not None:
            clock.note(since + timedelta(seconds=spec.defragmentation.compaction_after_seconds))
    defrag = status.defragmentation
    if defrag is not None:
        if defrag.since is not None:
            clock.note(defrag.since + TARGET_TIMEOUT)
        for move in defrag.migrations:
            clock.note(move.time + HOUR)
    for job in jobs:
        last = job.status.history[-1] if job.status.history else None
        if last is not None and last.end_reason == MIGRATED and last.end_time is not None:
            clock.note(last.end_time + TARGET_TIMEOUT)


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


def free_by_model(snapshot: Snapshot, queue: QueuePlan) -> dict[str, list[int]]:
    """Per model, each schedulable node's free cards once the pass's admissions are placed."""
    free = snapshot.free()
    for placement in queue.admitted:
        for node, cards in placement.cards_on().items():
            free[node] = free.get(node, 0) - cards
    out: dict[str, list[int]] = {}
    for node in snapshot.nodes:
        if node.healthy and node.schedulable and free.get(node.name, 0) > 0:
            out.setdefault(node.model, []).append(free[node.name])
    return out


def room_to_grow(snapshot: Snapshot, queue: QueuePlan, jobs: list[ObservedJob],
                 admission: QueueAdmission | None = None) -> dict[str, int]:
    """The running job below its target size that could restart larger now (at most one a pass, the first
    in queue order, so two jobs never stop for the same room), with the size it would get. Growth never
    competes with waiting jobs: none when the queue admits or keeps waiting any job (those that cannot fit
    even an empty pool aside), or a job is between attempts (backing off, awaiting a save or its old pods).
    With tenant queues, a job grows only as far as its queue may still take cards (`admission`)."""
    if queue.admitted or any(w.reason not in NEVER for w in queue.waiting):
        return {}
    if any(j.status.phase == Phase.RESTARTING or (j.status.phase == Phase.QUEUED and j.status.attempt > 0)
           for j in jobs if not j.spec.suspend):
        return {}
    growing = {j.key: j for j in jobs if j.status.phase == Phase.RUNNING
               and j.status.workers < (j.spec.workers.size.desired or j.spec.workers.size.max)}
    tally = admission.tally() if admission is not None else None
    for req in queue_order([request(j) for j in growing.values()]):
        workers = growing[req.key].status.workers
        if tally is not None and (req := _within_quota(req, growing[req.key], workers, tally)) is None:
            continue
        grown = resize(snapshot, req, workers)
        if grown.can_grow and grown.size is not None:
            return {req.key: grown.size}
    return {}


def _within_quota(req: JobRequest, job: ObservedJob, workers: int, tally: Tally) -> JobRequest | None:
    """The job's request capped at what its queue may still take on the models it runs on; None when that is
    no more than it has."""
    rooms = [tally.room(req.key, model) for model in dict.fromkeys(g.accelerator for g in job.status.placement)]
    if not rooms or None in rooms:
        return req
    extra = min(r for r in rooms if r is not None) // req.cards_per_worker // req.unit * req.unit
    if extra <= 0:
        return None
    top = min(req.max_workers, workers + extra)
    return replace(req, max_workers=top, desired_workers=min(req.desired_workers or top, top))


def group_tallies(spec: CardPoolSpec, snapshot: Snapshot, foreign: Foreign | None) -> dict[str, _Tally]:
    """Each group's figures, in one pass over the nodes."""
    used = snapshot.used()
    foreign = foreign or {}
    resource = {g.name: g.accelerator.resource for g in spec.node_groups}
    tally = {g.name: _Tally() for g in spec.node_groups}
    for n in snapshot.nodes:
        t = tally.get(n.group)
        if t is None:
            continue
        held = foreign.get(n.name)
        taken = min(held.get(resource[n.group], 0), n.capacity) if held else 0
        t.nodes += 1
        t.cards += n.capacity
        t.other += taken
        if n.usable:
            t.healthy += n.allocatable
            t.allocated += min(used[n.name] - taken, n.allocatable)
            t.free += max(n.allocatable - used[n.name], 0)
    return tally


@dataclass(slots=True)
class _Tally:
    """A group's figures, summed over its nodes."""

    nodes: int = 0
    cards: int = 0
    healthy: int = 0
    allocated: int = 0
    other: int = 0
    free: int = 0


def pool_status(spec: CardPoolSpec, generation: int, previous: CardPoolStatus | None, snapshot: Snapshot,
                queue: QueuePlan, now: datetime,
                drains: Mapping[str, list[tuple[str, DrainRecord]]] | None = None,
                frag_since: dict[str, datetime | None] | None = None, foreign: Foreign | None = None,
                memo: PlanMemo | None = None) -> CardPoolStatus:
    """`drains`: per group, its drained nodes and their drain records (faults are counted from them). `memo`:
    keeps the group figures while the snapshot's nodes and allocations are the same."""
    drains = drains or {}
    before = {g.name: g.faults for g in previous.groups} if previous else {}
    tally = memo.tallies(spec, snapshot, foreign) if memo is not None else group_tallies(spec, snapshot, foreign)
    groups = []
    for g in spec.node_groups:
        t = tally[g.name]
        frag = queue.fragmentation.get(g.name)
        groups.append(GroupStatus(
            name=g.name, model=g.accelerator.model, nodes=t.nodes, cards=t.cards, healthy_cards=t.healthy,
            allocated_cards=max(t.allocated, 0), other_cards=t.other, free_cards=t.free,
            unhealthy_cards=t.cards - t.healthy,
            draining_nodes=len(drains.get(g.name, ())),
            largest_free_block=frag.largest_free_block if frag else 0,
            fragmentation_percent=frag.percent if frag else 0,
            fragmented_since=(frag_since or {}).get(g.name),
            faults=count_faults(before.get(g.name), drains.get(g.name, ()), now)))
    free_total = sum(g.free_cards for g in groups)
    whole = sum(f.largest_gang_cards for f in queue.fragmentation.values())
    empty_groups = [g.name for g in groups if g.nodes == 0]
    conditions: list[Condition] = list(previous.conditions) if previous else []
    # A group no node matches waits for a person (fix the selector or label a node), not for time: Stalled, so
    # kstatus says Failed and Argo CD Degraded alike, instead of kstatus waiting on Ready=False as InProgress.
    if empty_groups:
        reason, msg = "GroupWithoutNodes", f"no node matches the selector of group(s) {', '.join(empty_groups)}"
        conditions = set_condition(conditions, "Ready", False, reason, msg, now, generation)
        conditions = set_condition(conditions, "Stalled", True, reason, msg, now, generation)
    else:
        msg = f"{sum(g.nodes for g in groups)} nodes, {free_total} free cards"
        conditions = set_condition(conditions, "Ready", True, "NodesObserved", msg, now, generation)
        conditions = set_condition(conditions, "Stalled", False, "Observed", "", now, generation)
    conditions = set_condition(conditions, "Reconciling", False, "Observed", "", now, generation)
    return CardPoolStatus(
        observed_generation=generation, conditions=conditions, groups=groups, group_count=len(groups),
        cards=sum(g.cards for g in groups), free_cards=free_total,
        unhealthy_cards=sum(g.unhealthy_cards for g in groups),
        fragmentation_percent=round(100 * (1 - whole / free_total)) if free_total else 0)
