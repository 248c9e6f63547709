"""What the pool's pass asks of a job before deciding it: whether its queue should consider the job now, and
what the queue, sizing and defragmentation see of it. (The job's own transitions are core.lifecycle's.)"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType

from cardpool.api.trainingjob import Phase, TrainingJobSpec, TrainingJobStatus

from .clock import Deadlines
from .constraints import from_template
from .health import LOST
from .observed import ObservedJob, ObservedPod
from .snapshot import JobRequest

_NONE: Mapping[str, str] = MappingProxyType({})


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


def request(job: ObservedJob) -> JobRequest:
    """What the queue, sizing and defragmentation see of a job."""
    spec = job.spec
    return JobRequest(
        key=job.key, cards_per_worker=spec.workers.cards_per_worker, min_workers=spec.workers.size.min,
        max_workers=spec.workers.size.max, unit=spec.workers.size.unit, desired_workers=spec.workers.size.desired,
        accelerators=tuple(spec.placement.accelerators),
        mode=spec.placement.mode, packing=spec.placement.topology_packing, priority=spec.priority,
        submitted=job.created, constraint=from_template(spec.workers.template))

