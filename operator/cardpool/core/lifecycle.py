"""One job's next step, decided from what is observed: its spec, its recorded status, its pods, and what the
pool's queue pass offers it. Pure: the caller supplies `now`.

The status is the job's memory. An attempt's placement is recorded in status (with the attempt number and
counters) before any of its pods is created, so a crash at any point resumes the same attempt: missing
ranks are created on their recorded nodes, and pod names (<job>-a<attempt>-<rank>) make a second pod for a
rank impossible. Pods of other attempts are deleted before a new attempt is placed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

from cardpool.api.phases import conditions_for_phase
from cardpool.api.trainingjob import (
    AttemptRecord,
    FailureAction,
    FailureRecord,
    Framework,
    GroupPlacement,
    Phase,
    PlacementMode,
    Progress,
    TrainingJobSpec,
    TrainingJobStatus,
)

from .advice import GroupRate, advise
from .checkpoints import Verdict, judge_checkpoints
from .clock import Deadlines
from .constraints import from_template
from .events import Event
from .failures import Failure, backoff, decide, first_failure, streak
from .health import LOST
from .observed import ObservedJob, ObservedPod, PodRefusal
from .placement import Placement
from .queue import Waiting
from .snapshot import JobRequest
from .split import rank_shares

RANK0_DECIDES = {Framework.PYTORCH, Framework.DEEPSPEED, Framework.MEGATRON}
_NONE: Mapping[str, str] = MappingProxyType({})


def pod_name(job: str, attempt: int, rank: int) -> str:
    return f"{job}-a{attempt}-{rank}"


HISTORY = 20
MIGRATED = "Migrated"
SPEC_CHANGED = "SpecChanged"


def pod_shape(spec: TrainingJobSpec) -> str:
    """A hash of what shapes a job's pods; an attempt records it, so a later edit is noticed."""
    shaping = spec.model_dump(mode="json", by_alias=True, include={
        "framework": True, "checkpoint": True,
        "workers": {"template": True, "overrides": True, "global_batch_size": True, "cards_per_worker": True}})
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def outdated(job: ObservedJob, status: TrainingJobStatus) -> str | None:
    """Why the live attempt no longer matches the job's spec (None: it does). Such an attempt stops and the job
    restarts with the spec as it is now: edits take effect, never silently ignored."""
    spec = job.spec
    if status.template_hash is not None and status.template_hash != (job.shape or pod_shape(spec)):
        return ("spec.workers.template, overrides, globalBatchSize, spec.framework or spec.checkpoint changed "
                "since the attempt started")
    models = list(dict.fromkeys(gp.accelerator for gp in status.placement))
    if gone := [m for m in models if m not in spec.placement.accelerators]:
        return f"spec.placement.accelerators no longer lists {', '.join(gone)}"
    if spec.placement.mode == PlacementMode.HOMOGENEOUS and len(models) > 1:
        return f"spec.placement.mode is Homogeneous; the attempt spans {'+'.join(models)}"
    size, workers = spec.workers.size, sum(gp.workers for gp in status.placement)
    if workers and not (size.min <= workers <= size.max and workers % size.unit == 0):
        return (f"the attempt's {workers} workers are outside spec.workers.size (min {size.min}, max {size.max}, "
                f"unit {size.unit})")
    if workers and size.desired is not None and workers > size.desired:
        return f"spec.workers.size.desired is {size.desired}; the attempt runs {workers} workers"
    return None
BACKOFF_BASE_S = 10
BACKOFF_MAX_S = 600


@dataclass(frozen=True, slots=True)
class RankSlot:
    """A worker to create: its rank and where the recorded placement puts it."""

    rank: int
    node: str
    group: str
    model: str


@dataclass
class JobPlan:
    job: str
    status: TrainingJobStatus
    create: list[RankSlot] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    force_delete: list[str] = field(default_factory=list)
    """Pods stuck Terminating on a lost node, removed without waiting for its kubelet."""
    events: list[Event] = field(default_factory=list)
    delete_job: bool = False
    status_changed: bool = True
    verdicts: list[Verdict] = field(default_factory=list)
    recheck_at: datetime | None = None
    """The earliest moment a time-based rule could decide otherwise on the same inputs (None: never)."""
    settling: bool = False
    """Not decided: the job's last plan is still being carried out (see cardpool.controller)."""

    @property
    def acts(self) -> bool:
        """Whether carrying out the plan calls the API at all."""
        return bool(self.status_changed or self.create or self.delete or self.force_delete or self.events
                    or self.verdicts or self.delete_job)


