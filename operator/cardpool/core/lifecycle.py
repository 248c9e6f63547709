"""One job's next step, decided from what is observed: its spec, its recorded status, its pods, and what the
pool's queue pass offers it. Pure: the caller supplies `now`.

The status is the job's memory. An attempt's placement is recorded in status (with the attempt number and
counters) before any of its pods is created, so a crash at any point resumes the same attempt: missing
ranks are created on their recorded nodes, and pod names (<job>-a<attempt>-<rank>) make a second pod for a
rank impossible. Pods of other attempts are deleted before a new attempt is placed.

The transitions are tables: PHASES gives each phase its transition; between attempts the checks of BETWEEN,
and for a live attempt those of LIVE, are tried in order and the first that holds decides (as kubectl drain's
filters do). What the pool pass asks of a job before deciding it is core.candidates'; how an attempt is
recorded, core.attempts'; the plan's shape, core.plan's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from cardpool.api.phases import conditions_for_phase
from cardpool.api.trainingjob import (
    FailureAction,
    FailureRecord,
    Framework,
    Phase,
    Progress,
    TrainingJobStatus,
)

from .advice import GroupRate, advise
from .attempts import outdated, rank_nodes, start_attempt
from .candidates import _NONE, awaiting_save, blocking_pods
from .checkpoints import judge_checkpoints
from .clock import Deadlines
from .events import Event
from .failures import Failure, backoff, decide, first_failure, streak
from .health import LOST
from .observed import ObservedJob, ObservedPod, PodRefusal
from .placement import Placement
from .plan import JobPlan, RankSlot
from .queue import Waiting

RANK0_DECIDES = {Framework.PYTORCH, Framework.DEEPSPEED, Framework.MEGATRON}


MIGRATED = "Migrated"
RECLAIMED = "Reclaimed"
SPEC_CHANGED = "SpecChanged"


BACKOFF_BASE_S = 10
BACKOFF_MAX_S = 600


Outcome = tuple[Phase, str, str]
"""What a transition decides: the job's phase, and the reason and message of its Ready condition."""


@dataclass
class _Decision:
    """One job's plan in the making: what was observed, what the pass offers, and the status being written."""

    job: ObservedJob
    old: TrainingJobStatus
    status: TrainingJobStatus
    plan: JobPlan
    clock: Deadlines
    current: dict[int, ObservedPod]
    """The live attempt's pods by rank (none unless the job is Starting or Running)."""
    offer: Placement | None
    waiting: Waiting | None
    faulty_nodes: Mapping[str, str]
    grow_to: int | None
    migrate: str | None
    group_rates: Mapping[str, float]
    refusal: PodRefusal | None
    reclaim: str | None = None

    @property
    def now(self) -> datetime:
        return self.clock.now

    def stop_attempt(self, why: str, planned: bool = False) -> None:
        """The live attempt ends: its pods go, its history entry records why, nothing is placed any more."""
        status = self.status
        self.plan.delete += [p.name for p in self.current.values() if not p.deleting]
        if status.history and status.history[-1].attempt == status.attempt and status.history[-1].end_time is None:
            status.history[-1].end_time = self.now
            status.history[-1].end_reason = why
            status.history[-1].planned = planned
        status.placement = []
        status.workers = 0
        status.world_size = 0
        status.larger_size_since = None

    def ready_as_written(self) -> tuple[str, str]:
        """The Ready condition's reason and message as the job says now (the cause of a backoff, say)."""
        ready = next((c for c in self.old.conditions if c.type == "Ready"), self.old.conditions[0])
        return ready.reason, ready.message

    def backing_off(self) -> bool:
        status = self.status
        return status.not_before is not None and not self.clock.reached(status.not_before) and bool(self.old.conditions)


