"""Tenant quotas, decided: whether a waiting job's queue allows it now, in which order surplus goes to the
queues, and which borrowers give cards back when a queue below its guarantee waits. Pure. The pool's queue
(core.queue.schedule) admits by quota and placement together when given a QueueAdmission, which the pool pass
builds from the TenantQueue objects (core.tenants); core.reclaim calls `reclaim` and core.lifecycle carries its
stops out.

Queues form a tree (an organisation, its teams). Each queue has, per accelerator model, a guaranteed number of
cards, a borrowing limit (how far above its guarantee it may go) and a cap; a weight for sharing surplus. A
queue's usage is its own jobs' cards plus its children's. A job is allowed when, at its queue and at every
ancestor, the usage it would bring stays within the cap and within guarantee + borrowing limit. Whether the
cards exist is the placement's question, asked next: quota is a promise, not capacity.

Reclaim. A queue that waits while below its guarantee takes cards back from queues above theirs (borrowers):
the claimant must end within its own guarantee, and victims come only from queues borrowing that model (each
keeps at least its own guarantee), so a victim can never take the cards back in turn (the claimant is not
borrowing): no loops. Guarantees are compared queue by queue; an ancestor's guarantee does not enter reclaim.
Victims are tried elastic first (shrinking within their bounds frees cards without a stop), then by least work
lost since their checkpoint, lowest priority, most recently started; a job within its minimum runtime is never
a victim.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Limit:
    """One queue's quota for one accelerator model, in cards."""

    guaranteed: int = 0
    borrowing_limit: int | None = None
    """Cards above `guaranteed` the queue may hold (None: no limit but the cap)."""
    cap: int | None = None


@dataclass(frozen=True)
class TenantQueue:
    name: str
    limits: Mapping[str, Limit] = field(default_factory=dict)
    """accelerator model -> its limit; a model not listed has no guarantee and no limit."""
    parent: str | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class Refusal:
    """Why a queue does not allow a job now, with the figures."""

    queue: str
    """The queue whose limit is reached (the job's own or an ancestor)."""
    reason: str
    message: str


Usage = Mapping[str, Mapping[str, int]]
"""queue -> accelerator model -> cards held."""


class Quotas:
    """A validated tree of queues (equal when their queues are)."""

    def __init__(self, queues: Iterable[TenantQueue]):
        self.queues = {q.name: q for q in queues}
        for q in self.queues.values():
            if q.parent is not None and q.parent not in self.queues:
                raise ValueError(f"queue {q.name}: spec.parent {q.parent!r} is not a queue")
            if q.weight <= 0:
                raise ValueError(f"queue {q.name}: spec.weight must be > 0, got {q.weight}")
            for model, limit in q.limits.items():
                if limit.cap is not None and limit.cap < limit.guaranteed:
                    raise ValueError(f"queue {q.name}: {model}: cap {limit.cap} is below guaranteed "
                                     f"{limit.guaranteed}")
            seen, node = {q.name}, q
            while node.parent is not None:
                if node.parent in seen:
                    raise ValueError(f"queue {q.name}: spec.parent makes a cycle through {node.parent}")
                seen.add(node.parent)
                node = self.queues[node.parent]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quotas) and other.queues == self.queues

    __hash__ = None  # type: ignore[assignment]

    def path(self, queue: str) -> list[TenantQueue]:
        """The queue and its ancestors, nearest first."""
        out, node = [], self.queues[queue]
        while True:
            out.append(node)
            if node.parent is None:
                return out
            node = self.queues[node.parent]

    def rolled_up(self, held: Usage) -> dict[str, dict[str, int]]:
        """Each queue's usage: its own jobs' cards and its descendants'."""
        out: dict[str, dict[str, int]] = {name: {} for name in self.queues}
        for queue, models in held.items():
            for node in self.path(queue):
                for model, cards in models.items():
                    out[node.name][model] = out[node.name].get(model, 0) + cards
        return out

    def bounds(self, usage: Usage, queue: str, model: str) -> Iterator[tuple[str, str, int, int, Limit]]:
        """(queue, kind, bound, held, limit) for each cap ("QuotaCapReached") and each guarantee plus borrowing
        limit ("BorrowingLimitReached") of `model` on the queue's path (`usage`: rolled up)."""
        for node in self.path(queue):
            limit = node.limits.get(model)
            if limit is None:
                continue
            held = usage.get(node.name, {}).get(model, 0)
            if limit.cap is not None:
                yield node.name, "QuotaCapReached", limit.cap, held, limit
            if limit.borrowing_limit is not None:
                yield node.name, "BorrowingLimitReached", limit.guaranteed + limit.borrowing_limit, held, limit

    def allows(self, usage: Usage, queue: str, model: str, cards: int) -> Refusal | None:
        """Whether `queue` may take `cards` more of `model` (`usage`: rolled up); None when it may."""
        for name, kind, bound, held, limit in self.bounds(usage, queue, model):
            if held + cards <= bound:
                continue
            if kind == "QuotaCapReached":
                return Refusal(name, kind, f"queue {name} holds {held} of its cap of {bound} {model} cards; "
                                           f"this job needs {cards}")
            return Refusal(name, kind, f"queue {name} holds {held} {model} cards (guaranteed {limit.guaranteed}, "
                                       f"may borrow {limit.borrowing_limit}); this job needs {cards}")
        return None

    def borrowed(self, usage: Usage, queue: str, model: str) -> int:
        limit = self.queues[queue].limits.get(model, Limit())
        return max(usage.get(queue, {}).get(model, 0) - limit.guaranteed, 0)

    def below_guarantee(self, usage: Usage, queue: str, model: str, cards: int) -> bool:
        """Whether `queue` would still be within its guarantee of `model` with `cards` more: such a claim may
        take cards back from borrowers."""
        limit = self.queues[queue].limits.get(model)
        return limit is not None and usage.get(queue, {}).get(model, 0) + cards <= limit.guaranteed

    def share(self, usage: Usage, queue: str) -> float:
        """How far the queue is above its guarantees, over its weight (its largest such figure over its models;
        negative while it is below them all): cards go to the queue with the smallest share first, so a
        queue below its guarantee before any queue above its own."""
        q = self.queues[queue]
        held = usage.get(queue, {})
        over = [held.get(m, 0) - limit.guaranteed for m, limit in q.limits.items()]
        over += [cards for m, cards in held.items() if m not in q.limits]
        return max(over, default=0) / q.weight