def blocking_pods(job: ObservedJob, faulty_nodes: Mapping[str, str] = _NONE) -> list[ObservedPod]:
    """Pods a new attempt must wait for: all, except those already deleted on a lost node (NotReady,
    Unknown, gone: its kubelet may never confirm their end; they hold no usable cards)."""
    return [p for p in job.pods if not (p.deleting and faulty_nodes.get(p.node or "") in LOST)]


def needs_placement(job: ObservedJob, now: datetime | Deadlines, faulty_nodes: Mapping[str, str] = _NONE) -> bool:
    """Whether the pool's queue should consider the job this pass."""
    clock = now if isinstance(now, Deadlines) else Deadlines(now)
    status, spec = job.status, job.spec
    if spec.suspend or status.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.STARTING, Phase.RUNNING):
        return False
    if blocking_pods(job, faulty_nodes):  # pods of an earlier attempt still hold cards (or are going away)
        return False
    if awaiting_save(spec, status, clock):
        return False
    return status.not_before is None or clock.reached(status.not_before)


def awaiting_save(spec: TrainingJobSpec, status: TrainingJobStatus, now: datetime | Deadlines) -> bool:
    """After a planned stop, the next attempt waits for the graceful save of the stopped one to be recorded
    (at most spec.checkpoint.gracefulSaveSeconds), so it resumes from where the stopped attempt was."""
    checkpointing = spec.checkpoint
    last = status.history[-1] if status.history else None
    if checkpointing is None or last is None or not last.planned or last.end_time is None:
        return False
    saved = status.last_checkpoint
    if saved is not None and saved.attempt == last.attempt and saved.time >= last.end_time:
        return False
    clock = now if isinstance(now, Deadlines) else Deadlines(now)
    return not clock.reached(last.end_time + timedelta(seconds=checkpointing.graceful_save_seconds))


def rank_nodes(status: TrainingJobStatus) -> dict[int, tuple[str, str, str]]:
    """rank -> (node, group, model) from the recorded placement."""
    out = {}
    for gp in status.placement:
        for i, node in enumerate(gp.nodes):
            out[gp.first_rank + i] = (node, gp.group, gp.accelerator)
    return out


def record(placement: Placement, group_rates: Mapping[str, float] = MappingProxyType({}),
           global_batch: int | None = None) -> list[GroupPlacement]:
    """The placement as status records it: per group, its ranks, nodes, relative throughput and share of
    the global batch."""
    groups: list[GroupPlacement] = []
    for w in placement.workers:
        if groups and groups[-1].group == w.group and groups[-1].accelerator == w.model:
            groups[-1].workers += 1
            groups[-1].nodes.append(w.node)
        else:
            groups.append(GroupPlacement(group=w.group, accelerator=w.model, workers=1, first_rank=w.rank,
                                         nodes=[w.node], relative_throughput=group_rates.get(w.group, 1.0)))
    if global_batch is not None:
        shares = rank_shares(groups, global_batch)
        for gp in groups:
            gp.batch_share = sum(shares[gp.first_rank:gp.first_rank + gp.workers])
    return groups


def request(job: ObservedJob) -> JobRequest:
    """What the queue, sizing and defragmentation see of a job."""
    spec = job.spec
    return JobRequest(
        key=job.key, cards_per_worker=spec.workers.cards_per_worker, min_workers=spec.workers.size.min,
        max_workers=spec.workers.size.max, unit=spec.workers.size.unit, desired_workers=spec.workers.size.desired,
        accelerators=tuple(spec.placement.accelerators),
        mode=spec.placement.mode, packing=spec.placement.topology_packing, priority=spec.priority,
        submitted=job.created, constraint=from_template(spec.workers.template))