def plan_job(job: ObservedJob, now: datetime, offer: Placement | None = None, waiting: Waiting | None = None,
             faulty_nodes: Mapping[str, str] = _NONE, grow_to: int | None = None,
             migrate: str | None = None, group_rates: Mapping[str, float] = MappingProxyType({}),
             stuck_after: timedelta | None = None, refusal: PodRefusal | None = None,
             fault_rates: Mapping[str, GroupRate] | None = None, reclaim: str | None = None) -> JobPlan:
    """`faulty_nodes`: node -> fault reason. `grow_to`: the size the job could restart at now, when the pool
    pass found room for more than it runs with (see core.pool). `migrate`: defragmentation moves the job
    (why, see core.migrations). `group_rates`: relative throughput per node group. `stuck_after`: how long a
    pod may stay Terminating on a lost node before it is force-removed (the pool's health policy).
    `refusal`: the API server refuses the job's worker pod as its spec now stands: no attempt starts, and a
    starting one is rolled back, until the spec changes or the refusal is lifted. `fault_rates`: per node group,
    its fault rate, from which the job's checkpoint advice follows (None: the advice is left as it is).
    `reclaim`: the job's queue lent cards that their owner's queue takes back (why, see core.reclaim): the
    attempt stops with a graceful save and the job waits in the queue again.

    What every job gets first (checkpoints judged, pods of no live attempt deleted, rank 0's progress taken,
    pods stuck on lost nodes removed), then the transition of its phase (PHASES), then the fields that follow
    from the outcome (sizes, conditions, the checkpoint advice)."""
    clock = Deadlines(now)
    old = job.status
    status = _writable(old)
    plan = JobPlan(job.key, status)
    judge_checkpoints(job, status, clock, plan)
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
    d = _Decision(job, old, status, plan, clock, current, offer, waiting, faulty_nodes, grow_to, migrate,
                  group_rates, refusal, reclaim)
    transition = _suspended if job.spec.suspend and phase not in FINISHED else PHASES[phase]
    phase, reason, message = transition(d)
    _conclude(d, phase, reason, message, fault_rates)
    plan.status_changed = status != old
    plan.recheck_at = clock.next
    return plan


FINISHED = (Phase.SUCCEEDED, Phase.FAILED)


def _finished(d: _Decision) -> Outcome:
    """Succeeded or Failed: what is left of the attempt goes (the other ranks after rank 0 succeeded, say); the
    job goes too once its TTL after completion has passed."""
    phase = d.status.phase
    d.stop_attempt(phase.value)
    reason, message = (d.old.conditions[0].reason, d.old.conditions[0].message) if d.old.conditions else (phase, "")
    ttl, done = d.job.spec.ttl_seconds_after_finished, d.status.completion_time
    if ttl is not None and done is not None and d.clock.reached(done + timedelta(seconds=ttl)):
        d.plan.delete_job = True
    return phase, reason, message


def _suspended(d: _Decision) -> Outcome:
    """spec.suspend, whatever the phase before (finished jobs aside): the attempt stops, nothing is placed."""
    d.stop_attempt("Suspended")
    return Phase.SUSPENDED, "Suspended", "spec.suspend is true; workers stopped"


def _between_attempts(d: _Decision) -> Outcome:
    """Queued, Restarting, or resumed after a suspension: the first check that holds decides (BETWEEN)."""
    for check in BETWEEN:
        if (outcome := check(d)) is not None:
            return outcome
    raise AssertionError("the last check of BETWEEN always decides")


def _old_pods_left(d: _Decision) -> Outcome | None:
    waiting_for = blocking_pods(d.job, d.faulty_nodes)
    if not waiting_for:
        return None
    reason, message = "WaitingForPods", f"waiting for {len(waiting_for)} pods of earlier attempts to go"
    if d.backing_off():  # the cause of the backoff stays what the job says (its pods go meanwhile)
        reason, message = d.ready_as_written()
    return _queued_if_suspended(d), reason, message


def _save_awaited(d: _Decision) -> Outcome | None:
    if not awaiting_save(d.job.spec, d.status, d.clock):
        return None
    checkpointing = d.job.spec.checkpoint
    return (d.status.phase or Phase.QUEUED, "WaitingForCheckpoint",
            f"waiting for the graceful save of attempt {d.status.attempt} to be reported (at most "
            f"{checkpointing.graceful_save_seconds if checkpointing else 0} s)")


def _refused(d: _Decision) -> Outcome | None:
    if d.refusal is None:
        return None
    return _queued_if_suspended(d), d.refusal.reason, d.refusal.message


def _offered(d: _Decision) -> Outcome | None:
    if d.offer is None:
        return None
    start_attempt(d.job, d.status, d.offer, d.now, d.plan, d.group_rates)
    return Phase.STARTING, "GangPlaced", next(e.message for e in d.plan.events if e.reason == "GangPlaced")


def _still_waiting(d: _Decision) -> Outcome:
    if d.backing_off():  # the cause of the backoff, as written when it began
        reason, message = d.ready_as_written()
    elif d.waiting is not None:
        reason, message = d.waiting.reason, d.waiting.message
    else:
        reason, message = "Queued", "waiting for the pool's next queue pass"
    return _queued_if_suspended(d), reason, message


def _queued_if_suspended(d: _Decision) -> Phase:
    phase = d.status.phase or Phase.QUEUED
    return Phase.QUEUED if phase == Phase.SUSPENDED else phase


BETWEEN: tuple[Callable[[_Decision], Outcome | None], ...] = (
    _old_pods_left, _save_awaited, _refused, _offered, _still_waiting)
