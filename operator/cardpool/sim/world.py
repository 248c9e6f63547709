"""A simulated cluster, on a virtual clock, in which the operator's own pass decides.

Every decision is the operator's: each pass runs `core.drain.plan_drains` and `core.pool.reconcile_pool` on
the real CardPool and TrainingJob models, as `cardpool.controller` does, and nothing here decides what a job
or a node should do. This module only plays the rest of the world and turns the plans' effects into the
next observed state:
- the API server: status writes, pods created and deleted, checkpoint verdicts, drain records on nodes;
- the scheduler and kubelets: a created pod runs `pod_start_s` later if its node is up; a deleted pod ends
  `terminate_s` later if its node is up (a planned stop's save first), never while its node is down (the
  operator force-deletes those after the pool's stuckTerminatingSeconds);
- the hardware: faults and repairs from `cardpool.sim.faults`;
- the trainers: `cardpool.sim.trainer` (steps, saves reported as Checkpoints with rank 0's progress, the
  graceful save of a planned stop, success when the last step is done).
A pass runs at every instant something happened, and again while the last one acted (as the watch would
show the operator its own writes), and at each moment a time-based rule of the plans comes due. Trainer
saves do not wake the operator: the next pass judges them (as a real watch event would, a little later).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from cardpool.api.cardpool import CardPoolSpec, CardPoolStatus
from cardpool.api.keys import TAINT_DRAIN
from cardpool.api.tenantqueue import TenantQueueSpec
from cardpool.api.trainingjob import Phase, TrainingJobSpec, TrainingJobStatus
from cardpool.core.attempts import pod_name, pod_shape
from cardpool.core.drain import DrainPlan, members, plan_drains
from cardpool.core.observed import ObservedCheckpoint, ObservedJob, ObservedNode, ObservedPod, ObservedProgress
from cardpool.core.plan import JobPlan
from cardpool.core.pool import PlanMemo, reconcile_pool
from cardpool.core.tenants import admission, tenants

from .faults import Fault, FaultModel, faults
from .trainer import Run, Timeline, TrainerModel

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
NAMESPACE = "sim"
POOL = "pool"
PASSES_PER_INSTANT = 20
"""A plan whose effects change what the next pass sees is followed by another pass at the same instant; a
pool that still acts after this many is a bug in the operator (it would loop on a real cluster too)."""
UNSEEN = frozenset({"save", "sample"})
"""Events that wake no pass: a trainer's save is judged by the next pass (a real watch shows it a little later
too; the outcome is the same, as every pass judges every new Checkpoint first)."""
KEEP_CHECKPOINTS = 3
"""A trainer keeps its newest saves (retention), so a job does not carry thousands of Checkpoints."""


@dataclass(frozen=True)
class JobTrace:
    """One job of a workload."""

    name: str
    arrival_s: float
    cards_per_worker: int
    min_workers: int
    max_workers: int
    accelerators: tuple[str, ...]
    steps: int
    step_s: float
    """Seconds per step at `max_workers` on cards of relative throughput 1.0."""
    priority: int = 0
    mode: str = "Homogeneous"
    queue: str | None = None
    """Its TenantQueue (World's `queues`), if any."""


def job_spec(trace: JobTrace, trainer: TrainerModel) -> TrainingJobSpec:
    """The TrainingJob a user would apply for `trace`: checkpointing on, its expected save time given (so its
    first attempt is advised an interval too), node faults not counted against the restart budget (as the
    examples do)."""
    return TrainingJobSpec.model_validate({
        "pool": POOL, "framework": "PyTorch", "priority": trace.priority, "queue": trace.queue,
        "workers": {"cardsPerWorker": trace.cards_per_worker,
                    "size": {"min": trace.min_workers, "max": trace.max_workers},
                    "template": {"spec": {"containers": [{"name": "trainer", "image": "sim"}]}}},
        "placement": {"accelerators": list(trace.accelerators), "mode": trace.mode},
        "checkpoint": {"uri": f"s3://sim/{trace.name}",
                       "gracefulSaveSeconds": min(max(math.ceil(trainer.save_s) + 30, 30), 3600),
                       "saveSeconds": trainer.save_s},
        "failurePolicy": {"maxRestarts": 1000, "rules": [{"action": "RestartIgnoringBudget", "onNodeFault": True}]},
    })


def fleet(pool: CardPoolSpec, counts: dict[str, int], nodes_per_rack: int = 8) -> list[tuple[ObservedNode, str]]:
    """Nodes for each group of `pool` (group name -> how many), labelled to match its selector; with their
    racks."""
    out = []
    for group in pool.node_groups:
        resource, cards = group.accelerator.resource, group.accelerator.cards_per_node
        for i in range(counts.get(group.name, 0)):
            rack = f"{group.name}-r{i // nodes_per_rack}"
            labels = {**group.node_selector, "rack": rack, "kubernetes.io/hostname": f"{group.name}-{i:04d}"}
            out.append((ObservedNode(f"{group.name}-{i:04d}", labels, {resource: cards}, {resource: cards},
                                     {"Ready": "True"}), rack))
    return out


@dataclass
class JobRecord:
    """What the simulation keeps of a job besides its observed state."""

    trace: JobTrace
    timeline: Timeline = field(default_factory=Timeline)
    run: Run | None = None
    trained_attempt: int = 0
    """The latest attempt that trained: an attempt trains once (a crashed rank does not come back)."""
    full_power: float = 0.0
    pod_born: dict[str, float] = field(default_factory=dict)
    """pod name -> when it was created (its cards are held from then until it is gone)."""
    first_placed: float | None = None
    finished: float | None = None
    phase: str = ""
    restarts: dict[str, int] = field(default_factory=dict)
    """end reason of an attempt -> how many attempts ended so (successes excluded)."""


class Changes(dict):
    """A dict that remembers which keys were set or deleted since the last `take`: the simulation looks again
    only at what changed (as a watch delivers only changed objects)."""

    def __init__(self) -> None:
        super().__init__()
        self.changed: set = set()

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.changed.add(key)

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        self.changed.add(key)

    def take(self) -> set:
        out, self.changed = self.changed, set()
        return out

    def _unrecorded(self, *_: object, **__: object):
        raise TypeError("Changes records only [] assignment and del: a change made otherwise would be missed")

    pop = popitem = update = setdefault = clear = __ior__ = _unrecorded


@dataclass
class Sample:
    time: float
    used_cards: int
    free_cards: int
    waiting_jobs: int
    fragmentation_percent: float


class World:
    def __init__(self, pool: CardPoolSpec, nodes: Iterable[tuple[ObservedNode, str]], jobs: Iterable[JobTrace],
                 trainer: TrainerModel, fault_model: FaultModel | None, horizon_s: float, seed: int = 1,
                 sample_every_s: float = 3600.0,
                 scripted: Iterable[Fault] = (), queues: Mapping[str, TenantQueueSpec] | None = None):
        """`fault_model`: random faults (None: none). `scripted`: faults at given times, besides. `queues`:
        tenant queues (the jobs name theirs, JobTrace.queue), admitted by as the controller does.
        A trainer model without an interval saves at the operator's advice for each attempt, as a trainer
        using cardpool.runtime.SaveSchedule does."""
        self.pool, self.trainer, self.horizon = pool, trainer, horizon_s
        self.tenants = tenants(queues) if queues else None
        self.t = 0.0
        self.nodes: Changes = Changes()
        """name -> node."""
        self.racks: dict[str, str] = {}
        for node, rack in nodes:
            self.nodes[node.name] = node
            self.racks[node.name] = rack
        self.jobs: Changes = Changes()
        """key -> job."""
        self.records: dict[str, JobRecord] = {}
        self.pool_status: CardPoolStatus | None = None
        self.memo: PlanMemo | None = PlanMemo()
        """Plans and figures of earlier passes the pool pass reuses (None: every pass decides from scratch)."""
        self.down: set[str] = set()
        """Nodes stopped by a fault (their kubelet does not act), NotReady or not yet."""
        self.faults_seen: list[Fault] = []
        self.samples: list[Sample] = []
        self.passes = 0
        self._events: list[tuple[float, int, str, object]] = []
        self._seq = itertools.count()
        self._tokens = itertools.count(1)
        self._rechecks: set[float] = set()
        self._classified: tuple[list[ObservedNode], list] | None = None
        self._drains: tuple[list[ObservedNode], DrainPlan] | None = None
        self._resource = {g.name: g.accelerator.resource for g in pool.node_groups}
        self._rates = {g.name: g.accelerator.relative_throughput for g in pool.node_groups}
        self._model_rates = {g.accelerator.model: g.accelerator.relative_throughput for g in pool.node_groups}
        for trace in jobs:
            self._at(trace.arrival_s, "arrive", trace)
        self.fault_model = fault_model or FaultModel()
        if fault_model is not None:
            cards = [(n.name, sum(n.capacity.values()), self.racks[n.name]) for n in self.nodes.values()]
            for fault in faults(fault_model, cards, horizon_s, seed):
                self._at(fault.time, "fault", fault)
        for fault in scripted:
            self._at(fault.time, "fault", fault)
        self._sample_every = sample_every_s
        self._at(0.0, "sample", None)

    # -- the clock ----------------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.t)

    def _at(self, t: float, kind: str, what: object) -> None:
        heapq.heappush(self._events, (t, next(self._seq), kind, what))

    def run(self, until_s: float | None = None) -> World:
        """Advance to `until_s` (default: the horizon), or until nothing is left to happen."""
        end = self.horizon if until_s is None else min(until_s, self.horizon)
        while self._events and self._events[0][0] <= end:
            self.t = self._events[0][0]
            quiet = True
            while self._events and self._events[0][0] <= self.t:
                _, _, kind, what = heapq.heappop(self._events)
                getattr(self, f"_on_{kind}")(what)
                quiet = quiet and kind in UNSEEN
            if not quiet:
                self._settle()
        self.t = max(self.t, end) if not self._events or self._events[0][0] > end else self.t
        return self

    # -- the operator's passes ------------------------------------------------------------------------------

    def _settle(self) -> None:
        for _ in range(PASSES_PER_INSTANT):
            if not self._pass():
                return
        raise RuntimeError(f"t={self.t:.0f}s: the pool still acts after {PASSES_PER_INSTANT} passes at one instant")

    def _pass(self) -> bool:
        """One pass of the operator over the pool, its effects carried out. Returns whether it acted."""
        self.passes += 1
        now = self.now
        nodes, classified = self._members()
        kept = self._drains
        if kept is not None and kept[0] is nodes and not kept[1].actions and (
                kept[1].recheck_at is None or now < kept[1].recheck_at):
            drains = kept[1]  # the same nodes before its recheck time: plan_drains would say the same
        else:
            drains = plan_drains({POOL: self.pool}, nodes, now, {POOL: classified})
            self._drains = (nodes, drains)
        for action in drains.actions:
            self._node_action(action.node, action.kind, action.record)
        if drains.actions:
            nodes, classified = self._members()
        jobs = list(self.jobs.values())
        held = {name: hold for name, hold in drains.held.items() if hold.pool == POOL}
        plan = reconcile_pool(self.pool, 1, self.pool_status, nodes, jobs, now, classified=classified, held=held,
                              memo=self.memo,
                              admission=admission(self.tenants, jobs) if self.tenants is not None else None)
        acted = bool(drains.actions) or plan.status != self.pool_status
        self.pool_status = plan.status
        for job, job_plan in zip(jobs, plan.jobs, strict=True):
            if job_plan.acts:
                acted = True
                self._apply(job, job_plan)
        for due in (plan.recheck_at, drains.recheck_at):
            if due is not None:
                self._recheck((due - EPOCH).total_seconds())
        self._trainers()
        return acted

    def _members(self) -> tuple[list[ObservedNode], list]:
        """The nodes and the pool's members, classified again only when a node changed (every pass of the
        operator does it; the outcome is the same, the simulation is faster)."""
        known = self._classified
        if known is None or self.nodes.take():
            nodes = list(self.nodes.values())
            known = self._classified = (nodes, members(self.pool, nodes, self.now))
        return known[0], known[1]

    def _recheck(self, t: float) -> None:
        t = max(t, self.t)
        if t not in self._rechecks and t <= self.horizon:
            self._rechecks.add(t)
            self._at(t, "recheck", t)

    def _node_action(self, name: str, kind: str, record) -> None:
        node = self.nodes[name]
        taints = tuple(t for t in node.taints if t[0] != TAINT_DRAIN)
        if kind == "Return":
            cordoned = node.drain is not None and node.drain.cordoned
            self.nodes[name] = replace(node, drain=None, taints=taints,
                                       unschedulable=False if cordoned else node.unschedulable)
            return
        record = replace(record, others_evicted=True)  # no other workloads run in the simulation
        self.nodes[name] = replace(node, drain=record, taints=(*taints, (TAINT_DRAIN, "NoSchedule", record.reason)),
                                   unschedulable=node.unschedulable or (kind == "Drain" and record.cordoned))

    def _apply(self, job: ObservedJob, plan: JobPlan) -> None:
        key, rec = job.key, self.records[job.key]
        status = plan.status if plan.status_changed else job.status
        pods = {p.name: p for p in job.pods}
        planned_stop = _planned_stop(status, self.now)
        ending: dict[float, list[str]] = {}
        for name in plan.delete:
            pod = pods.get(name)
            if pod is None or pod.deleting:
                continue
            pods[name] = replace(pod, deleting=True, deleting_since=self.now, ready=False)
            if pod.node not in self.down:
                save = self.trainer.save_s if planned_stop and pod.attempt == planned_stop else 0.0
                ending.setdefault(self.t + self.trainer.terminate_s + save, []).append(name)
        for t, names in ending.items():
            self._at(t, "pods_gone", (key, frozenset(names)))
        for name in plan.force_delete:
            if pods.pop(name, None) is not None:
                self._gone(rec, name)
        created = []
        for slot in plan.create:
            name = pod_name(job.name, status.attempt, slot.rank)
            if name in pods:
                continue
            pods[name] = ObservedPod(name, NAMESPACE, job.name, status.attempt, slot.rank, slot.node, "Pending",
                                     cards=job.spec.workers.cards_per_worker, pool=POOL)
            rec.pod_born[name] = self.t
            created.append(name)
        if created:
            self._at(self.t + self.trainer.pod_start_s, "pods_running", (key, frozenset(created)))
        checkpoints = job.checkpoints
        if plan.verdicts:
            verdicts = {v.checkpoint: "True" if v.accepted else "False" for v in plan.verdicts}
            checkpoints = tuple(replace(c, verdict=verdicts[c.name]) if c.name in verdicts else c
                                for c in checkpoints)
        if status.history and rec.first_placed is None:
            rec.first_placed = (status.history[0].start_time - EPOCH).total_seconds()
            rec.timeline.first_start = rec.first_placed
        if status.phase in (Phase.SUCCEEDED, Phase.FAILED) and rec.finished is None:
            rec.finished, rec.phase = self.t, status.phase.value
            rec.timeline.end = self.t
        for entry in status.history:
            if entry.end_time is not None and entry.end_time == self.now and entry.end_reason not in (
                    None, "Succeeded", "Failed") and (plan.status_changed and _newly_ended(job.status, entry)):
                rec.restarts[entry.end_reason] = rec.restarts.get(entry.end_reason, 0) + 1
        if plan.delete_job:
            for name in pods:
                self._gone(rec, name)
            del self.jobs[key]
            return
        self.jobs[key] = replace(job, status=status, pods=tuple(pods.values()), checkpoints=checkpoints)

    def _gone(self, rec: JobRecord, name: str) -> None:
        born = rec.pod_born.pop(name, None)
        if born is not None:
            cards = rec.trace.cards_per_worker
            rec.timeline.held_card_s += (self.t - born) * cards

    # -- the trainers -------------------------------------------------------------------------------------------

    def _trainers(self) -> None:
        """Start a run where an attempt has all its pods running; stop one whose attempt ended. Only a job
        that changed can need either (a fault's stop leaves what is left to do unchanged)."""
        changed = self.jobs.take()
        if not changed:
            return
        for key, job in self.jobs.items():
            if key not in changed:
                continue
            rec = self.records[key]
            run, status = rec.run, job.status
            current = [p for p in job.pods if p.attempt == status.attempt and not p.deleting]
            ok = status.phase == Phase.RUNNING and current and all(p.phase == "Running" for p in current)
            if run is not None and (run.attempt != status.attempt or not ok):
                self._stop(key, planned=_planned_stop(status, self.now) == run.attempt)
            elif run is None and ok and rec.finished is None and status.attempt > rec.trained_attempt:
                self._start(key, job, rec)

    def _start(self, key: str, job: ObservedJob, rec: JobRecord) -> None:
        status = job.status
        entry = status.history[-1] if status.history else None
        resume = float(entry.resumed_from_step or 0) if entry is not None else 0.0
        previous = status.history[-2].end_reason if len(status.history) > 1 else "start"
        rec.timeline.resume(resume, previous or "unknown")
        power = sum(gp.workers * job.spec.workers.cards_per_worker * gp.relative_throughput
                    for gp in status.placement)
        cards = sum(gp.workers for gp in status.placement) * job.spec.workers.cards_per_worker
        rate = self.trainer.rate(rec.trace.step_s, rec.full_power, power)
        interval = self.trainer.interval_s
        if interval is None:
            advised = entry.checkpoint_interval_seconds if entry is not None else None
            interval = float(advised) if advised is not None else self.trainer.default_interval_s
        run = Run(status.attempt, rate, cards, resume, self.t + self.trainer.restart_s, interval,
                  self.trainer.save_s, next(self._tokens))
        rec.run, rec.trained_attempt = run, status.attempt
        self._schedule_run(key, run, rec.trace.steps)

    def _schedule_run(self, key: str, run: Run, steps: int) -> None:
        if run.rate <= 0:
            return
        done = run.since + (steps - run.step) / run.rate
        save = run.since + run.interval_s
        if done <= save:
            self._at(done, "done", (key, run.token))
        else:
            self._at(save, "save", (key, run.token))

    def _stop(self, key: str, planned: bool) -> None:
        """The run ends now; a planned stop saves first (reported as the stopped attempt's Checkpoint)."""
        rec = self.records[key]
        run = rec.run
        if run is None:
            return
        rec.run = None
        if planned:  # the ranks finish their step and save it
            step = run.saved_step(self.t)
            rec.timeline.trained(run.step, step, run.seconds_to(step), run.cards)
            if step > 0:
                self._at(self.t + run.save_s, "checkpoint", (key, run.attempt, step, run.cards))
        else:
            rec.timeline.trained(run.step, run.step_at(self.t), max(self.t - run.since, 0.0), run.cards)

    def _run_of(self, key: str, token: int) -> Run | None:
        rec = self.records.get(key)
        return rec.run if rec is not None and rec.run is not None and rec.run.token == token else None

    def _on_save(self, what: object) -> None:
        key, token = what  # type: ignore[misc]
        run = self._run_of(key, token)
        if run is None:
            return
        rec = self.records[key]
        step = run.saved_step(self.t)
        rec.timeline.trained(run.step, step, run.seconds_to(step), run.cards)
        self._report(key, run.attempt, step, run.cards)
        run.step, run.since, run.token = step, self.t + run.save_s, next(self._tokens)
        self._schedule_run(key, run, rec.trace.steps)

    def _on_done(self, what: object) -> None:
        key, token = what  # type: ignore[misc]
        run = self._run_of(key, token)
        if run is None:
            return
        rec = self.records[key]
        rec.timeline.trained(run.step, float(rec.trace.steps), self.t - run.since, run.cards)
        rec.run = None
        job = self.jobs[key]
        pods = tuple(replace(p, phase="Succeeded", ready=False, exit_code=0, finished_at=self.now)
                     if p.attempt == run.attempt and not p.deleting else p for p in job.pods)
        self.jobs[key] = replace(job, pods=pods)

    def _on_checkpoint(self, what: object) -> None:
        key, attempt, step, cards = what  # type: ignore[misc]
        if key in self.jobs:
            self._report(key, attempt, step, cards)

    def _report(self, key: str, attempt: int, step: float, cards: int) -> None:
        """As cardpool.runtime does: rank 0 reports the step, then the Checkpoint is created."""
        job = self.jobs[key]
        saved = int(step)
        progress = ObservedProgress(saved, self.records[key].trace.steps, self.now)
        pods = tuple(replace(p, progress=progress) if p.attempt == attempt and p.rank == 0 else p for p in job.pods)
        checkpoint = ObservedCheckpoint(f"{job.name}-a{attempt}-s{saved}", job.name, attempt, saved,
                                        f"{job.spec.checkpoint.uri}/{saved}" if job.spec.checkpoint else "",
                                        max(cards, 1), True, self.now, owner_uid=job.uid,
                                        save_seconds=self.trainer.save_s)
        checkpoints = (*job.checkpoints, checkpoint)[-KEEP_CHECKPOINTS:]
        self.jobs[key] = replace(job, pods=pods, checkpoints=checkpoints)

    # -- the rest of the world ------------------------------------------------------------------------------

    def _on_arrive(self, trace: JobTrace) -> None:
        spec = job_spec(trace, self.trainer)
        key = f"{NAMESPACE}/{trace.name}"
        self.jobs[key] = ObservedJob(NAMESPACE, trace.name, f"uid-{trace.name}", 1, self.now, spec,
                                     TrainingJobStatus(), shape=pod_shape(spec))
        best = max(self._model_rates.get(m, 1.0) for m in trace.accelerators)
        self.records[key] = JobRecord(trace, full_power=trace.max_workers * trace.cards_per_worker * best)

    def _on_recheck(self, t: object) -> None:
        self._rechecks.discard(t)  # type: ignore[arg-type]

    def _on_sample(self, _: object) -> None:
        status = self.pool_status
        used = sum(g.allocated_cards for g in status.groups) if status is not None else 0
        free = status.free_cards if status is not None else 0
        waiting = sum(1 for j in self.jobs.values() if j.status.phase in (None, Phase.QUEUED, Phase.RESTARTING))
        frag = float(status.fragmentation_percent) if status is not None else 0.0
        self.samples.append(Sample(self.t, used, free, waiting, frag))
        if self.t + self._sample_every <= self.horizon:
            self._at(self.t + self._sample_every, "sample", None)

    def _on_pods_running(self, what: object) -> None:
        key, names = what  # type: ignore[misc]
        self._edit_pods(key, names, lambda p: replace(p, phase="Running", ready=True)
                        if p.phase == "Pending" and not p.deleting and p.node not in self.down else p)

    def _on_pods_gone(self, what: object) -> None:
        key, names = what  # type: ignore[misc]
        job = self.jobs.get(key)
        if job is None:
            return
        gone = [p.name for p in job.pods if p.name in names]
        if gone:
            self.jobs[key] = replace(job, pods=tuple(p for p in job.pods if p.name not in names))
            for name in gone:
                self._gone(self.records[key], name)

    def _edit_pods(self, key: str, names: frozenset[str], edit: Callable[[ObservedPod], ObservedPod]) -> None:
        job = self.jobs.get(key)
        if job is None:
            return
        self.jobs[key] = replace(job, pods=tuple(edit(p) if p.name in names else p for p in job.pods))

    def _pods_on(self, nodes: set[str]) -> list[tuple[str, ObservedPod]]:
        return [(key, p) for key, job in self.jobs.items() for p in job.pods if p.node in nodes]

    def _on_fault(self, fault: Fault) -> None:
        self.faults_seen.append(fault)
        struck = set(fault.nodes)
        if fault.kind == "software":
            victims = [(key, p) for key, p in self._pods_on(struck) if p.phase == "Running" and not p.deleting]
            if victims:
                key, pod = victims[0]
                self._stop(key, planned=False)
                self._edit_pods(key, frozenset({pod.name}), lambda p: replace(
                    p, phase="Failed", ready=False, exit_code=1, reason="Error", finished_at=self.now))
            return
        fresh = struck - self.down if fault.kind == "node" else struck
        for key, pod in self._pods_on(fresh):
            if pod.phase == "Running" and not pod.deleting and self.records[key].run is not None:
                self._stop(key, planned=False)  # a rank is gone: the collective stops at once
        if fault.kind == "node":
            self.down |= fresh
            for name in fresh:
                self._at(fault.time + self.fault_model.detect_s, "detect", name)
        else:
            for name in fresh:
                node = self.nodes[name]
                resource = next(iter(node.allocatable))
                self.nodes[name] = replace(node, allocatable={resource: max(node.allocatable[resource] - 1, 0)})
        if fault.repair_at is not None and fault.repair_at <= self.horizon:
            self._at(fault.repair_at, "repair", (fault.kind, tuple(sorted(fresh))))

    def _on_detect(self, name: object) -> None:
        if name in self.down:
            node = self.nodes[name]  # type: ignore[index]
            self.nodes[name] = replace(node, conditions={**node.conditions, "Ready": "False"})  # type: ignore[index]

    def _on_repair(self, what: object) -> None:
        kind, names = what  # type: ignore[misc]
        for name in names:
            node = self.nodes[name]
            if kind == "node":
                self.down.discard(name)
                self.nodes[name] = replace(node, conditions={**node.conditions, "Ready": "True"})
                ending: dict[str, set[str]] = {}
                for key, pod in self._pods_on({name}):  # its kubelet is back and ends what was deleted
                    if pod.deleting:
                        ending.setdefault(key, set()).add(pod.name)
                for key, pods in ending.items():
                    self._at(self.t + self.trainer.terminate_s, "pods_gone", (key, frozenset(pods)))
            else:
                resource = next(iter(node.capacity))
                self.nodes[name] = replace(node, allocatable={resource: node.capacity[resource]})

    # -- figures ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Account for what still holds cards or trains at the end."""
        for key, rec in self.records.items():
            if rec.run is not None:
                run = rec.run
                step = run.step_at(self.t)
                rec.timeline.trained(run.step, step, max(self.t - run.since, 0.0), run.cards)
                rec.run = None
            for name in list(rec.pod_born):
                self._gone(rec, name)
            job = self.jobs.get(key)
            if job is not None and rec.finished is None:
                rec.phase = (job.status.phase or Phase.QUEUED).value


def _planned_stop(status: TrainingJobStatus, now: datetime) -> int | None:
    """The attempt whose planned stop (grow, move) the status records now, if any: its ranks save first."""
    if status.history:
        last = status.history[-1]
        if last.planned and last.end_time == now:
            return last.attempt
    return None


def _newly_ended(before: TrainingJobStatus, entry) -> bool:
    """Whether `entry` of the new status ended in this plan (not already ended in `before`)."""
    return not any(e.attempt == entry.attempt and e.end_time is not None for e in before.history)
