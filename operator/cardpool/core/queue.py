"""The pool's queue: who starts now, who waits, and the reservation that keeps big gangs from starving.

Order: priority (high first), then submission time, then name. Jobs are placed in that order while they fit.
The first job that does not fit gets a reservation: the cards of the topology block it would need the
fewest running jobs to leave (placed by the same rule as a real placement, on capacity counted as if
cardpool's jobs had left). Jobs behind it are backfilled only onto cards outside the reservation, so a
stream of small jobs can never take what the head job waits for, and backfill never delays it: the cards it
waits on only become free, never taken. The reservation is recomputed from the snapshot on every pass (no
hidden state); as running jobs in its block end, the same block only gets closer to fitting.

Every placement, reservation and the "even on an empty pool" test use only the nodes a job's pod template
admits (its nodeSelector, required node affinity and tolerations, core.constraints).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from .constraints import TOLERATIONS
from .fragmentation import GroupFragmentation, fragmentation
from .placement import Ledger, Placement, place, throughputs
from .quota import QueueAdmission, Tally
from .snapshot import JobRequest, Snapshot

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NO_NODE_MATCHES = "NoNodeMatchesTemplate"
NEVER = frozenset({"Unplaceable", NO_NODE_MATCHES})
"""Reasons a job waits that no job ending will change: only an edit of the job or the pool will."""


@dataclass(frozen=True, slots=True)
class Waiting:
    job: str
    reason: str
    """CamelCase: Reserved (holds the reservation), BehindReservation, Unplaceable (no listed model fits
    even an empty pool), NoNodeMatchesTemplate (no node of its models satisfies the pod template's node
    selector, required affinity or tolerations), NoCapacity."""
    message: str


@dataclass(frozen=True)
class QueuePlan:
    """The outcome of one pass over the queue."""

    admitted: tuple[Placement, ...]
    waiting: tuple[Waiting, ...]
    reservation: Placement | None
    fragmentation: dict[str, GroupFragmentation]


def queue_order(jobs: tuple[JobRequest, ...] | list[JobRequest], first: str | None = None) -> list[JobRequest]:
    return sorted(jobs, key=lambda j: (j.key != first, -j.priority, j.submitted or _EPOCH, j.key))


def schedule(snapshot: Snapshot, first: str | None = None, admission: QueueAdmission | None = None) -> QueuePlan:
    """Place the pending jobs of `snapshot` on its free cards, in queue order, with one reservation.
    `first`: a job placed before all others, at its minimum size (the target of a defragmentation in flight).
    `admission`: tenant queues (core.quota): a job is placed only where its queue allows the cards; a job its
    queue allows on none of its models waits saying why and holds no reservation; within a priority, queues
    holding the least surplus for their weight go first."""
    ledger = Ledger(snapshot, snapshot.free())
    rates = throughputs(snapshot)
    admitted: list[Placement] = []
    waiting: list[Waiting] = []
    reservation: Placement | None = None
    empty: Ledger | None = None  # the pool as if every pod had left, to tell "later" from "never"
    tally = admission.tally() if admission is not None else None
    blocked: dict[str, JobRequest] = {}  # waiting for cards (not for quota, not unplaceable)
    order = queue_order(snapshot.pending, first)
    within = within_guarantee(order, tally) if tally is not None else set()
    claims = {q for key in within if (q := tally.queue(key)) in tally.admission.quotas.queues} \
        if tally is not None else set()
    for job in fair_order(order, first, tally, within):
        if job.key == first:
            # the size the moves made room for: taking more would take the places found for the moved jobs,
            # which would then wait, and move it back (it grows later like any elastic job)
            job = replace(job, desired_workers=job.min_workers)
        if tally is None:
            placement = place(job, ledger, rates)
        else:
            # sized within its guarantee while another queue's job within its own waits too (a job stopped to
            # give cards back must not come back larger and take them again); admissions may have used it up
            guaranteed = job.key in within and bool(claims - {tally.queue(job.key)}) and not tally.would_borrow(
                job.key, job.accelerators, job.min_workers * job.cards_per_worker)
            placement, refused, job = _place_within_quota(job, ledger, rates, tally, guaranteed)
            if refused is not None:
                waiting.append(refused)
                continue
        if placement is not None:
            ledger.commit(placement)
            admitted.append(placement)
            if tally is not None:
                tally.add(job.key, placement.cards_by_model())
            continue
        need = f"{job.min_workers} x {job.cards_per_worker} cards of {'/'.join(job.accelerators)}"
        blocked[job.key] = job
        if reservation is None:
            reservation = _reserve(job, ledger, rates)
            if reservation is not None:
                ledger.reserve(reservation)
                waiting.append(Waiting(job.key, "Reserved", f"needs {need}; holds a reservation of "
                                       f"{reservation.cards} cards on {len(reservation.cards_on())} nodes "
                                       f"until running jobs there end"))
                continue
        empty = empty or Ledger(snapshot, {})
        if (never := _never(job, empty, rates, need)) is not None:
            waiting.append(never)
        elif reservation is not None:
            waiting.append(Waiting(job.key, "BehindReservation", f"needs {need}; waits behind {reservation.job}"))
        else:
            waiting.append(Waiting(job.key, "NoCapacity", f"needs {need}"))
    return QueuePlan(tuple(admitted), tuple(_with_room(waiting, blocked, ledger)), reservation,
                     fragmentation(snapshot, {n: ledger.free[n] for n in ledger.free}))


def within_guarantee(order: list[JobRequest], tally: Tally) -> set[str]:
    """The jobs whose queue stays within its guarantee with them (at their minimum size), as the pass begins."""
    return {j.key for j in order if not tally.would_borrow(j.key, j.accelerators, j.min_workers * j.cards_per_worker)}


def fair_order(order: list[JobRequest], first: str | None, tally: Tally | None,
               within: set[str] | None = None) -> Iterator[JobRequest]:
    """`order` (queue order) with tenant queues. Jobs whose queue stays within its guarantee go before jobs
    that would borrow, whatever their priority (as Kueue's scheduler does): a job whose cards were taken back
    for a queue below its guarantee can never take them back in turn. Then, within a priority, the next job
    is the head of the queue holding the least surplus for its weight now (after this pass's admissions so
    far), submission order within a queue and between equal shares; jobs without a queue count as holding
    none and as not borrowing."""
    if tally is None:
        yield from order
        return
    within = within_guarantee(order, tally) if within is None else within
    yield from (j for j in order if j.key == first)
    rest = [j for j in order if j.key != first]
    deferred: list[JobRequest] = []

    def borrows_now(job: JobRequest) -> bool:  # the admissions so far may have used its queue's guarantee up
        return tally.would_borrow(job.key, job.accelerators, job.min_workers * job.cards_per_worker)
    yield from _fair_lanes([j for j in rest if j.key in within], tally, borrows_now, deferred)
    rank = {j.key: i for i, j in enumerate(rest)}
    borrowers = sorted(deferred + [j for j in rest if j.key not in within], key=lambda j: rank[j.key])
    yield from _fair_lanes(borrowers, tally)


def _fair_lanes(order: list[JobRequest], tally: Tally, defer: Callable[[JobRequest], bool] | None = None,
                deferred: list[JobRequest] | None = None) -> Iterator[JobRequest]:
    """Within a priority, the head of the queue holding the least surplus for its weight first; a job `defer`
    says no longer belongs here goes to `deferred` instead."""
    start = 0
    while start < len(order):
        level = -order[start].priority
        end = start
        lanes: dict[str | None, deque[JobRequest]] = {}
        while end < len(order) and -order[end].priority == level:
            lanes.setdefault(tally.queue(order[end].key), deque()).append(order[end])
            end += 1
        while lanes:
            lane = min(lanes, key=lambda q: (tally.share_of(q), lanes[q][0].submitted or _EPOCH, lanes[q][0].key))
            job = lanes[lane].popleft()
            if defer is not None and deferred is not None and defer(job):
                deferred.append(job)
            else:
                yield job
            if not lanes[lane]:
                del lanes[lane]
        start = end


def _place_within_quota(job: JobRequest, ledger: Ledger, rates: dict[str, float], tally: Tally,
                        guaranteed: bool) -> tuple[Placement | None, Waiting | None, JobRequest]:
    """(placement, None, job) where the job's queue allows it; (None, why, job) when its queue allows it on
    none of its models; (None, None, job) when the quota allows it but nothing fits now (`job` then as the
    reservation should see it: on the models its queue allows). An elastic job is sized to what its quota
    allows (`guaranteed`: placed before the jobs that borrow while other queues' jobs within their guarantee
    wait too, it is sized to stay within its queue's guarantee); a placement the
    quota refuses (larger on a model with less room) is tried one model at a time."""
    models, refusal = tally.allowed(job.key, job.accelerators, job.min_workers * job.cards_per_worker)
    if refusal is not None:
        return None, Waiting(job.key, refusal.reason, refusal.message), job
    if models != job.accelerators:
        job = replace(job, accelerators=models)
    placement = place(_capped(job, tally, guaranteed), ledger, rates)
    if placement is None or tally.refuses(job.key, placement.cards_by_model()) is None:
        return placement, None, job
    for model in models:
        one = place(_capped(replace(job, accelerators=(model,)), tally, guaranteed), ledger, rates)
        if one is not None and tally.refuses(job.key, one.cards_by_model()) is None:
            return one, None, job
    refusal = tally.refuses(job.key, placement.cards_by_model())
    return None, Waiting(job.key, refusal.reason, refusal.message), job


def _capped(job: JobRequest, tally: Tally, guaranteed: bool = False) -> JobRequest:
    """The job at most as large as its queue's room on its models allows (the roomiest; unchanged when one of
    them is not limited); `guaranteed`: the room within its queue's guarantee."""
    rooms = [tally.room(job.key, m, guaranteed) for m in job.accelerators]
    if None in rooms or not rooms:
        return job
    top = max(rooms) // job.cards_per_worker // job.unit * job.unit
    if top >= job.max_workers:
        return job
    top = max(top, job.min_workers)
    return replace(job, max_workers=top, desired_workers=min(job.desired_workers or top, top))


def _with_room(waiting: list[Waiting], blocked: dict[str, JobRequest], ledger: Ledger) -> Iterator[Waiting]:
    """The waits for cards, each with how far the pool is from fitting the job now, in its own units (what a
    user can act on: a smaller size, another model). Computed once per shape of job, after the pass."""
    said: dict[tuple, str] = {}
    for wait in waiting:
        job = blocked.get(wait.job)
        if job is None or wait.reason in NEVER:
            yield wait
            continue
        shape = (job.accelerators, job.cards_per_worker, job.constraint)
        if shape not in said:
            allowed = ledger.snapshot.eligible(job.constraint)
            fits = {m: sum(ledger.free.get(n.name, 0) // job.cards_per_worker
                           for n in ledger.nodes_by_model.get(m, ())
                           if n.healthy and n.schedulable and (allowed is None or n.name in allowed))
                    for m in dict.fromkeys(job.accelerators)}
            said[shape] = "free now: room for " + ", ".join(f"{n} on {m}" for m, n in fits.items()) + \
                f" (workers of {job.cards_per_worker} cards)"
        yield replace(wait, message=f"{wait.message}; {said[shape]}")


def _reserve(job: JobRequest, ledger: Ledger, rates: dict[str, float]) -> Placement | None:
    """Where `job` would start at its minimum size once cardpool's jobs left the cards it needs."""
    return place(replace(job, desired_workers=job.min_workers), ledger, rates, for_reservation=True)


def _never(job: JobRequest, empty: Ledger, rates: dict[str, float], need: str) -> Waiting | None:
    """Why `job` could not start even on the empty pool (`empty`), naming what of its template (node selector,
    required affinity, tolerations) narrows its nodes when that is why; None when it could."""
    if _reserve(job, empty, rates) is not None:
        return None
    allowed = empty.snapshot.eligible(job.constraint)
    models = [m for m in dict.fromkeys(job.accelerators) if m in empty.nodes_by_model]
    candidates = [n for m in models for n in empty.nodes_by_model.get(m, ())]
    if allowed is None or not candidates:
        return Waiting(job.key, "Unplaceable", f"needs {need}: more than the pool's healthy nodes can hold even "
                                               f"when empty")
    constraint = job.constraint
    kind = f"{len(candidates)} {'/'.join(models)} node{'s' if len(candidates) != 1 else ''}"
    selected = [n for n in candidates if constraint.selects(n.name, n.labels)]
    matching = sum(1 for n in selected if n.name in allowed)
    if not selected:
        return Waiting(job.key, NO_NODE_MATCHES, f"{constraint} matches none of the pool's {kind}")
    what = [str(constraint)] if constraint.narrows else []
    if matching < len(selected):
        what.append(TOLERATIONS)
    if not matching:
        taints = sorted({str(t) for n in selected for t in constraint.untolerated(n.taints)})
        shown = ", ".join(taints[:4]) + (f" and {len(taints) - 4} more" if len(taints) > 4 else "")
        where = f"{len(selected)} of the pool's {kind} that {constraint} selects" if constraint.narrows \
            else f"pool's {kind}"
        return Waiting(job.key, NO_NODE_MATCHES, f"each of the {where} has a taint that neither {TOLERATIONS} nor "
                                                 f"its node group's tolerations tolerate: {shown}")
    return Waiting(job.key, "Unplaceable", f"needs {need}: more than the {matching} of the pool's {kind} that "
                                           f"{' and '.join(what)} admit{'s' if len(what) == 1 else ''} can hold "
                                           f"even when empty")