"""Between attempts, in order: pods of earlier attempts must go first; a planned stop's save is awaited; a
refused spec places nothing; the queue's offer starts the next attempt; else the job waits, saying why."""


@dataclass(frozen=True)
class _Live:
    """The live attempt as observed: its recorded ranks, its started workers, why it cannot go on (if so)."""

    slots: dict[int, tuple[str, str, str]]
    running: list[ObservedPod]
    started: datetime
    failure: Failure | None

    @property
    def all_running(self) -> bool:
        return bool(self.slots) and len(self.running) == len(self.slots)


def _live_attempt(d: _Decision) -> Outcome:
    """Starting or Running: the first check of LIVE that holds decides."""
    slots = rank_nodes(d.status)
    phase = d.status.phase or Phase.QUEUED
    live = _Live(slots, [p for p in d.current.values() if p.phase in ("Running", "Succeeded")],
                 d.status.attempt_start_time or d.now,
                 _failure(d.job, d.status, d.current, slots, d.faulty_nodes, phase, d.clock))
    for check in LIVE:
        if (outcome := check(d, live)) is not None:
            return outcome
    raise AssertionError("the last check of LIVE always decides")


def _done(d: _Decision, live: _Live) -> Outcome | None:
    if not _succeeded(d.job.spec.framework, d.current, len(live.slots)):
        return None
    d.stop_attempt("Succeeded")
    d.status.completion_time = d.now
    d.plan.events.append(Event("Normal", "Succeeded", f"attempt {d.status.attempt} finished"))
    return Phase.SUCCEEDED, "Succeeded", "the job's success rule is met"


def _failed(d: _Decision, live: _Live) -> Outcome | None:
    if live.failure is None:
        return None
    return _fail_attempt(d.job, d.status, live.failure, d.now, d.plan, d.stop_attempt)


def _rolled_back(d: _Decision, live: _Live) -> Outcome | None:
    """A refusal while Starting (e.g. the pods of one accelerator's override): the attempt is rolled back."""
    if d.status.phase != Phase.STARTING or d.refusal is None:
        return None
    d.stop_attempt(d.refusal.reason)
    message = d.refusal.message
    d.plan.events.append(Event("Warning", d.refusal.reason, f"attempt {d.status.attempt} rolled back: {message}"))
    return Phase.QUEUED, d.refusal.reason, message


def _spec_changed(d: _Decision, live: _Live) -> Outcome | None:
    why = outdated(d.job, d.status)
    if why is None:
        return None
    graceful = d.job.spec.checkpoint is not None and len(live.running) == len(live.slots)
    d.stop_attempt(SPEC_CHANGED, planned=graceful)
    d.status.restarts.uncounted += 1
    message = (f"{why}: attempt {d.status.attempt} stops{' with a graceful save' if graceful else ''} and the "
               f"job restarts with its spec as it is now")
    d.plan.events.append(Event("Normal", SPEC_CHANGED, message))
    return Phase.RESTARTING, SPEC_CHANGED, message


def _start_timed_out(d: _Decision, live: _Live) -> Outcome | None:
    status, timeout = d.status, d.job.spec.startup_timeout_seconds
    if status.phase != Phase.STARTING or len(live.running) >= len(live.slots) or not (
            d.clock.reached(live.started + timedelta(seconds=timeout, microseconds=1))):
        return None
    d.stop_attempt("GangStartTimeout")
    status.start_timeouts += 1
    delay = min(BACKOFF_BASE_S * 2 ** (status.start_timeouts - 1), BACKOFF_MAX_S)
    status.not_before = d.now + timedelta(seconds=delay)
    message = (f"attempt {status.attempt}: the gang did not start within {timeout} s ({len(live.running)} of "
               f"{len(live.slots)} workers running); rolled back, placed again after {status.not_before.isoformat()}")
    d.plan.events.append(Event("Warning", "GangStartTimeout", message))
    return Phase.QUEUED, "GangStartTimeout", message


def _moved(d: _Decision, live: _Live) -> Outcome | None:
    if d.migrate is None or not live.all_running:
        return None
    return _planned_stop(d, MIGRATED, "Migrating", f"stops with a graceful save: {d.migrate}")


def _reclaimed(d: _Decision, live: _Live) -> Outcome | None:
    if d.reclaim is None or not live.all_running:
        return None
    return _planned_stop(d, RECLAIMED, "Reclaimed", f"stops with a graceful save and waits in its queue: {d.reclaim}")


