"""Lent cards taken back, decided once per pool pass after the queue: for each job that waits for cards while
its queue is below its guarantee, the borrowers that give them back (core.quota.reclaim chooses: elastic ones
first, then least work lost since their checkpoint, lowest priority, most recently started). Pure.

A victim stops with a graceful save and waits in the queue again (an elastic one comes back smaller at once,
within what its queue may still borrow): core.lifecycle carries the stop out. Nothing loops: the claimant's
queue ends within its guarantee, the queue pass places jobs that stay within their guarantee before any that
would borrow (core.queue.fair_order), and a victim's queue keeps at least its own guarantee. A job within its
queue's minimum runtime, or already stopped `max_per_hour` times for reclaim in the last hour, is never a
victim. Cards already being given back (victims still saving or ending) and cards free count towards the claim,
so a claim does not take more victims on every pass while the first ones save. A job waiting behind the
reservation of one that nothing frees claims nothing: the cards would go to neither."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cardpool.api.trainingjob import Phase

from .lifecycle import RECLAIMED
from .observed import ObservedJob
from .queue import QueuePlan, Waiting
from .quota import Candidate, Protection, QueueAdmission, Quotas, reclaim
from .tenants import held_cards

HOUR = timedelta(hours=1)
WAITS_FOR_CARDS = ("Reserved", "BehindReservation", "NoCapacity")


@dataclass
class ReclaimPlan:
    stops: dict[str, str] = field(default_factory=dict)
    """Victim job key -> why (which queue takes which cards back, for which job)."""
    waits: dict[str, Waiting] = field(default_factory=dict)
    """Claimant job key -> its wait, saying whom it waits for."""


def plan_reclaim(admission: QueueAdmission, queue: QueuePlan, jobs: list[ObservedJob],
                 free: Mapping[str, list[int]], now: datetime) -> ReclaimPlan:
    """`jobs`: the pool's jobs that may be decided now; `free`: per model, each schedulable node's free cards
    once this pass's admissions are placed (a claim takes back only what whole workers of its shape there do
    not cover)."""
    plan = ReclaimPlan()
    quotas = admission.quotas
    tally = admission.tally()
    for placement in queue.admitted:
        tally.add(placement.job, placement.cards_by_model())
    usage = tally.usage
    by_key = {j.key: j for j in jobs}
    freeing = _being_given_back(jobs)
    giving_back = any(freeing.values())
    spare = {model: list(cards) for model, cards in free.items()}
    candidates = [c for j in jobs if (c := _candidate(j, admission, quotas, usage, now)) is not None]
    for wait in queue.waiting:
        job = by_key.get(wait.job)
        claimant = admission.queue_of.get(wait.job)
        if job is None or wait.reason not in WAITS_FOR_CARDS or claimant not in quotas.queues:
            continue
        if wait.reason == "BehindReservation" and (queue.reservation is None or (
                queue.reservation.job not in plan.waits)):
            continue  # cards given back would wait for the reservation's holder, which nothing is freeing
        need = job.spec.workers.size.min * job.spec.workers.cards_per_worker
        model = next((m for m in job.spec.placement.accelerators
                      if quotas.below_guarantee(usage, claimant, m, need)), None)
        if model is None:
            continue
        cards = job.spec.workers.cards_per_worker
        coming = _take(spare.get(model, []), cards, need // cards) * cards
        returning = min(freeing.get(model, 0), need - coming)
        freeing[model] = freeing.get(model, 0) - returning
        coming += returning
        if coming >= need:
            _claimed(usage, quotas, claimant, model, need)
            if giving_back:
                plan.waits[wait.job] = replace(wait, reason="WaitingForReclaim", message=(
                    f"{wait.message}; queue {claimant} is below its guarantee of {model}: waiting for the cards "
                    f"lent to other queues to come back (their jobs save and stop)"))
            continue
        found = reclaim(quotas, usage, claimant, model, need - coming, candidates, now, timedelta(0))
        if found is None:
            continue
        _claimed(usage, quotas, claimant, model, need)
        victims = []
        for key, cards, how in found.victims:
            victim = next(c for c in candidates if c.key == key)
            plan.stops[key] = (f"queue {claimant} takes back {cards} {model} cards lent to queue {victim.queue} "
                               f"for job {wait.job} ({'shrinks' if how == 'Shrink' else 'stops'})")
            victims.append(key)
            for node in quotas.path(victim.queue):  # its whole hold leaves until it is admitted again
                usage[node.name][model] = usage[node.name].get(model, 0) - victim.cards
        candidates = [c for c in candidates if c.key not in plan.stops]
        plan.waits[wait.job] = replace(wait, reason="WaitingForReclaim", message=(
            f"{wait.message}; queue {claimant} is below its guarantee of {model}: taking back lent cards from "
            f"{', '.join(victims)} (a graceful save, then they stop)"))
    return plan


def _claimed(usage: dict[str, dict[str, int]], quotas: Quotas, queue: str, model: str, cards: int) -> None:
    """The claim will hold these cards: the next claim of the queue (or its ancestors) sees them."""
    for node in quotas.path(queue):
        usage[node.name][model] = usage[node.name].get(model, 0) + cards


def _take(free: list[int], cards: int, workers: int) -> int:
    """Workers of `cards` cards taken from the nodes' free cards (at most `workers`); `free` is updated."""
    taken = 0
    for i, room in enumerate(free):
        while room >= cards and taken < workers:
            room -= cards
            taken += 1
        free[i] = room
    return taken


def _being_given_back(jobs: list[ObservedJob]) -> dict[str, int]:
    """Cards of each model that victims stopped for reclaim still hold (their pods saving or ending)."""
    out: dict[str, int] = {}
    for job in jobs:
        last = job.status.history[-1] if job.status.history else None
        if last is None or last.end_reason != RECLAIMED or not job.pods:
            continue
        cards = sum(1 for p in job.pods if p.phase not in ("Succeeded", "Failed")) * job.spec.workers.cards_per_worker
        model = last.accelerator.split("+")[0]
        out[model] = out.get(model, 0) + cards
    return out


def _candidate(job: ObservedJob, admission: QueueAdmission, quotas: Quotas, usage: Mapping[str, Mapping[str, int]],
               now: datetime) -> Candidate | None:
    """The job as a possible victim: running, in a queue borrowing its model, past its minimum runtime and
    its hourly limit of reclaims."""
    status = job.status
    queue = admission.queue_of.get(job.key)
    if status.phase != Phase.RUNNING or queue not in quotas.queues or not status.placement:
        return None
    held = held_cards(job)
    if len(held) != 1:  # a job spanning models is not a victim: taking one model back stops both
        return None
    (model, cards), = held.items()
    if quotas.borrowed(usage, queue, model) <= 0:
        return None
    guard = admission.protection.get(queue, Protection())
    started = status.attempt_start_time or now
    recent = sum(1 for h in status.history if h.end_reason == RECLAIMED and h.end_time is not None
                 and now - h.end_time < HOUR)
    if now - started < guard.min_runtime or recent >= guard.max_per_hour:
        return None
    size = job.spec.workers.size
    shrinkable = (status.workers - size.min) * job.spec.workers.cards_per_worker if status.workers > size.min else 0
    saved = status.last_checkpoint.time if status.last_checkpoint else started
    lost = cards * max((now - max(saved, started)).total_seconds(), 0.0)  # an attempt resumes from its save
    return Candidate(job.key, queue, model, cards, shrinkable, lost, job.spec.priority, started)
