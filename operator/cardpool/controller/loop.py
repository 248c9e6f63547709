"""The controller: a pass decides from the observed world and hands the effects to the applier; it never waits
for them.

A pass (one thread at a time) takes a copy of the indexes and, for every pool, runs the node pass (drains)
and the pool pass (cardpool.core) over it. Jobs with effects in flight, or written but not yet seen in the
watch, are settling (see expectations): the core does not decide them, and reads the status they were given.
Every other job's plan becomes a `Work` for the applier: the status write first (the job's memory: its
attempt and placement are recorded before any of its pods exists), then deletions, events, checkpoint
verdicts and the attempt's Service and ConfigMap, then its pods, all at once. A pool's status that records
defragmentation moves is written before any moved job stops, so a crash in between loses no move.

The pass runs when something it reads changed or a work it handed over finished, when a time-based rule it
looked at comes due, when a settling job could settle by time, and at least every `resync` seconds (a safety
net, as controller-runtime's SyncPeriod: with nothing changing and nothing due, a pass would decide nothing
new); and no more often than every `min_interval` seconds, so a burst of watch events costs a few passes, not
one per event. A plan memo makes the pass's cost grow with what changed (see cardpool.core.pool.PlanMemo).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from kubernetes.client.exceptions import ApiException

from cardpool.api.cardpool import CardPoolSpec, CardPoolStatus, Disruption
from cardpool.core.attempts import pod_name
from cardpool.core.candidates import needs_placement
from cardpool.core.checkpoints import judge_orphans
from cardpool.core.clock import Deadlines
from cardpool.core.drain import Member, classify_pool, plan_drains
from cardpool.core.lifecycle import plan_missing_pool
from cardpool.core.observed import (
    DrainRecord,
    ObservedBudget,
    ObservedCheckpoint,
    ObservedJob,
    ObservedNode,
    ObservedPod,
    PodRefusal,
)
from cardpool.core.plan import JobPlan
from cardpool.core.pool import PlanMemo, PoolPlan, reconcile_pool
from cardpool.core.quota import QueueAdmission
from cardpool.kube import builders, effects, refusals
from cardpool.kube import nodes as node_effects
from cardpool.kube.client import Kube
from cardpool.kube.refusals import Refused

from . import metrics, podchecks
from .applier import Applier, Fenced, Priority, Task, Work
from .expectations import Expectations, describe
from .podchecks import PodChecks
from .queues import TenantQueues
from .throttle import Throttle
from .work import DELETE_PRIORITY, create_priority, status_priority

log = logging.getLogger("cardpool.controller")
NODE_RETRY_S = 10.0
"""A node acted on is left alone this long unless the watch shows it changed (its action re-reads it anyway)."""
TERMINATING_HOLD_S = 30.0
"""A namespace found being deleted: its jobs are not acted on for this long (they are going away with it)."""


@contextlib.contextmanager
def _refused_as(what: str) -> Iterator[None]:
    """A refusal of the user's making (see cardpool.kube.refusals) becomes Refused, which the job's status reports."""
    try:
        yield
    except ApiException as exc:
        refusal = refusals.pod_refusal(exc, what)
        if refusal is None:
            raise
        raise Refused(refusal) from exc


def _shows(observed: DrainRecord | None, written: DrainRecord | None) -> bool:
    """Whether the watch shows the drain record written (or a later one that only says its pods are gone)."""
    if observed is None or written is None:
        return observed is written
    return observed == written or replace(observed, others_evicted=written.others_evicted) == written


class _Stale(Exception):
    """A node action found the node changed since it was decided on: decide again."""


def _changed_or_stale(changed: bool) -> None:
    if not changed:
        raise _Stale()


@dataclass(frozen=True)
class Observations:
    """One consistent copy of what the watches hold."""

    nodes: list[ObservedNode]
    pods: Mapping[tuple[str, str], tuple[ObservedPod, ...]]
    jobs: Mapping[str, list[ObservedJob]]
    """pool name -> its jobs (spec and status parsed once per version, without pods and checkpoints)."""
    pools: Mapping[str, dict]
    """name -> the CardPool as the API returns it."""
    checkpoints: Mapping[tuple[str, str], tuple[ObservedCheckpoint, ...]] = field(default_factory=dict)
    budgets: tuple[ObservedBudget, ...] = ()
    foreign: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """node -> card resource -> cards held by pods cardpool does not manage."""
    queues: Mapping[str, dict] = field(default_factory=dict)
    """name -> the TenantQueue as the API returns it."""


@dataclass
class _Pool:
    version: str
    spec: CardPoolSpec
    status: CardPoolStatus | None
    generation: int


class Controller:
    def __init__(self, kube: Kube, leading: Callable[[], bool] = lambda: True, workers: int = 32,
                 resync: float = 60.0, min_interval: float = 0.1, expectation_timeout: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, wake: Callable[[], None] = lambda: None):
        self.kube = kube
        self.leading = leading
        self.resync, self.min_interval = resync, min_interval
        self.clock = clock
        # a finished work wakes the loop: its object's last watch event may have come while it was in flight
        # (the pass then left the object settling), and no later event would come to decide it again
        self.applier = Applier(workers, fence=leading, finished=lambda: self.changed())
        self.expectations = Expectations(timeout=expectation_timeout)
        self._wake = wake
        self._dirty = threading.Event()
        self._dirty.set()
        self._last_pass = float("-inf")
        self._next_due: float | None = None
        self._memos: dict[str, PlanMemo] = {}
        self._pools: dict[str, _Pool] = {}
        self._nodes_acted: dict[str, tuple[ObservedNode | None, float]] = {}
        self._own_drains: dict[str, tuple[DrainRecord | None, float | None]] = {}
        """node -> the drain record the node pass wrote or is writing (None: removed), and when the write ended
        (None while it runs), until the watch shows it: the drain cap counts drains not yet seen."""
        self._node_due: datetime | None = None
        self.was_leading = False
        self._orphans: set[str] = set()
        """Checkpoints of missing jobs whose verdict was written but may not be in the watch yet."""
        self.checks = PodChecks()
        self.queues = TenantQueues(self.applier, self.expectations,
                                   lambda name, status: effects.write_queue_status(self.kube, name, status), clock)
        self.throttle = Throttle()
        self._terminating: dict[str, float] = {}
        """namespace -> when it was found being deleted (monotonic)."""

    # -- when to run ------------------------------------------------------------------------------------

    def changed(self) -> None:
        """Something a pass reads changed (called by the watches' handlers, from any thread)."""
        self._dirty.set()
        self._wake()

    def sleep_for(self) -> float:
        """Seconds until the next pass is due with nothing changing."""
        now = self.clock()
        due = self._last_pass + self.resync
        if self._next_due is not None:
            due = min(due, self._next_due)
        if self._dirty.is_set():
            due = min(due, self._last_pass + self.min_interval)
        return max(due - now, 0.0)

    def due(self) -> bool:
        now = self.clock()
        if now - self._last_pass < self.min_interval:
            return False
        return self._dirty.is_set() or now - self._last_pass >= self.resync or (
            self._next_due is not None and now >= self._next_due)

    # -- the pass -----------------------------------------------------------------------------------------

    def lost_leadership(self) -> None:
        """Forget everything decided and queued: the next leader (maybe this replica again) starts afresh."""
        dropped = self.applier.drop_queued()
        self.expectations.forget()
        self._memos.clear()
        self._nodes_acted.clear()
        self._own_drains.clear()
        self.checks.forget()
        self.queues.forget()
        metrics.keep_claims(set())
        self._dirty.set()
        if self.was_leading:
            log.warning("leadership lost: %d queued API calls dropped", dropped)
        self.was_leading = False

    def observing(self) -> None:
        """Call right before copying the indexes for a pass: a change from now on makes another pass. (Cleared
        any later, a change that arrived between the copy and the clear would wait for the resync.)"""
        self._dirty.clear()

    def run_pass(self, observed: Observations, now: datetime | None = None) -> None:
        """Decide everything from `observed` and hand the effects over. Call with a fresh copy of the indexes,
        taken right after `observing()`."""
        if not self.leading():
            self.lost_leadership()
            return
        self.was_leading = True
        started = time.perf_counter()
        now = now or datetime.now(UTC)
        mono = self.clock()
        self._last_pass = mono
        pools = self._parse_pools(observed.pools)
        raw = {n.name: n for n in observed.nodes}
        observed = replace(observed, nodes=self._with_own_drains(observed.nodes, mono))
        classified, disruptions = {}, {}
        for name, pool in pools.items():  # the disruption's memory is the pool's status (or the write awaited)
            previous = self._pool_previous(name, pool, mono)[1]
            classified[name], disruptions[name] = classify_pool(
                pool.spec, observed.nodes, now, previous.disruption if previous else None)
        next_due: list[float] = []
        try:  # nodes first: one writer for every node's drain, whichever pools select it
            held = self._node_pass(pools, classified, observed.nodes, raw, now, mono)
            if self._node_due is not None:
                next_due.append(mono + max((self._node_due - now).total_seconds(), 0.0))
        except Exception:
            log.exception("the node pass failed")
            held = {}
        named = any(j.spec.queue for jobs in observed.jobs.values() for j in jobs)
        latest = self._decided_jobs(observed) if self.queues.observe(observed.queues, named) is not None else {}
        for name in sorted(pools):
            try:
                plan = self._pool_pass(name, pools[name], observed, classified[name], disruptions[name],
                                       held.get(name, {}), now, mono, self.queues.admission(latest.values()))
                for job_plan in plan.jobs if latest else ():  # the next pool's admission counts these
                    if job_plan.status_changed and (job := latest.get(job_plan.job)) is not None:
                        latest[job_plan.job] = replace(job, status=job_plan.status)
                if plan.recheck_at is not None:
                    next_due.append(mono + max((plan.recheck_at - now).total_seconds(), 0.0))
                metrics.record_pass(name, plan)
            except Exception:  # one pool's failure must not stall the others
                log.exception("pass of pool %s failed", name)
                metrics.count_error(name)
        self._missing_pools(observed, pools, now, mono)
        try:
            self.queues.write_statuses(latest.values(), now, mono)
        except Exception:
            log.exception("the tenant queues' status failed")
        if (due := self._orphan_checkpoints(observed, now, mono)) is not None:
            next_due.append(due)
        self._forget_gone(observed)
        if (check := self.expectations.next_check(mono)) is not None:
            next_due.append(check)
        if (check := self.checks.next_due(mono)) is not None:
            next_due.append(check)
        for namespace, since in list(self._terminating.items()):
            if mono - since >= TERMINATING_HOLD_S:
                del self._terminating[namespace]
            else:
                next_due.append(since + TERMINATING_HOLD_S)
        for name, (_, acted) in list(self._nodes_acted.items()):  # e.g. evictions a PodDisruptionBudget refused
            if mono - acted >= NODE_RETRY_S:
                del self._nodes_acted[name]
            else:
                next_due.append(acted + NODE_RETRY_S)
        self._next_due = min(next_due) if next_due else None
        metrics.PASS_DURATION.observe(time.perf_counter() - started)

    def _parse_pools(self, bodies: Mapping[str, dict]) -> dict[str, _Pool]:
        """Pools parsed once per resourceVersion, the spec once per generation: a status write makes a new
        resourceVersion, not a new spec, and keeping the spec's objects keeps the pass's caches (PlanMemo)."""
        out = {}
        for name, body in bodies.items():
            meta = body["metadata"]
            version, generation = meta.get("resourceVersion", ""), meta.get("generation") or 0
            known = self._pools.get(name)
            if known is None or known.version != version or not version:
                status = CardPoolStatus.model_validate(body["status"]) if body.get("status") else None
                same_spec = known is not None and generation and known.generation == generation
                spec = known.spec if same_spec else CardPoolSpec.model_validate(body["spec"])
                known = _Pool(version, spec, status, generation)
            out[name] = known
        self._pools = out
        return out

    def _with_own_drains(self, nodes: list[ObservedNode], mono: float) -> list[ObservedNode]:
        """The nodes with the drain records the node pass wrote and the watch does not show yet. Without them a
        pass deciding on a lagging view would not count a drain it made and drain past the cap."""
        if not self._own_drains:
            return nodes
        out = []
        for node in nodes:
            own = self._own_drains.get(node.name)
            if own is not None:
                record, written = own
                if _shows(node.drain, record):  # pop: an applier thread may have dropped it meanwhile
                    self._own_drains.pop(node.name, None)
                elif written is not None and mono - written >= self.expectations.timeout:
                    log.warning("node %s: its drain record was not seen in the watch %.0f s after it was written; "
                                "deciding from what is observed", node.name, mono - written)
                    self._own_drains.pop(node.name, None)
                else:
                    node = replace(node, drain=record)
            out.append(node)
        return out

    def _node_pass(self, pools: dict[str, _Pool], classified: dict[str, list[Member]], nodes: list[ObservedNode],
                   raw: Mapping[str, ObservedNode], now: datetime, mono: float) -> dict[str, dict]:
        """Drains and returns, each node's action as a work of its own. Returns each pool's held nodes. `nodes`
        carry the node pass's own drain records; `raw` is what the watch shows (a node acted on is left alone
        until it changes there)."""
        plan = plan_drains({n: p.spec for n, p in pools.items()}, nodes, now, classified)
        self._node_due = plan.recheck_at
        by_name = {n.name: n for n in nodes}
        events: dict[str, list] = {}
        for event in plan.events:
            events.setdefault(event.node, []).append(event)
        for action in plan.actions:
            node = by_name.get(action.node)
            if self._node_busy(action.node, raw.get(action.node), mono):
                continue
            decided_on = node.drain if node is not None else None
            self._submit_node(action.node, raw.get(action.node), mono, Task(
                f"{action.kind.lower()} node {action.node}", Priority.URGENT,
                lambda a=action, d=decided_on: _changed_or_stale(
                    node_effects.apply_action(self.kube, a, d, events.get(a.node, []), now))), action.record)
        acted = {a.node for a in plan.actions}
        for node in nodes:  # drained nodes whose other pods have not all gone yet
            record = node.drain
            if record is None or record.others_evicted or node.name in acted or self._node_busy(
                    node.name, raw.get(node.name), mono):
                continue
            self._submit_node(node.name, raw.get(node.name), mono, Task(
                f"evict the other pods of node {node.name}", Priority.NORMAL,
                lambda n=node.name, r=record: node_effects.finish_eviction(self.kube, n, r)))
        held: dict[str, dict] = {}
        for node, hold in plan.held.items():
            held.setdefault(hold.pool, {})[node] = hold
        return held

    def _node_busy(self, name: str, node: ObservedNode | None, mono: float) -> bool:
        if self.applier.in_flight(f"node:{name}"):
            return True
        acted = self._nodes_acted.get(name)
        return acted is not None and acted[0] is node and mono - acted[1] < NODE_RETRY_S

    def _submit_node(self, name: str, node: ObservedNode | None, mono: float, task: Task,
                     writes: DrainRecord | bool | None = False) -> None:
        """`writes`: the drain record the task writes (None: it removes it); False: it writes none."""
        self._nodes_acted[name] = (node, mono)
        if writes is not False:
            self._own_drains[name] = (writes, None)

        def done(error: BaseException | None) -> None:
            if error is None:
                if (own := self._own_drains.get(name)) is not None and own[0] == writes:
                    self._own_drains[name] = (writes, self.clock())  # the watch's lag counts from here
                return
            if writes is not False:
                self._own_drains.pop(name, None)  # not written (or stale): what the watch shows is the truth
            if isinstance(error, Fenced):
                return
            if not isinstance(error, _Stale):
                log.warning("%s failed: %s", task.name, describe(error))
            self._nodes_acted.pop(name, None)  # decided again on what the watch shows now

        self.applier.submit(Work(f"node:{name}", [[task]], done))

    def _decided_jobs(self, observed: Observations) -> dict[str, ObservedJob]:
        """Every job with the status last decided for it (written, or being written, but not seen yet): what the
        tenant queues' usage counts."""
        out = {}
        for jobs in observed.jobs.values():
            for job in jobs:
                written = self.expectations.overlay(job.key)
                out[job.key] = replace(job, status=written) if written is not None else job
        return out

    def _pool_previous(self, name: str, pool: _Pool, mono: float) -> tuple[bool, CardPoolStatus | None]:
        """Whether the pool's status write is still in flight or unseen, and the status to decide from: the one
        written and awaited then, else the one observed."""
        key = f"cardpool:{name}"
        settling = self.applier.in_flight(key) or not self.expectations.settled(
            key, mono, effects.version(pool.version))
        return settling, (self.expectations.overlay(key) if settling else None) or pool.status

    def _pool_pass(self, name: str, pool: _Pool, observed: Observations, classified: list[Member],
                   disruption: Disruption | None, held: dict, now: datetime, mono: float,
                   admission: QueueAdmission | None = None) -> PoolPlan:
        jobs: list[ObservedJob] = []
        settling: set[str] = set()
        refused: dict[str, PodRefusal] = {}
        busy = self.applier.busy_keys()
        group_nodes: dict[str, str] | None = None
        for job in observed.jobs.get(name, ()):
            ident = (job.namespace, job.name)
            pods = observed.pods.get(ident, ())
            job = replace(job, pods=pods, checkpoints=observed.checkpoints.get(ident, ()))
            if self._settling(job, pods, mono, busy):
                settling.add(job.key)
                if (written := self.expectations.overlay(job.key)) is not None:
                    job = replace(job, status=written)
            else:
                version = (job.uid, job.generation, pool.generation)
                state = self.checks.state(job.key, version, mono) if needs_placement(job, now) else None
                if state == podchecks.ASK:
                    if group_nodes is None:
                        group_nodes = {m.group.name: m.node.name for m in classified}
                    self._ask(job, version, name, pool.spec, group_nodes)
                if state in (podchecks.ASK, podchecks.WAIT):
                    settling.add(job.key)  # not placed before the API server said it takes its pods
                elif (refusal := self.checks.refusal(job.key, version)) is not None:
                    refused[job.key] = refusal
            jobs.append(job)
        pool_settling, previous = self._pool_previous(name, pool, mono)
        mine = {(j.namespace, j.name) for j in jobs}
        others = tuple(p for key, pods in observed.pods.items() if key not in mine for p in pods)
        plan = reconcile_pool(pool.spec, pool.generation, previous, observed.nodes, jobs, now, others,
                              observed.budgets, observed.foreign, classified, settling, held,
                              self._memos.setdefault(name, PlanMemo()), refused, disruption, admission)
        moved = set(plan.moves) if not pool_settling else set()
        chained: list[Work] = []
        for job, job_plan in zip(jobs, plan.jobs, strict=True):
            if job_plan.settling or not job_plan.acts:
                continue
            if plan.moves and job.key in plan.moves and job.key not in moved:
                continue  # its move waits until the pool's status can record it first
            work = self._job_work(job, job_plan, name, pool.spec, now, mono, pool.generation)
            if job.key in moved:
                chained.append(work)
            else:
                self.applier.submit(work)
        if not pool_settling and (plan.status != previous or plan.events or chained):
            self._submit_pool(name, pool, plan, previous, chained, now, mono)
        return plan

    def _ask(self, job: ObservedJob, version: podchecks.Version, pool_name: str, pool: CardPoolSpec,
             nodes: dict[str, str]) -> None:
        """Whether the API server takes the job's pods, asked in a dry run (see podchecks)."""
        key = job.key
        self.checks.asking(key)

        def ask() -> None:
            self.checks.record(key, version, podchecks.ask(self.kube, job, pool_name, pool, nodes), self.clock())

        def done(error: BaseException | None) -> None:
            if error is not None:
                self.checks.unanswered(key, version, self.clock())
                self._report(job, "dry run of its pods", error)
            self.changed()  # the answer decides the job's placement: wake the loop, do not wait for the resync
        priority = Priority.URGENT if job.status.attempt > 0 else Priority.NORMAL
        self.applier.submit(Work(key, [[Task(f"dry run of the pods of {key}", priority, ask)]], done))

    def _report(self, job: ObservedJob, what: str, error: BaseException) -> None:
        """One line per job and cause a minute; expected answers (the namespace is being deleted, the job is gone)
        are states, noted once, never warnings."""
        if isinstance(error, Fenced):
            return
        if refusals.namespace_terminating(error):
            self._terminating.setdefault(job.namespace, self.clock())
            if self.throttle.allow(job.namespace, "terminating"):
                log.info("namespace %s is being deleted: its jobs are left to go with it", job.namespace)
            return
        if refusals.gone(error):
            if self.throttle.allow(job.key, "gone"):
                log.info("%s: gone (%s)", job.key, what)
            return
        if isinstance(error, Refused):
            if self.throttle.allow(job.key, "refused"):
                log.info("%s: %s", job.key, error.refusal.message)
            return
        status = getattr(error, "status", None)
        if self.throttle.allow(job.key, status or type(error).__name__):
            log.warning("%s: %s failed, decided again after a backoff: %s", job.key, what, describe(error))

    def _settling(self, job: ObservedJob, pods: tuple[ObservedPod, ...], mono: float,
                  busy: frozenset[str] | None = None) -> bool:
        key = job.key
        if job.namespace in self._terminating:
            return True
        if key in busy if busy is not None else self.applier.in_flight(key):
            return True
        if not self.expectations.waiting(key):
            return False
        return not self.expectations.settled(key, mono, effects.version(job.resource_version),
                                             {p.name for p in pods}, {p.name for p in pods if p.deleting})

    def _job_work(self, job: ObservedJob, plan: JobPlan, pool_name: str, pool: CardPoolSpec | None, now: datetime,
                  mono: float, pool_generation: int = 0) -> Work:
        key, kube, ns = job.key, self.kube, job.namespace
        stages: list[list[Task]] = []
        if plan.status_changed:
            def write() -> None:
                self.expectations.wrote(key, effects.write_job_status(kube, job, plan.status))
                metrics.record_job(pool_name, job, plan, now, self.queues.queue_of(job))
            stages.append([Task(f"status of {key}", status_priority(job, plan), write)])
        after: list[Task] = []
        after += [Task(f"delete pod {ns}/{pod}", DELETE_PRIORITY, lambda p=pod: effects.delete_pod(kube, ns, p))
                  for pod in plan.delete]
        after += [Task(f"force-delete pod {ns}/{pod}", DELETE_PRIORITY,
                       lambda p=pod: effects.delete_pod(kube, ns, p, force=True)) for pod in plan.force_delete]
        after += [Task(f"event {e.reason} on {key}", Priority.NORMAL,
                       lambda e=e: effects.post_event(kube, job, e.type, e.reason, e.message, now))
                  for e in plan.events]
        after += [Task(f"verdict on checkpoint {ns}/{v.checkpoint}", Priority.NORMAL,
                       lambda v=v: effects.judge_checkpoint(kube, ns, v, now)) for v in plan.verdicts]
        if plan.delete_job:
            after.append(Task(f"delete {key} (ttlSecondsAfterFinished)", Priority.NORMAL,
                              lambda: effects.delete_job(kube, ns, job.name)))
        creates: list[Task] = []
        if plan.create and pool is not None:
            # the children are built from the status being written: the recorded placement of this attempt
            current = replace(job, status=plan.status)
            priority = create_priority(plan)

            def children() -> None:
                with _refused_as("the job's headless Service or ConfigMap"):
                    effects.ensure_service(kube, builders.service(current, pool_name))
                    effects.put_config_map(kube, builders.config_map(current, pool_name, pool))
            after.append(Task(f"service and config map of {key}", priority, children))
            for slot in plan.create:
                creates.append(Task(f"create pod {ns}/{pod_name(job.name, plan.status.attempt, slot.rank)}",
                                    priority, lambda s=slot: self._create_pod(current, pool_name, pool, s)))
            log.info("placing attempt %s of %s: %d pods", plan.status.attempt, key, len(plan.create))
        stages += [after, creates]
        self.expectations.expect(key, mono, effects.version(job.resource_version),
                                 plan.status if plan.status_changed else None,
                                 creates=[pod_name(job.name, plan.status.attempt, s.rank) for s in plan.create],
                                 deletes=plan.delete + plan.force_delete)

        def done(error: BaseException | None) -> None:
            conflict = isinstance(error, ApiException) and error.status == 409
            if isinstance(error, Refused):  # the job is rolled back and Stalled until its spec changes
                self.checks.record(key, (job.uid, job.generation, pool_generation), error.refusal, self.clock())
            elif error is not None and not conflict:
                self._report(job, "carrying out its plan", error)
                if not (isinstance(error, Fenced) or refusals.namespace_terminating(error) or refusals.gone(error)):
                    metrics.count_error(pool_name)
            if error is not None and refusals.gone(error):
                self.expectations.forget([key])  # deleted: nothing to wait for
            else:
                self.expectations.finished(key, self.clock(), error, conflict)
        return Work(key, stages, done)

    def _create_pod(self, job: ObservedJob, pool_name: str, pool: CardPoolSpec, slot) -> None:
        with _refused_as(f"the worker pod for {slot.model} (built from spec.workers.template)"):
            effects.create_pod(self.kube, builders.worker_pod(job, pool_name, pool, slot))

    def _submit_pool(self, name: str, pool: _Pool, plan: PoolPlan, previous: CardPoolStatus | None,
                     chained: list[Work], now: datetime, mono: float) -> None:
        key, kube = f"cardpool:{name}", self.kube
        stages: list[list[Task]] = []
        changed = plan.status != previous
        if changed:
            stages.append([Task(f"status of pool {name}", Priority.URGENT if chained else Priority.NORMAL,
                                lambda: self.expectations.wrote(key, effects.write_pool_status(kube, name,
                                                                                              plan.status)))])
        stages.append([Task(f"event {reason} on pool {name}", Priority.NORMAL,
                            lambda t=type_, r=reason, m=message: effects.post_pool_event(kube, name, t, r, m, now))
                       for type_, reason, message in plan.events])
        self.expectations.expect(key, mono, effects.version(pool.version), plan.status if changed else None)

        def done(error: BaseException | None) -> None:
            if error is not None and not isinstance(error, Fenced):
                log.warning("writing the status of pool %s failed: %s", name, describe(error))
            self.expectations.finished(key, self.clock(), error)
            if error is not None:  # the moves were not recorded, so none is made: decide them again
                self.expectations.forget([work.key for work in chained])
        self.applier.submit(Work(key, stages, done, then=chained))

    def _missing_pools(self, observed: Observations, pools: dict[str, _Pool], now: datetime, mono: float) -> None:
        """A job whose CardPool does not exist waits for it (no pool pass sees the job)."""
        for pool_name, jobs in observed.jobs.items():
            if pool_name in pools:
                continue
            for job in jobs:
                ident = (job.namespace, job.name)
                pods = observed.pods.get(ident, ())
                if self._settling(job, pods, mono):
                    continue
                job = replace(job, pods=pods, checkpoints=observed.checkpoints.get(ident, ()))
                plan = plan_missing_pool(job, now)
                if plan.acts:
                    self.applier.submit(self._job_work(job, plan, pool_name, None, now, mono))

    def _orphan_checkpoints(self, observed: Observations, now: datetime, mono: float) -> float | None:
        """Checkpoints naming a job that does not exist are refused (NoSuchJob), each once. Returns when the
        next one is old enough to be judged (monotonic), if one waits."""
        present = {(j.namespace, j.name) for jobs in observed.jobs.values() for j in jobs}
        clock = Deadlines(now)
        verdicts = judge_orphans(observed.checkpoints, present, clock)
        keys = [f"checkpoint/{namespace}/{verdict.checkpoint}" for namespace, verdict in verdicts]
        self._orphans &= set(keys)  # the others' verdicts are in the watch now (or they are gone)
        for key, (namespace, verdict) in zip(keys, verdicts, strict=True):
            if key in self._orphans:
                continue
            self._orphans.add(key)

            def done(error: BaseException | None, key: str = key) -> None:
                if error is not None:
                    self._orphans.discard(key)
                    if not isinstance(error, Fenced):
                        log.warning("the verdict on %s failed: %s", key, describe(error))
            self.applier.submit(Work(key, [[Task(f"verdict on checkpoint {namespace}/{verdict.checkpoint}",
                                                 Priority.NORMAL, lambda n=namespace, v=verdict:
                                                 effects.judge_checkpoint(self.kube, n, v, now))]], done))
        return None if clock.next is None else mono + max((clock.next - now).total_seconds(), 0.0)

    def _forget_gone(self, observed: Observations) -> None:
        present = {j.key for jobs in observed.jobs.values() for j in jobs}
        present |= {f"cardpool:{name}" for name in observed.pools} | self.queues.keys()
        gone = [k for k in self.expectations.open_keys() if k not in present and not self.applier.in_flight(k)]
        if gone:
            self.expectations.forget(gone)
        self.checks.keep_only(present)
        metrics.keep_claims(present)
        for name in list(self._memos):
            if name not in observed.pools:
                del self._memos[name]
        names = {n.name for n in observed.nodes}
        for node in set(self._nodes_acted) - names:
            del self._nodes_acted[node]
        for node in set(self._own_drains) - names:
            self._own_drains.pop(node, None)

    def stop(self) -> None:
        self.applier.stop()