def _planned_stop(d: _Decision, end_reason: str, reason: str, what: str) -> Outcome:
    """The attempt stops on purpose, with a graceful save, to restart elsewhere or later (not counted)."""
    d.stop_attempt(end_reason, planned=True)
    d.status.restarts.uncounted += 1
    message = f"attempt {d.status.attempt} {what}"
    d.plan.events.append(Event("Normal", reason, message))
    return Phase.RESTARTING, reason, message


def _grown(d: _Decision, live: _Live) -> Outcome | None:
    if not live.all_running or not _grow_now(d.job, d.status, len(live.slots), d.grow_to, d.clock):
        return None
    d.stop_attempt(f"GrowTo{d.grow_to}", planned=True)
    d.status.restarts.scaling += 1
    message = (f"room for {d.grow_to} workers has stayed free for {d.job.spec.workers.size.grow_after_seconds} s: "
               f"attempt {d.status.attempt} stops with a graceful save and restarts larger")
    d.plan.events.append(Event("Normal", "Growing", message))
    return Phase.RESTARTING, "Growing", message


def _goes_on(d: _Decision, live: _Live) -> Outcome:
    """Nothing ends the attempt: missing ranks are created on their recorded nodes; once all run, Running."""
    status = d.status
    d.plan.create = [RankSlot(r, *live.slots[r]) for r in sorted(live.slots) if r not in d.current]
    if live.all_running:
        if status.phase != Phase.RUNNING:
            d.plan.events.append(Event("Normal", "Running", f"attempt {status.attempt}: all {len(live.slots)} "
                                                            f"workers running"))
            if status.history and status.history[-1].attempt == status.attempt:
                status.history[-1].running_time = d.now
        status.start_time = status.start_time or d.now
        return Phase.RUNNING, "Running", f"attempt {status.attempt}: all workers running"
    phase = status.phase or Phase.QUEUED
    return (phase, "Starting" if phase == Phase.STARTING else "Running",
            f"attempt {status.attempt}: {len(live.running)} of {len(live.slots)} workers running")


LIVE: tuple[Callable[[_Decision, _Live], Outcome | None], ...] = (
    _done, _failed, _rolled_back, _spec_changed, _start_timed_out, _moved, _reclaimed, _grown, _goes_on)
"""A live attempt, in order: success first (rank 0 done beats the others' ends); a failure (a faulty node under
a rank, a failed or vanished rank, a hang); a refusal rolls a starting gang back; a spec edit restarts it; a
gang that did not start in time is rolled back; a defragmentation move; lent cards taken back; growing; else
it goes on."""

PHASES: dict[Phase, Callable[[_Decision], Outcome]] = {
    Phase.SUCCEEDED: _finished, Phase.FAILED: _finished, Phase.SUSPENDED: _between_attempts,
    Phase.QUEUED: _between_attempts, Phase.RESTARTING: _between_attempts,
    Phase.STARTING: _live_attempt, Phase.RUNNING: _live_attempt,
}
"""The transition of each phase (spec.suspend goes to _suspended first, finished jobs aside)."""


def _conclude(d: _Decision, phase: Phase, reason: str, message: str,
              fault_rates: Mapping[str, GroupRate] | None) -> None:
    """The fields that follow from the outcome: sizes, selector, generation, conditions, the checkpoint advice."""
    spec, status, old = d.job.spec, d.status, d.old
    status.phase = phase
    target = spec.workers.size.desired or spec.workers.size.max
    status.workers = sum(gp.workers for gp in status.placement)
    status.desired_workers = target
    status.size = f"{status.workers}/{target}"
    status.world_size = status.workers * spec.workers.cards_per_worker
    status.accelerator = "+".join(dict.fromkeys(gp.accelerator for gp in status.placement))
    status.selector = f"cardpool.io/job={d.job.name}"
    status.observed_generation = d.job.generation
    status.conditions = conditions_for_phase(old.conditions, phase, reason or phase.value, message, d.now,
                                             d.job.generation)
    if fault_rates is not None:
        expected = spec.checkpoint.save_seconds if spec.checkpoint else None
        status.checkpoint_advice = advise(status, fault_rates, expected)
        if status.attempt != old.attempt and status.history:  # what the new attempt's pods are given
            advice = status.checkpoint_advice
            status.history[-1].checkpoint_interval_seconds = advice.interval_seconds if advice else None


def _writable(status: TrainingJobStatus) -> TrainingJobStatus:
    """A copy of `status` that plan_job may change: fields are set anew, never changed in place, except the
    last history entry and the restart counters, which are copied. The rest is shared with the observed status
    (a deep copy of every job's status was most of a pass's cost)."""
    out = status.model_copy()
    if status.history:
        out.history = [*status.history[:-1], status.history[-1].model_copy()]
    out.restarts = status.restarts.model_copy()
    return out


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
