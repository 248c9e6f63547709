"""Which reported Checkpoint a job resumes from, and why every other one is refused. Pure: the caller supplies
`now`.

A complete Checkpoint becomes the job's status.lastCheckpoint only when every rule holds; the first that does
not is the reason of its Accepted=False condition:

- PredatesJob: it was created at or after the job. One created before would make the job resume from
  someone else's step and URI (left by an earlier job of that name, or made up).
- NotOwned: an ownerReference names this TrainingJob with this job's UID (cardpool.runtime writes it).
- NoSuchAttempt, FutureAttempt, OlderAttempt: its attempt is the job's current one, status.attempt (an
  attempt that stopped stays current until the next one starts, so its graceful save is taken).
- NotNewer: its step is after the recorded one.
- BeyondProgress: its step is at most the highest step rank 0 of that attempt reported progress for
  (status.progress of that attempt, or the report on its rank 0 pod). cardpool.runtime reports the saved
  step as progress before it creates the Checkpoint, so a real trainer passes. The two reach the operator
  through different watches, so a Checkpoint above the reported step stays unjudged for PROGRESS_GRACE after
  its creation, and is refused after it.
  The step cannot be bounded, and is taken, when the attempt reported no progress at all, or when it is a
  save made after the attempt stopped (within spec.checkpoint.gracefulSaveSeconds of its end) whose rank 0
  pod is gone: that pod's last report, made just before, may never have been seen. The Accepted message says
  so.

Only complete Checkpoints are judged (an incomplete one is a save in progress), each once: one that carries
a verdict is not judged again. Deleting the recorded Checkpoint makes the job fall back to the newest
remaining one it accepted, or to none (the next attempt starts from scratch), with a Warning event.
A Checkpoint naming a job that does not exist in its namespace is refused with NoSuchJob (judge_orphans).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta

from cardpool.api.trainingjob import CheckpointRecord, TrainingJobStatus

from .clock import Deadlines
from .events import Event
from .observed import ObservedCheckpoint, ObservedJob
from .plan import JobPlan, Verdict

PROGRESS_GRACE = timedelta(seconds=60)
"""How long a Checkpoint above its attempt's reported progress waits for that report to be seen."""
ORPHAN_GRACE = timedelta(seconds=5)
"""How long a Checkpoint whose job is not seen waits before NoSuchJob: jobs and Checkpoints are separate
watches, and a job applied together with its Checkpoints may be seen after them."""

RECORDED, NOT_NEWER, OLDER_ATTEMPT, FUTURE_ATTEMPT, NO_SUCH_ATTEMPT = (
    "Recorded", "NotNewer", "OlderAttempt", "FutureAttempt", "NoSuchAttempt")
NOT_OWNED, PREDATES_JOB, BEYOND_PROGRESS, NO_SUCH_JOB = "NotOwned", "PredatesJob", "BeyondProgress", "NoSuchJob"


def judge_checkpoints(job: ObservedJob, status: TrainingJobStatus, now: datetime | Deadlines,
                      plan: JobPlan) -> None:
    """Judge the job's unjudged complete Checkpoints in order of attempt and step (see the module), taking
    each accepted one into `status`, its verdict and event into `plan`. With a Deadlines, the end of a
    pending grace is noted there; with a datetime, in plan.recheck_at."""
    clock = now if isinstance(now, Deadlines) else Deadlines(now)
    _fall_back(job, status, plan)
    for ck in sorted(job.checkpoints, key=lambda c: (c.attempt, c.step, c.name)):
        recorded = status.last_checkpoint
        if ck.verdict is not None or not ck.complete or (recorded is not None and recorded.name == ck.name):
            continue  # judged already (its verdict may not have reached the watch yet), or not usable yet
        verdict = judge(job, status, ck, clock)
        if verdict is None:
            continue  # above the reported progress, within the grace
        if verdict.accepted:
            status.last_checkpoint = CheckpointRecord(step=ck.step, uri=ck.uri, time=clock.now,
                                                      world_size=ck.world_size, attempt=ck.attempt, name=ck.name,
                                                      save_seconds=ck.save_seconds)
            plan.events.append(Event("Normal", "CheckpointRecorded", f"step {ck.step} at {ck.uri}"))
        else:
            plan.events.append(Event("Warning", "CheckpointIgnored", f"{ck.name}: {verdict.message}"))
        plan.verdicts.append(verdict)
    if not isinstance(now, Deadlines) and clock.next is not None:
        plan.recheck_at = min(plan.recheck_at or clock.next, clock.next)


