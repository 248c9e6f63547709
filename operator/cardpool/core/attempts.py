"""An attempt as the job's status records it: its pods' names, the hash of what shapes them, its placement per
group, each rank's node; starting one (recorded before any of its pods exists), and whether the spec has
outgrown the live one."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from cardpool.api.trainingjob import (
    AttemptRecord,
    GroupPlacement,
    PlacementMode,
    TrainingJobSpec,
    TrainingJobStatus,
)

from .events import Event
from .observed import ObservedJob
from .placement import Placement
from .plan import JobPlan, RankSlot
from .split import rank_shares


def pod_name(job: str, attempt: int, rank: int) -> str:
    return f"{job}-a{attempt}-{rank}"


HISTORY = 20
"""Attempts a job's status keeps in its history."""

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


def start_attempt(job: ObservedJob, status: TrainingJobStatus, offer: Placement, now: datetime,
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