def plan_job(job: ObservedJob, now: datetime, offer: Placement | None = None, waiting: Waiting | None = None,
             faulty_nodes: Mapping[str, str] = _NONE, grow_to: int | None = None,
             migrate: str | None = None, group_rates: Mapping[str, float] = MappingProxyType({}),
             stuck_after: timedelta | None = None, refusal: PodRefusal | None = None,
             fault_rates: Mapping[str, GroupRate] | None = None) -> JobPlan:
    """`faulty_nodes`: node -> fault reason. `grow_to`: the size the job could restart at now, when the pool
    pass found room for more than it runs with (see core.pool). `migrate`: defragmentation moves the job
    (why, see core.migrations). `group_rates`: relative throughput per node group. `stuck_after`: how long a
    pod may stay Terminating on a lost node before it is force-removed (the pool's health policy).
    `refusal`: the API server refuses the job's worker pod as its spec now stands: no attempt starts, and a
    starting one is rolled back, until the spec changes or the refusal is lifted. `fault_rates`: per node group,
    its fault rate, from which the job's checkpoint advice follows (None: the advice is left as it is)."""
    clock = Deadlines(now)
    spec = job.spec
    old = job.status
    status = _writable(old)
    plan = JobPlan(job.key, status)
    judge_checkpoints(job, status, clock, plan)
    reason, message = "", ""
    phase = status.phase or Phase.QUEUED
    # only a Starting or Running attempt owns pods; any other pod is left over and goes
    live = phase in (Phase.STARTING, Phase.RUNNING) and status.attempt > 0
    current = {p.rank: p for p in job.pods if live and p.attempt == status.attempt}
    plan.delete += [p.name for p in job.pods
                    if (p.rank not in current or current[p.rank] is not p) and not p.deleting]
    _take_progress(current.get(0), status, clock)
    if stuck_after is not None:  # their kubelet is gone and will never confirm the end
        plan.force_delete = [p.name for p in job.pods if p.deleting and faulty_nodes.get(p.node or "") in LOST
                             and p.deleting_since is not None and clock.reached(p.deleting_since + stuck_after)]

    def stop_attempt(why: str, planned: bool = False) -> None:
        plan.delete += [p.name for p in current.values() if not p.deleting]
        if status.history and status.history[-1].attempt == status.attempt and status.history[-1].end_time is None:
            status.history[-1].end_time = now
            status.history[-1].end_reason = why
            status.history[-1].planned = planned
        status.placement = []
        status.workers = 0
        status.world_size = 0
        status.larger_size_since = None

    if phase in (Phase.SUCCEEDED, Phase.FAILED):
        stop_attempt(phase.value)  # e.g. the other ranks after rank 0 succeeded
        reason, message = (old.conditions[0].reason, old.conditions[0].message) if old.conditions else (phase, "")
        if spec.ttl_seconds_after_finished is not None and status.completion_time is not None and (
                clock.reached(status.completion_time + timedelta(seconds=spec.ttl_seconds_after_finished))):
            plan.delete_job = True
    elif spec.suspend:
        stop_attempt("Suspended")
        phase, reason, message = Phase.SUSPENDED, "Suspended", "spec.suspend is true; workers stopped"
    elif phase in (Phase.QUEUED, Phase.RESTARTING, Phase.SUSPENDED):
        if waiting_for := blocking_pods(job, faulty_nodes):
            reason, message = "WaitingForPods", f"waiting for {len(waiting_for)} pods of earlier attempts to go"
            if status.not_before is not None and not clock.reached(status.not_before) and old.conditions:
                # backing off: the cause of the backoff stays what the job says (its pods go meanwhile)
                ready = next((c for c in old.conditions if c.type == "Ready"), old.conditions[0])
                reason, message = ready.reason, ready.message
            if phase == Phase.SUSPENDED:
                phase = Phase.QUEUED
        elif awaiting_save(spec, status, clock):
            reason = "WaitingForCheckpoint"
            message = (f"waiting for the graceful save of attempt {status.attempt} to be reported (at most "
                       f"{spec.checkpoint.graceful_save_seconds if spec.checkpoint else 0} s)")
        elif refusal is not None:
            reason, message = refusal.reason, refusal.message
            phase = Phase.QUEUED if phase == Phase.SUSPENDED else phase
        elif offer is not None:
            _start_attempt(job, status, offer, now, plan, group_rates)
            phase, reason = Phase.STARTING, "GangPlaced"
            message = next(e.message for e in plan.events if e.reason == "GangPlaced")
        else:
            phase = Phase.QUEUED if phase == Phase.SUSPENDED else phase
            if status.not_before is not None and not clock.reached(status.not_before) and old.conditions:
                ready = next((c for c in old.conditions if c.type == "Ready"), old.conditions[0])
                reason, message = ready.reason, ready.message  # the cause of the backoff, as written when it began
            elif waiting is not None:
                reason, message = waiting.reason, waiting.message
            else:
                reason, message = "Queued", "waiting for the pool's next queue pass"
    else:  # Starting or Running: the current attempt
        slots = rank_nodes(status)
        failure = _failure(job, status, current, slots, faulty_nodes, phase, clock)
        running = [p for p in current.values() if p.phase in ("Running", "Succeeded")]  # started
        started = status.attempt_start_time or now
        if _succeeded(spec.framework, current, len(slots)):
            stop_attempt("Succeeded")
            phase, reason, message = Phase.SUCCEEDED, "Succeeded", "the job's success rule is met"
            status.completion_time = now
            plan.events.append(Event("Normal", "Succeeded", f"attempt {status.attempt} finished"))
        elif failure is not None:
            phase, reason, message = _fail_attempt(job, status, failure, now, plan, stop_attempt)
        elif phase == Phase.STARTING and refusal is not None:  # e.g. the pods of one accelerator's override
            stop_attempt(refusal.reason)
            phase, reason, message = Phase.QUEUED, refusal.reason, refusal.message
            plan.events.append(Event("Warning", refusal.reason, f"attempt {status.attempt} rolled back: {message}"))
        elif (why := outdated(job, status)) is not None:
            graceful = spec.checkpoint is not None and len(running) == len(slots)
            stop_attempt(SPEC_CHANGED, planned=graceful)
            status.restarts.uncounted += 1
            phase, reason = Phase.RESTARTING, SPEC_CHANGED
            message = (f"{why}: attempt {status.attempt} stops{' with a graceful save' if graceful else ''} and the "
                       f"job restarts with its spec as it is now")
            plan.events.append(Event("Normal", SPEC_CHANGED, message))
        elif phase == Phase.STARTING and len(running) < len(slots) and (
                clock.reached(started + timedelta(seconds=spec.startup_timeout_seconds, microseconds=1))):
            stop_attempt("GangStartTimeout")
            status.start_timeouts += 1
            delay = min(BACKOFF_BASE_S * 2 ** (status.start_timeouts - 1), BACKOFF_MAX_S)
            status.not_before = now + timedelta(seconds=delay)
            phase, reason = Phase.QUEUED, "GangStartTimeout"
            message = (f"attempt {status.attempt}: the gang did not start within {spec.startup_timeout_seconds} s "
                       f"({len(running)} of {len(slots)} workers running); rolled back, placed again after "
                       f"{status.not_before.isoformat()}")
            plan.events.append(Event("Warning", "GangStartTimeout", message))
        elif migrate is not None and len(running) == len(slots) and slots:
            stop_attempt(MIGRATED, planned=True)
            status.restarts.uncounted += 1
            phase, reason = Phase.RESTARTING, "Migrating"
            message = f"attempt {status.attempt} stops with a graceful save: {migrate}"
            plan.events.append(Event("Normal", "Migrating", message))
        elif len(running) == len(slots) and slots and _grow_now(job, status, len(slots), grow_to, clock):
            stop_attempt(f"GrowTo{grow_to}", planned=True)
            status.restarts.scaling += 1
            phase, reason = Phase.RESTARTING, "Growing"
            message = (f"room for {grow_to} workers has stayed free for {spec.workers.size.grow_after_seconds} s: "
                       f"attempt {status.attempt} stops with a graceful save and restarts larger")
            plan.events.append(Event("Normal", "Growing", message))
        else:
            plan.create = [RankSlot(r, *slots[r]) for r in sorted(slots) if r not in current]
            if len(running) == len(slots) and slots:
                if phase != Phase.RUNNING:
                    plan.events.append(Event("Normal", "Running", f"attempt {status.attempt}: all "
                                                                  f"{len(slots)} workers running"))
                    if status.history and status.history[-1].attempt == status.attempt:
                        status.history[-1].running_time = now
                phase, reason, message = Phase.RUNNING, "Running", f"attempt {status.attempt}: all workers running"
                status.start_time = status.start_time or now
            else:
                reason = "Starting" if phase == Phase.STARTING else "Running"
                message = f"attempt {status.attempt}: {len(running)} of {len(slots)} workers running"

    status.phase = phase
    target = spec.workers.size.desired or spec.workers.size.max
    status.workers = sum(gp.workers for gp in status.placement)
    status.desired_workers = target
    status.size = f"{status.workers}/{target}"
    status.world_size = status.workers * spec.workers.cards_per_worker
    status.accelerator = "+".join(dict.fromkeys(gp.accelerator for gp in status.placement))
    status.selector = f"cardpool.io/job={job.name}"
    status.observed_generation = job.generation
    status.conditions = conditions_for_phase(old.conditions, phase, reason or phase.value, message, now,
                                             job.generation)
    if fault_rates is not None:
        expected = spec.checkpoint.save_seconds if spec.checkpoint else None
        status.checkpoint_advice = advise(status, fault_rates, expected)
        if status.attempt != old.attempt and status.history:  # what the new attempt's pods are given
            advice = status.checkpoint_advice
            status.history[-1].checkpoint_interval_seconds = advice.interval_seconds if advice else None
    plan.status_changed = status != old
    plan.recheck_at = clock.next
    return plan


