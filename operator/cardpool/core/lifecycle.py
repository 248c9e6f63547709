"""One job's next step, decided from what is observed: its spec, its recorded status, its pods, and what the
pool's queue pass offers it. Pure: the caller supplies `now`.

The status is the job's memory. An attempt's placement is recorded in status (with the attempt number and
counters) before any of its pods is created, so a crash at any point resumes the same attempt: missing
ranks are created on their recorded nodes, and pod names (<job>-a<attempt>-<rank>) make a second pod for a
rank impossible. Pods of other attempts are deleted before a new attempt is placed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cardpool.api.phases import conditions_for_phase
from cardpool.api.trainingjob import (
    CheckpointRecord,
    FailureRecord,
    Framework,
    GroupPlacement,
    Phase,
    TrainingJobStatus,
)

from .observed import ObservedJob, ObservedPod
from .placement import Placement
from .queue import Waiting

RANK0_DECIDES = {Framework.PYTORCH, Framework.DEEPSPEED, Framework.MEGATRON}


def pod_name(job: str, attempt: int, rank: int) -> str:
    return f"{job}-a{attempt}-{rank}"
BACKOFF_BASE_S = 10
BACKOFF_MAX_S = 600


@dataclass(frozen=True, slots=True)
class RankSlot:
    """A worker to create: its rank and where the recorded placement puts it."""

    rank: int
    node: str
    group: str
    model: str


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a reported checkpoint was taken as the job's latest; set on the Checkpoint's status."""

    checkpoint: str
    accepted: bool
    reason: str
    message: str


@dataclass
class JobPlan:
    job: str
    status: TrainingJobStatus
    create: list[RankSlot] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    delete_job: bool = False
    status_changed: bool = True
    verdicts: list[Verdict] = field(default_factory=list)


def judge_checkpoints(job: ObservedJob, status: TrainingJobStatus, now: datetime, plan: JobPlan) -> None:
    """Take the newest complete checkpoint of the current attempt (or the one that just ended) into status;
    judge each reported checkpoint once. Older attempts and steps below the recorded one are ignored."""
    for ck in sorted(job.checkpoints, key=lambda c: (c.attempt, c.step, c.name)):
        recorded = status.last_checkpoint
        if ck.verdict is not None or not ck.complete or (recorded is not None and recorded.name == ck.name):
            continue  # judged already (its verdict may not have reached the watch yet), or not usable yet
        if ck.attempt < status.attempt:
            verdict = Verdict(ck.name, False, "OlderAttempt",
                              f"saved by attempt {ck.attempt}; the job is at attempt {status.attempt}")
        elif recorded is not None and ck.step <= recorded.step:
            verdict = Verdict(ck.name, False, "NotNewer",
                              f"step {ck.step} is not after the recorded step {recorded.step}")
        else:
            status.last_checkpoint = CheckpointRecord(step=ck.step, uri=ck.uri, time=now, world_size=ck.world_size,
                                                      attempt=ck.attempt, name=ck.name)
            verdict = Verdict(ck.name, True, "Recorded", f"the job resumes from step {ck.step}")
            plan.events.append(Event("Normal", "CheckpointRecorded", f"step {ck.step} at {ck.uri}"))
        if not verdict.accepted:
            plan.events.append(Event("Warning", "CheckpointIgnored", f"{ck.name}: {verdict.message}"))
        plan.verdicts.append(verdict)


def blocking_pods(job: ObservedJob, faulty_nodes: frozenset[str] = frozenset()) -> list[ObservedPod]:
    """Pods a new attempt must wait for: all, except those already deleted on a faulty node (a lost kubelet
    never confirms their end; they hold no usable cards)."""
    return [p for p in job.pods if not (p.deleting and p.node in faulty_nodes)]


def needs_placement(job: ObservedJob, now: datetime, faulty_nodes: frozenset[str] = frozenset()) -> bool:
    """Whether the pool's queue should consider the job this pass."""
    status, spec = job.status, job.spec
    if spec.suspend or status.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.STARTING, Phase.RUNNING):
        return False
    if blocking_pods(job, faulty_nodes):  # pods of an earlier attempt still hold cards (or are going away)
        return False
    return status.not_before is None or status.not_before <= now