@dataclass(frozen=True)
class Candidate:
    """A running job that could give cards back."""

    key: str
    queue: str
    model: str
    cards: int
    """Cards of `model` it holds."""
    shrinkable: int
    """Cards it would give back by shrinking to its minimum size (0: a fixed-size job)."""
    lost_card_s: float
    """Card-seconds since its last checkpoint: the work a stop would lose."""
    priority: int
    started: datetime


@dataclass(frozen=True)
class Reclaim:
    """Victims, each with the cards it gives back and how (shrink: restart at a smaller size)."""

    victims: tuple[tuple[str, int, str], ...]
    """(job key, cards given back, "Shrink" | "Stop")."""

    @property
    def cards(self) -> int:
        return sum(c for _, c, _ in self.victims)


def reclaim(quotas: Quotas, usage: Usage, claimant: str, model: str, needed: int, candidates: Iterable[Candidate],
            now: datetime, min_runtime: timedelta = timedelta(minutes=10)) -> Reclaim | None:
    """Victims that give `needed` cards of `model` back for a job of queue `claimant`, or None when the claim
    may not reclaim (it would end above its guarantee) or the borrowers cannot give enough. A victim's queue
    keeps at least its guarantee: only what it borrowed is taken back."""
    if needed <= 0 or not quotas.below_guarantee(usage, claimant, model, needed):
        return None
    lendable = {q: quotas.borrowed(usage, q, model) for q in quotas.queues if q != claimant}
    eligible = [c for c in candidates if c.model == model and c.queue != claimant and lendable.get(c.queue, 0) > 0
                and now - c.started >= min_runtime]
    order = sorted(eligible, key=lambda c: (c.shrinkable == 0, c.lost_card_s, c.priority, -c.started.timestamp()))
    victims: list[tuple[str, int, str]] = []
    freed = 0
    for c in order:
        if freed >= needed:
            break
        room = lendable[c.queue]
        if c.shrinkable and c.shrinkable <= room:
            give, how = min(c.shrinkable, room), "Shrink"
        elif c.cards <= room:
            give, how = c.cards, "Stop"
        else:
            continue  # stopping it would take the queue below its guarantee
        victims.append((c.key, give, how))
        lendable[c.queue] = room - give
        freed += give
    if freed < needed:
        return None
    for victim in reversed(list(victims)):  # one chosen later may have made an earlier one unneeded
        if freed - victim[1] >= needed:
            victims.remove(victim)
            freed -= victim[1]
    return Reclaim(tuple(victims))


@dataclass(frozen=True)
class Protection:
    """A queue's protection of its running jobs from reclaim."""

    min_runtime: timedelta = timedelta(minutes=10)
    max_per_hour: int = 2
    """Times a job may be stopped for reclaim in an hour."""