def _writable(status: TrainingJobStatus) -> TrainingJobStatus:
    """A copy of `status` that plan_job may change: fields are set anew, never changed in place, except the
    last history entry and the restart counters, which are copied. The rest is shared with the observed status
    (a deep copy of every job's status was most of a pass's cost)."""
    out = status.model_copy()
    if status.history:
        out.history = [*status.history[:-1], status.history[-1].model_copy()]
    out.restarts = status.restarts.model_copy()
    return out


def _start_attempt(job: ObservedJob, status: TrainingJobStatus, offer: Placement, now: datetime,
                   plan: JobPlan, group_rates: Mapping[str, float]) -> None:
    """Record the new attempt (placement, history) before any of its pods exists."""
    previous = status.history[-1] if status.history else None
    status.attempt += 1
    status.template_hash = job.shape or pod_shape(job.spec)
    status.placement = record(offer, group_rates, job.spec.workers.global_batch_size)
    status.attempt_start_time = now
    status.not_before = None
    resumed = status.last_checkpoint.step if status.last_checkpoint else None
    status.history = [*status.history, AttemptRecord(
        attempt=status.attempt, workers=offer.size, accelerator="+".join(offer.models()),
        resumed_from_step=resumed, start_time=now)][-HISTORY:]
    plan.create = [RankSlot(w.rank, w.node, w.group, w.model) for w in offer.workers]
    where = f" from step {resumed}" if resumed is not None else ""
    plan.events.append(Event("Normal", "GangPlaced", f"attempt {status.attempt}: {offer.size} workers on "
                                                     f"{len(offer.cards_on())} nodes{where}"))
    if previous is not None and previous.workers != offer.size:
        target = job.spec.workers.size.desired or job.spec.workers.size.max
        plan.events.append(Event("Normal", "Resized", f"attempt {status.attempt} runs {offer.size} workers "
                                                      f"(attempt {previous.attempt}: {previous.workers}; "
                                                      f"target {target})"))