def rank_nodes(status: TrainingJobStatus) -> dict[int, tuple[str, str, str]]:
    """rank -> (node, group, model) from the recorded placement."""
    out = {}
    for gp in status.placement:
        for i, node in enumerate(gp.nodes):
            out[gp.first_rank + i] = (node, gp.group, gp.accelerator)
    return out


def record(placement: Placement) -> list[GroupPlacement]:
    groups: list[GroupPlacement] = []
    for w in placement.workers:
        if groups and groups[-1].group == w.group and groups[-1].accelerator == w.model:
            groups[-1].workers += 1
            groups[-1].nodes.append(w.node)
        else:
            groups.append(GroupPlacement(group=w.group, accelerator=w.model, workers=1, first_rank=w.rank,
                                         nodes=[w.node]))
    return groups


def plan_job(job: ObservedJob, now: datetime, offer: Placement | None = None, waiting: Waiting | None = None,
             faulty_nodes: frozenset[str] = frozenset()) -> JobPlan:
    spec = job.spec
    old = job.status
    status = old.model_copy(deep=True)
    plan = JobPlan(job.key, status)
    judge_checkpoints(job, status, now, plan)
    reason, message = "", ""
    phase = status.phase or Phase.QUEUED
    # only a Starting or Running attempt owns pods; any other pod is left over and goes
    live = phase in (Phase.STARTING, Phase.RUNNING) and status.attempt > 0
    current = {p.rank: p for p in job.pods if live and p.attempt == status.attempt}
    plan.delete += [p.name for p in job.pods
                    if (p.rank not in current or current[p.rank] is not p) and not p.deleting]

    def stop_attempt() -> None:
        plan.delete += [p.name for p in current.values() if not p.deleting]
        status.placement = []
        status.workers = 0
        status.world_size = 0

    if phase in (Phase.SUCCEEDED, Phase.FAILED):
        stop_attempt()  # e.g. the other ranks after rank 0 succeeded
        reason, message = (old.conditions[0].reason, old.conditions[0].message) if old.conditions else (phase, "")
        if spec.ttl_seconds_after_finished is not None and status.completion_time is not None and (
                now >= status.completion_time + timedelta(seconds=spec.ttl_seconds_after_finished)):
            plan.delete_job = True
    elif spec.suspend:
        stop_attempt()
        phase, reason, message = Phase.SUSPENDED, "Suspended", "spec.suspend is true; workers stopped"
    elif phase in (Phase.QUEUED, Phase.RESTARTING, Phase.SUSPENDED):
        if waiting_for := blocking_pods(job, faulty_nodes):
            reason, message = "WaitingForPods", f"waiting for {len(waiting_for)} pods of earlier attempts to go"
            if phase == Phase.SUSPENDED:
                phase = Phase.QUEUED
        elif offer is not None:
            status.attempt += 1
            status.placement = record(offer)
            status.attempt_start_time = now
            status.not_before = None
            plan.create = [RankSlot(w.rank, w.node, w.group, w.model) for w in offer.workers]
            phase, reason = Phase.STARTING, "GangPlaced"
            message = f"attempt {status.attempt}: {offer.size} workers on {len(offer.cards_on())} nodes"
            plan.events.append(Event("Normal", "GangPlaced", message))
        else:
            phase = Phase.QUEUED if phase == Phase.SUSPENDED else phase
            if status.not_before is not None and status.not_before > now:
                reason = "GangStartTimeout"  # the only cause of a backoff; it stays the reason while it lasts
                message = (f"the gang did not start within {spec.startup_timeout_seconds} s "
                           f"({status.start_timeouts} times); placed again after {status.not_before.isoformat()}")
            elif waiting is not None:
                reason, message = waiting.reason, waiting.message
            else:
                reason, message = "Queued", "waiting for the pool's next queue pass"
    else:  # Starting or Running: the current attempt
        slots = rank_nodes(status)
        failed = [p for p in current.values() if p.phase == "Failed"]
        # a rank whose recorded node is faulty or gone, with or without its pod yet
        on_faulty = [ObservedPod(pod_name(job.name, status.attempt, r), job.namespace, job.name, status.attempt, r,
                                 node, current[r].phase if r in current else "Pending")
                     for r, (node, _, _) in sorted(slots.items())
                     if node in faulty_nodes and (r not in current or current[r].phase != "Succeeded")]
        vanished = [r for r in slots if r not in current] if phase == Phase.RUNNING else []
        if _succeeded(spec.framework, current, len(slots)):
            stop_attempt()
            phase, reason, message = Phase.SUCCEEDED, "Succeeded", "the job's success rule is met"
            status.completion_time = now
            plan.events.append(Event("Normal", "Succeeded", f"attempt {status.attempt} finished"))
        elif failed or on_faulty or vanished:
            counted = bool(failed) and not on_faulty
            what = (f"rank {failed[0].rank} failed (exit code {failed[0].exit_code}, {failed[0].reason})" if failed
                    else f"node {on_faulty[0].node} of rank {on_faulty[0].rank} is faulty" if on_faulty
                    else f"pod of rank {vanished[0]} disappeared")
            why = "WorkerFailed" if failed else "NodeFault" if on_faulty else "PodLost"
            status.last_failure = FailureRecord(time=now, attempt=status.attempt, reason=why, message=what)
            stop_attempt()
            if counted and status.restarts.counted >= spec.failure_policy.max_restarts:
                phase, reason = Phase.FAILED, "RestartBudgetSpent"
                message = f"{what}; {status.restarts.counted} restarts already (maxRestarts)"
                status.completion_time = now
                plan.events.append(Event("Warning", "Failed", message))
            else:
                if counted:
                    status.restarts.counted += 1
                else:
                    status.restarts.uncounted += 1
                phase, reason, message = Phase.RESTARTING, why, f"{what}; restarting as a new attempt"
                plan.events.append(Event("Warning", why, message))
        else:
            plan.create = [RankSlot(r, *slots[r]) for r in sorted(slots) if r not in current]
            running = [p for p in current.values() if p.phase in ("Running", "Succeeded")]  # started
            started = status.attempt_start_time or now
            if len(running) == len(slots) and slots:
                if phase != Phase.RUNNING:
                    plan.events.append(Event("Normal", "Running", f"attempt {status.attempt}: all "
                                                                  f"{len(slots)} workers running"))
                phase, reason, message = Phase.RUNNING, "Running", f"attempt {status.attempt}: all workers running"
                status.start_time = status.start_time or now
            elif phase == Phase.STARTING and now - started > timedelta(seconds=spec.startup_timeout_seconds):
                stop_attempt()
                plan.create = []
                status.start_timeouts += 1
                delay = min(BACKOFF_BASE_S * 2 ** (status.start_timeouts - 1), BACKOFF_MAX_S)
                status.not_before = now + timedelta(seconds=delay)
                phase, reason = Phase.QUEUED, "GangStartTimeout"
                message = (f"attempt {status.attempt}: the gang did not start within {spec.startup_timeout_seconds} s "
                           f"({len(running)} of {len(slots)} workers running); rolled back, placed again after "
                           f"{status.not_before.isoformat()}")
                plan.events.append(Event("Warning", "GangStartTimeout", message))
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
    plan.status_changed = status != old
    return plan


def _succeeded(framework: Framework, pods: dict[int, ObservedPod], size: int) -> bool:
    if not size:
        return False
    if framework in RANK0_DECIDES:
        return 0 in pods and pods[0].phase == "Succeeded"
    return len(pods) == size and all(p.phase == "Succeeded" for p in pods.values())


def plan_missing_pool(job: ObservedJob, now: datetime) -> JobPlan:
    """A job whose CardPool does not exist waits for it (no pool pass sees the job)."""
    status = job.status.model_copy(deep=True)
    if status.phase in (None, Phase.QUEUED):
        status.phase = Phase.QUEUED
        status.observed_generation = job.generation
        status.conditions = conditions_for_phase(job.status.conditions, Phase.QUEUED, "PoolNotFound",
                                                 f"CardPool {job.spec.pool} does not exist", now, job.generation)
    return JobPlan(job.key, status, status_changed=status != job.status)