def judge(job: ObservedJob, status: TrainingJobStatus, ck: ObservedCheckpoint, clock: Deadlines) -> Verdict | None:
    """One complete Checkpoint against the job as `status` records it now (None: not decided yet)."""
    if (refused := provenance(job, ck)) is not None:
        return refused
    if ck.attempt < 1:
        return Verdict(ck.name, False, NO_SUCH_ATTEMPT, f"attempt {ck.attempt} never ran: attempts count from 1")
    if ck.attempt > status.attempt:
        at = f"is at attempt {status.attempt}" if status.attempt else "has not started an attempt yet"
        return Verdict(ck.name, False, FUTURE_ATTEMPT, f"claims attempt {ck.attempt}; the job {at}")
    if ck.attempt < status.attempt:
        return Verdict(ck.name, False, OLDER_ATTEMPT,
                       f"saved by attempt {ck.attempt}; the job is at attempt {status.attempt}")
    recorded = status.last_checkpoint
    if recorded is not None and ck.step <= recorded.step:
        return Verdict(ck.name, False, NOT_NEWER, f"step {ck.step} is not after the recorded step {recorded.step}")
    resumes = f"the job resumes from step {ck.step}"
    if _after_its_rank0(job, status, ck):
        return Verdict(ck.name, True, RECORDED, f"{resumes}; saved after attempt {ck.attempt} stopped and "
                                                f"reported when its rank 0 pod was gone: the step is not bounded "
                                                f"by the progress it reported")
    reached = reported_step(job, status, ck.attempt)
    if reached is None:
        return Verdict(ck.name, True, RECORDED, f"{resumes}; attempt {ck.attempt} reported no progress, so the "
                                                f"step is not bounded by it")
    if ck.step <= reached:
        return Verdict(ck.name, True, RECORDED, resumes)
    if not clock.reached(ck.created + PROGRESS_GRACE):
        return None
    return Verdict(ck.name, False, BEYOND_PROGRESS,
                   f"step {ck.step} is beyond step {reached}, the highest attempt {ck.attempt} reported progress "
                   f"for ({int(PROGRESS_GRACE.total_seconds())} s after the checkpoint was created)")


def provenance(job: ObservedJob, ck: ObservedCheckpoint) -> Verdict | None:
    """Why the Checkpoint is not this job's at all (None: it is)."""
    if ck.created < job.created:
        return Verdict(ck.name, False, PREDATES_JOB,
                       f"created at {_stamp(ck.created)}, before the job ({_stamp(job.created)}): not saved by it")
    if ck.owner_uid != job.uid:
        whose = (f"owned by TrainingJob {job.name} with UID {ck.owner_uid}, an earlier job of that name"
                 if ck.owner_uid else f"no ownerReference names TrainingJob {job.name}")
        return Verdict(ck.name, False, NOT_OWNED, f"{whose}; this job's UID is {job.uid}")
    return None


def reported_step(job: ObservedJob, status: TrainingJobStatus, attempt: int) -> int | None:
    """The highest step rank 0 of `attempt` is seen to have reported as progress: status.progress of that
    attempt, or the report on its rank 0 pod (None: no report seen)."""
    steps = [p.progress.step for p in job.pods if p.attempt == attempt and p.rank == 0 and p.progress is not None]
    if status.progress is not None and status.progress.attempt == attempt:
        steps.append(status.progress.step)
    return max(steps, default=None)


def _after_its_rank0(job: ObservedJob, status: TrainingJobStatus, ck: ObservedCheckpoint) -> bool:
    """A save made after its attempt stopped (the graceful save on SIGTERM), while the operator waits for it,
    once its rank 0 pod is gone."""
    this = next((h for h in reversed(status.history) if h.attempt == ck.attempt), None)
    if this is None or this.end_time is None or job.spec.checkpoint is None:
        return False
    if any(p.attempt == ck.attempt and p.rank == 0 for p in job.pods):
        return False
    ended = this.end_time.replace(microsecond=0)  # creationTimestamp has whole seconds
    return ended <= ck.created <= this.end_time + timedelta(seconds=job.spec.checkpoint.graceful_save_seconds)


def _fall_back(job: ObservedJob, status: TrainingJobStatus, plan: JobPlan) -> None:
    """The recorded Checkpoint was deleted: the newest remaining one the job accepted, else none."""
    recorded = status.last_checkpoint
    if recorded is None or recorded.name is None or any(c.name == recorded.name for c in job.checkpoints):
        return
    kept = [c for c in job.checkpoints if c.verdict == "True" and c.complete and provenance(job, c) is None]
    newest = max(kept, key=lambda c: (c.step, c.created, c.name), default=None)
    gone = f"Checkpoint {recorded.name} (step {recorded.step}) was deleted"
    if newest is None:
        status.last_checkpoint = None
        plan.events.append(Event("Warning", "CheckpointDeleted", f"{gone} and the job accepted no other: its next "
                                                                 f"attempt starts from scratch"))
        return
    status.last_checkpoint = CheckpointRecord(step=newest.step, uri=newest.uri, time=newest.created,
                                              world_size=newest.world_size, attempt=newest.attempt, name=newest.name,
                                              save_seconds=newest.save_seconds)
    plan.events.append(Event("Warning", "CheckpointDeleted", f"{gone}: the job falls back to {newest.name} (step "
                                                             f"{newest.step}, accepted before)"))


def judge_orphans(checkpoints: Mapping[tuple[str, str], Iterable[ObservedCheckpoint]],
                  jobs_present: Collection[tuple[str, str]], now: datetime | Deadlines) -> list[tuple[str, Verdict]]:
    """(namespace, verdict) for each unjudged Checkpoint whose job (namespace, name) is not present, once it is
    ORPHAN_GRACE old; a Deadlines notes when the next one comes of age."""
    clock = now if isinstance(now, Deadlines) else Deadlines(now)
    out = []
    for (namespace, job), reported in checkpoints.items():
        if (namespace, job) in jobs_present:
            continue
        for ck in reported:
            if ck.verdict is None and clock.reached(ck.created + ORPHAN_GRACE):
                out.append((namespace, Verdict(ck.name, False, NO_SUCH_JOB,
                                               f"there is no TrainingJob {job} in namespace {namespace}")))
    return out


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