def _failure(job: ObservedJob, status: TrainingJobStatus, current: dict[int, ObservedPod],
             slots: dict[int, tuple[str, str, str]], faulty_nodes: Mapping[str, str], phase: Phase,
             clock: Deadlines) -> Failure | None:
    """Why the current attempt cannot go on, if it cannot: a node fault under a rank first (the root cause
    when ranks then fail too), then a failed rank, a rank whose pod vanished, a hang."""
    for r, (node, _, _) in sorted(slots.items()):
        if node in faulty_nodes and (r not in current or current[r].phase != "Succeeded"):
            why = faulty_nodes[node]
            return Failure(why, f"node {node} of rank {r}: {why}", node_fault=True)
    if failed := [p for p in current.values() if p.phase == "Failed"]:
        return first_failure(failed)
    if phase == Phase.RUNNING and (lost := [r for r in slots if r not in current]):
        return Failure("PodLost", f"the pod of rank {lost[0]} disappeared")
    timeout = job.spec.failure_policy.progress_timeout_seconds
    if phase == Phase.RUNNING and timeout is not None:
        this = status.history[-1] if status.history and status.history[-1].attempt == status.attempt else None
        last = (this.running_time if this and this.running_time else None) or status.attempt_start_time or clock.now
        if status.progress is not None and status.progress.attempt == status.attempt:
            last = max(last, status.progress.time)
        if clock.reached(last + timedelta(seconds=timeout, microseconds=1)):
            step = f" (last at step {status.progress.step})" if status.progress and (
                status.progress.attempt == status.attempt) else ""
            return Failure("Hang", f"no progress reported for {timeout} s{step}")
    return None


