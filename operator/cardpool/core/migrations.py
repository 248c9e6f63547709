"""A pool's defragmentation, decided once per pass: whether to move jobs now, which, and for whom.

- The blocked head of the queue (the job holding the reservation) gets a plan (core.defrag) when
  defragmentation is enabled and no earlier defragmentation is still in flight. Movable: running jobs that
  checkpoint, allow migration (spec.placement.allowMigration), and are elastic when the pool moves only
  elastic jobs.
- Jobs whose pods a PodDisruptionBudget protects (fewer disruptions allowed than the job has pods) stay.
- A job moved in the last hour is not moved again (each job pays for at most one move an hour), and a job
  is never moved for one that was moved to make room for it: without both, two jobs that each need the
  other's cards move each other in turn, as preemption loops do elsewhere (Kueue #3779, Volcano #3869).
- With no gang blocked, background compaction carves out one more whole node in a group whose
  fragmentation has stayed above the threshold for compactionAfterSeconds.
- A plan is carried out only within the budget: moves in the last hour below maxMigrationsPerHour, moves in
  flight (moved jobs not yet placed again) within maxConcurrentMigrations. In dry-run mode it is only
  reported.
- While its moves are in flight the target is placed first in the queue (core.queue.schedule's `first`),
  so the cards the moves free go to it and the moved jobs take the places the plan found for them.
The pool's status is the memory: the target, when it started, the moves of the last hour.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cardpool.api.cardpool import (
    DefragmentationPolicy,
    DefragmentationStatus,
    Migration,
    MovableJobs,
)
from cardpool.api.trainingjob import Phase

from .candidates import request
from .defrag import DefragPlan, Movable, plan_defrag
from .lifecycle import MIGRATED
from .observed import ObservedBudget, ObservedJob
from .queue import QueuePlan
from .snapshot import JobRequest, Snapshot

HOUR = timedelta(hours=1)
TARGET_TIMEOUT = timedelta(minutes=15)
COMPACTION = "compaction/"


@dataclass
class DefragDecision:
    status: DefragmentationStatus | None
    migrate: dict[str, str] = field(default_factory=dict)
    """job key -> why it moves (for its status and events)."""
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """Pool events: (type, reason, message)."""


def active_target(previous: DefragmentationStatus | None, jobs: list[ObservedJob], now: datetime) -> str | None:
    """The target of moves still in flight, which the queue places first; None when there is none."""
    if previous is None or previous.target is None or previous.since is None:
        return None
    if now - previous.since > TARGET_TIMEOUT:
        return None
    if previous.target.startswith(COMPACTION):
        return previous.target if in_flight(jobs, now) else None
    target = next((j for j in jobs if j.key == previous.target), None)
    if target is None or target.status.phase not in (None, Phase.QUEUED, Phase.RESTARTING):
        return None
    return previous.target


def in_flight(jobs: list[ObservedJob], now: datetime) -> list[str]:
    """Moved jobs not yet placed again, moved within TARGET_TIMEOUT (one that cannot find a place for longer
    waits in the queue like any other job and no longer holds the budget)."""
    return [j.key for j in jobs if j.status.phase in (Phase.RESTARTING, Phase.QUEUED) and j.status.history
            and j.status.history[-1].end_reason == MIGRATED and j.status.history[-1].end_time is not None
            and now - j.status.history[-1].end_time <= TARGET_TIMEOUT]


def movable(policy: DefragmentationPolicy, jobs: list[ObservedJob], snapshot: Snapshot, now: datetime,
            budgets: tuple[ObservedBudget, ...] = (), recent: list[Migration] | tuple[Migration, ...] = (),
            target: str | None = None) -> list[Movable]:
    """`recent`: the moves of the last hour; `target`: the job the moves would make room for."""
    out = []
    held = {a.job: sum(w.cards for w in a.workers) for a in snapshot.allocations}
    moved = {m.job for m in recent}
    made_room_for_target = {m.made_room_for for m in recent if m.job == target} if target else set()
    for job in jobs:
        spec, status = job.spec, job.status
        if status.phase != Phase.RUNNING or not spec.placement.allow_migration or spec.checkpoint is None:
            continue
        if job.key in moved or job.key in made_room_for_target:
            continue
        if _budget_forbids(job, budgets):
            continue
        if policy.movable_jobs == MovableJobs.ELASTIC and spec.workers.size.min >= spec.workers.size.max:
            continue
        since = status.last_checkpoint.time if status.last_checkpoint else (status.attempt_start_time or now)
        lost = held.get(job.key, 0) * max((now - since).total_seconds(), 0.0)
        out.append(Movable(request(job), status.workers, lost))
    return out


def _budget_forbids(job: ObservedJob, budgets: tuple[ObservedBudget, ...]) -> bool:
    """A move stops every pod of the job: a PodDisruptionBudget over them that allows fewer disruptions
    than that forbids the move (a voluntary disruption, as a drain's eviction would be)."""
    labels = [{**((job.spec.workers.template.get("metadata") or {}).get("labels") or {}), **dict(p.labels)}
              for p in job.pods]
    return any(b.namespace == job.namespace and b.disruptions_allowed < sum(b.selects(lb) for lb in labels)
               for b in budgets)


def decide_defrag(policy: DefragmentationPolicy, previous: DefragmentationStatus | None, snapshot: Snapshot,
                  queue: QueuePlan, jobs: list[ObservedJob], fragmented_since: dict[str, datetime | None],
                  pool_fragmentation: int, now: datetime,
                  budgets: tuple[ObservedBudget, ...] = ()) -> DefragDecision:
    """`fragmented_since`: per group, since when its fragmentation has been above the threshold."""
    if not policy.enabled:
        return DefragDecision(None)
    status = (previous or DefragmentationStatus()).model_copy(deep=True)
    status.migrations = [m for m in status.migrations if now - m.time < HOUR] or status.migrations[-1:]
    status.planned, status.waiting = [], ""
    decision = DefragDecision(status)
    target = active_target(previous, jobs, now)
    if previous is not None and previous.target is not None and target is None:  # the last one is over
        status.fragmentation_after_percent = pool_fragmentation
        decision.events.append(("Normal", "DefragmentationDone", f"{previous.target}: fragmentation "
                                f"{previous.fragmentation_before_percent}% before, {pool_fragmentation}% now"))
        status.target = status.since = None
    if target is not None:
        return decision  # one defragmentation at a time
    recent = [m for m in status.migrations if now - m.time < HOUR]
    plan = _plan(policy, snapshot, queue, jobs, fragmented_since, now, budgets, recent)
    if plan is None or not plan.moves:
        return decision
    moves = "; ".join(f"{m.job} -> {','.join(sorted(m.to.cards_on()))}" for m in plan.moves)
    if policy.dry_run:
        status.planned = [f"{m.job} -> {','.join(sorted(m.to.cards_on()))}" for m in plan.moves]
        if (previous.planned if previous else []) != status.planned:
            decision.events.append(("Normal", "DefragmentationPlanned", f"dry run, for {plan.target}: {moves}"))
        return decision
    flying = in_flight(jobs, now)
    room = min(policy.max_migrations_per_hour - len(recent), policy.max_concurrent_migrations - len(flying))
    if len(plan.moves) > room:
        status.waiting = (f"{plan.target} needs {len(plan.moves)} moves; the budget allows {max(room, 0)} now "
                          f"({len(recent)} of {policy.max_migrations_per_hour} this hour, {len(flying)} in flight)")
        if (previous.waiting if previous else "") != status.waiting:
            decision.events.append(("Normal", "DefragmentationWaiting", status.waiting))
        return decision
    status.target, status.since, status.fragmentation_before_percent = plan.target, now, pool_fragmentation
    status.fragmentation_after_percent = None
    allocations = {a.job: a for a in snapshot.allocations}
    for move in plan.moves:
        status.migrations.append(Migration(
            job=move.job, made_room_for="" if plan.target.startswith(COMPACTION) else plan.target, time=now,
            from_nodes=sorted(allocations[move.job].cards_on()), to_nodes=sorted(move.to.cards_on()),
            lost_card_seconds=round(move.lost_work)))
        why = "compaction of group " + plan.target[len(COMPACTION):] if plan.target.startswith(COMPACTION) \
            else f"making room for {plan.target}"
        decision.migrate[move.job] = f"moved by defragmentation ({why}) to {','.join(sorted(move.to.cards_on()))}"
    status.migrations = status.migrations[-50:]
    decision.events.append(("Normal", "Defragmenting", f"for {plan.target}: {moves}"))
    return decision


def _plan(policy: DefragmentationPolicy, snapshot: Snapshot, queue: QueuePlan, jobs: list[ObservedJob],
          fragmented_since: dict[str, datetime | None], now: datetime,
          budgets: tuple[ObservedBudget, ...], recent: list[Migration]) -> DefragPlan | None:
    # the cards the queue gave out this pass are taken
    snapshot = replace(snapshot, allocations=snapshot.allocations + tuple(queue.admitted))
    if queue.reservation is not None:
        head = next((r for r in snapshot.pending if r.key == queue.reservation.job), None)
        if head is None:
            return None
        return plan_defrag(snapshot, head, movable(policy, jobs, snapshot, now, budgets, recent, head.key))
    candidates = movable(policy, jobs, snapshot, now, budgets, recent)
    for group in snapshot.groups:
        since = fragmented_since.get(group.name)
        if since is None or now - since < timedelta(seconds=policy.compaction_after_seconds):
            continue
        figures = queue.fragmentation.get(group.name)
        whole = figures.whole_free_nodes if figures else 0
        carve = JobRequest(key=f"{COMPACTION}{group.name}", cards_per_worker=group.cards_per_node,
                           min_workers=whole + 1, max_workers=whole + 1, accelerators=(group.model,),
                           priority=1000)
        if (plan := plan_defrag(snapshot, carve, candidates)) is not None and plan.moves:
            return plan
    return None