@dataclass(frozen=True)
class QueueAdmission:
    """What one pass of the pool's queue needs of the tenants: their tree, which queue each job belongs to (a
    job without one is not limited), and what the queues' jobs hold (by queue and model, not rolled up)."""

    quotas: Quotas
    queue_of: Mapping[str, str]
    held: Usage
    unusable: Mapping[str, str] = field(default_factory=dict)
    """queue -> why its spec cannot be used: its jobs wait saying so."""
    protection: Mapping[str, Protection] = field(default_factory=dict)
    """queue -> how its running jobs are protected from reclaim (default: Protection())."""
    allowed: Mapping[str, frozenset[str]] | None = None
    """queue -> the namespaces whose jobs may use it (None: any)."""

    def tally(self) -> Tally:
        return Tally(self, self.quotas.rolled_up(self.held))


class Tally:
    """The queues' usage during one pass: admissions count at once, so the next job sees them."""

    def __init__(self, admission: QueueAdmission, usage: dict[str, dict[str, int]]):
        self.admission, self.usage = admission, usage

    def queue(self, job: str) -> str | None:
        return self.admission.queue_of.get(job)

    def share_of(self, queue: str | None) -> float:
        """The queue's share now (see Quotas.share); 0 for jobs without a usable queue."""
        return self.admission.quotas.share(self.usage, queue) if queue in self.admission.quotas.queues else 0.0

    def refuses(self, job: str, cards_by_model: Mapping[str, int]) -> Refusal | None:
        """Why the job's queue does not allow these cards (None: it does, or the job has no queue)."""
        queue = self.admission.queue_of.get(job)
        if queue is None:
            return None
        if (missing := self.missing(queue, job)) is not None:
            return missing
        for model, cards in cards_by_model.items():
            if (refusal := self.admission.quotas.allows(self.usage, queue, model, cards)) is not None:
                return refusal
        return None

    def missing(self, queue: str, job: str) -> Refusal | None:
        """Why the job cannot use the queue (it does not exist, cannot be used, or does not admit the job's
        namespace); None when it can."""
        allowed = self.admission.allowed
        namespace = job.split("/", 1)[0]
        if queue in self.admission.quotas.queues:
            if allowed is None or namespace in allowed.get(queue, frozenset()):
                return None
            return Refusal(queue, "QueueNotAllowed", f"spec.queue: queue {queue} does not admit jobs of namespace "
                                                     f"{namespace} (its spec.namespaces)")
        if (why := self.admission.unusable.get(queue)) is not None:
            return Refusal(queue, "QueueUnusable", f"queue {queue} cannot be used: {why}")
        return Refusal(queue, "QueueNotFound", f"spec.queue: no TenantQueue named {queue}")

    def allowed(self, job: str, models: tuple[str, ...], cards: int) -> tuple[tuple[str, ...], Refusal | None]:
        """The job's models on which its queue allows `cards` (its minimum), in its order of preference; with
        none, the refusal for its first model."""
        queue = self.admission.queue_of.get(job)
        if queue is not None and (missing := self.missing(queue, job)) is not None:
            return (), missing
        refusals = {m: self.refuses(job, {m: cards}) for m in models}
        allowed = tuple(m for m in models if refusals[m] is None)
        return allowed, (refusals[models[0]] if models and not allowed else None)

    def would_borrow(self, job: str, models: Iterable[str], cards: int) -> bool:
        """Whether admitting `cards` on any of the job's models would take its queue above its guarantee (a job
        without a usable queue does not borrow)."""
        queue = self.admission.queue_of.get(job)
        if queue not in self.admission.quotas.queues:
            return False
        return not any(self.admission.quotas.below_guarantee(self.usage, queue, m, cards) for m in models)

    def room(self, job: str, model: str, guaranteed: bool = False) -> int | None:
        """Cards of `model` the job's queue may still take (the tightest cap or borrowing limit on its path; with
        `guaranteed`, also no more than its own guarantee leaves); None: no limit."""
        queue = self.admission.queue_of.get(job)
        if queue not in self.admission.quotas.queues:
            return None
        rooms = [bound - held for _, _, bound, held, _ in self.admission.quotas.bounds(self.usage, queue, model)]
        if guaranteed:
            limit = self.admission.quotas.queues[queue].limits.get(model)
            if limit is not None:
                rooms.append(limit.guaranteed - self.usage.get(queue, {}).get(model, 0))
        return max(min(rooms), 0) if rooms else None

    def add(self, job: str, cards_by_model: Mapping[str, int]) -> None:
        queue = self.admission.queue_of.get(job)
        if queue not in self.admission.quotas.queues:
            return
        for node in self.admission.quotas.path(queue):
            for model, cards in cards_by_model.items():
                self.usage[node.name][model] = self.usage[node.name].get(model, 0) + cards