def _fail_attempt(job: ObservedJob, status: TrainingJobStatus, failure: Failure, now: datetime, plan: JobPlan,
                  stop_attempt) -> tuple[Phase, str, str]:
    policy = job.spec.failure_policy
    decision = decide(failure, policy)
    status.last_failure = FailureRecord(time=now, attempt=status.attempt, reason=failure.reason,
                                        message=f"{failure.message}; {decision.describe()}")
    stop_attempt(failure.reason)
    if decision.action == FailureAction.FAIL:
        message = f"{failure.message}; {decision.describe()}"
        status.completion_time = now
        plan.events.append(Event("Warning", "Failed", message))
        return Phase.FAILED, "FailedByPolicy", message
    if decision.counted and status.restarts.counted >= policy.max_restarts:
        message = f"{failure.message}; restart budget spent ({status.restarts.counted} of maxRestarts " \
                  f"{policy.max_restarts})"
        status.completion_time = now
        plan.events.append(Event("Warning", "Failed", message))
        return Phase.FAILED, "RestartBudgetSpent", message
    if decision.counted:
        status.restarts.counted += 1
        last = status.history[-1] if status.history else None
        ran = (now - last.running_time).total_seconds() if (
            last is not None and last.attempt == status.attempt and last.running_time is not None) else 0.0
        status.failure_streak = streak(status.failure_streak, ran)
        delay = backoff(policy, status.failure_streak)
        status.not_before = now + delay if delay else None
    else:
        status.restarts.uncounted += 1
    when = f" after {status.not_before.isoformat()} (backoff)" if status.not_before else ""
    resume = (f" from step {status.last_checkpoint.step}" if status.last_checkpoint
              else " from scratch (no checkpoint yet)")
    message = f"{failure.message}; {decision.describe()}: restarting{resume}{when}"
    plan.events.append(Event("Warning", failure.reason, message))
    return Phase.RESTARTING, failure.reason, message


def _take_progress(rank0: ObservedPod | None, status: TrainingJobStatus, clock: Deadlines) -> None:
    report = rank0.progress if rank0 is not None else None
    if report is None:
        return
    # a trainer's clock ahead of ours must not postpone hang detection: such a report counts as made now, once,
    # and again when our clock reaches its stamp (not on every pass in between, which would write each time)
    ahead = not clock.reached(report.time)
    time = min(report.time, clock.now)
    known = status.progress
    if known is None or known.attempt != status.attempt or report.step != known.step or (
            report.total_steps != known.total_steps) or (time > known.time and not ahead):
        status.progress = Progress(attempt=status.attempt, step=report.step, total_steps=report.total_steps,
                                   time=time)


def _grow_now(job: ObservedJob, status: TrainingJobStatus, size: int, grow_to: int | None, clock: Deadlines) -> bool:
    """Whether to stop a running attempt to restart it larger; keeps the hysteresis clock in status. Only a job
    that checkpoints grows: the graceful save on SIGTERM keeps its work."""
    if grow_to is None or grow_to <= size or job.spec.checkpoint is None:
        status.larger_size_since = None
        return False
    status.larger_size_since = status.larger_size_since or clock.now
    return clock.reached(status.larger_size_since + timedelta(seconds=job.spec.workers.size.grow_after_seconds))


def _succeeded(framework: Framework, pods: dict[int, ObservedPod], size: int) -> bool:
    if not size:
        return False
    if framework in RANK0_DECIDES:
        return 0 in pods and pods[0].phase == "Succeeded"
    return len(pods) == size and all(p.phase == "Succeeded" for p in pods.values())


def plan_missing_pool(job: ObservedJob, now: datetime) -> JobPlan:
    """A job whose CardPool does not exist is still judged (failures, success, its TTL, checkpoints); it is
    placed nowhere until the pool exists, and says so (a person must create the pool or fix spec.pool)."""
    return plan_job(job, now, waiting=Waiting(job.key, "PoolNotFound", f"CardPool {job.spec.pool} does not exist"))
