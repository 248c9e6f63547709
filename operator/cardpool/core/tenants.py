"""From the TenantQueue objects and the jobs to what the pools' queue passes need (core.quota's QueueAdmission)
and to each queue's status. Pure.

A job may use a queue only from a namespace the queue lists (spec.namespaces, as a Kueue LocalQueue grants a
namespace a ClusterQueue); a job naming none uses the first queue by name that lists its namespace. A queue
whose spec cannot be used (its parent missing or unusable, a cycle of parents) admits nothing: its status says
why (Stalled, naming the field), and its jobs wait saying the same; the other queues are not affected. Usage
is what the jobs' status records (their placement, set before any pod exists and cleared the moment an attempt
ends), so quota is released as soon as an attempt stops, and a crash loses nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cardpool.api.conditions import set_condition
from cardpool.api.tenantqueue import ModelUsage, TenantQueueSpec, TenantQueueStatus
from cardpool.api.trainingjob import Phase

from .observed import ObservedJob
from .quota import Limit, Protection, QueueAdmission, Quotas, TenantQueue

WAITING = (Phase.QUEUED, Phase.RESTARTING)
HOLDING = (Phase.STARTING, Phase.RUNNING)


@dataclass(frozen=True)
class Tenants:
    """The queues as the pass uses them."""

    quotas: Quotas
    """The usable queues."""
    namespaces: Mapping[str, str]
    """namespace -> the queue its jobs belong to unless they name one: the first usable queue by name whose
    spec.namespaces lists it."""
    unusable: Mapping[str, str]
    """queue -> why its spec cannot be used (a message naming the field)."""
    protection: Mapping[str, Protection] = field(default_factory=dict)
    allowed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """queue -> the namespaces whose jobs may use it (spec.namespaces)."""


def tenants(specs: Mapping[str, TenantQueueSpec]) -> Tenants:
    unusable: dict[str, str] = {}
    for name in sorted(specs):  # its own parent missing, or on a cycle of parents
        seen, node = [name], specs[name]
        if node.parent is not None and node.parent not in specs:
            unusable[name] = f"spec.parent: no TenantQueue named {node.parent}"
        while node.parent is not None and node.parent in specs and name not in unusable:
            if node.parent in seen:
                if node.parent == name:
                    unusable[name] = f"spec.parent: the parents make a cycle ({' -> '.join([*seen, name])})"
                break
            seen.append(node.parent)
            node = specs[node.parent]
    for name in sorted(specs):  # under an unusable queue: the limits above it cannot be known
        parent, chain = specs[name].parent, []
        while parent is not None and parent in specs and parent not in chain and name not in unusable:
            if parent in unusable:
                unusable[name] = f"spec.parent: its ancestor {parent} cannot be used ({unusable[parent]})"
            chain.append(parent)
            parent = specs[parent].parent
    usable = [TenantQueue(name, {q.model: Limit(q.guaranteed, q.borrowing_limit, q.cap) for q in spec.quotas},
                          spec.parent, float(spec.weight))
              for name, spec in sorted(specs.items()) if name not in unusable]
    namespaces: dict[str, str] = {}
    for name in sorted(specs):  # a namespace's default: the first usable queue by name that admits it
        for namespace in specs[name].namespaces:
            if name not in unusable:
                namespaces.setdefault(namespace, name)
    allowed = {name: frozenset(spec.namespaces) for name, spec in specs.items()}
    protection = {name: Protection(timedelta(seconds=spec.min_runtime_seconds), spec.max_reclaims_per_hour)
                  for name, spec in specs.items()}
    return Tenants(Quotas(usable), namespaces, unusable, protection, allowed)


def queue_of(job: ObservedJob, namespaces: Mapping[str, str]) -> str | None:
    return job.spec.queue or namespaces.get(job.namespace)


def held_cards(job: ObservedJob) -> dict[str, int]:
    """The cards of each model the job's recorded placement holds."""
    out: dict[str, int] = {}
    cards = job.spec.workers.cards_per_worker
    for group in job.status.placement:
        out[group.accelerator] = out.get(group.accelerator, 0) + group.workers * cards
    return out


def admission(found: Tenants, jobs: Iterable[ObservedJob]) -> QueueAdmission:
    """What the queue passes need: which queue each job is in, what each queue's jobs hold now."""
    queue_for: dict[str, str] = {}
    held: dict[str, dict[str, int]] = {}
    for job in jobs:
        queue = queue_of(job, found.namespaces)
        if queue is None:
            continue
        queue_for[job.key] = queue
        if queue in found.quotas.queues:
            mine = held.setdefault(queue, {})
            for model, cards in held_cards(job).items():
                mine[model] = mine.get(model, 0) + cards
    return QueueAdmission(found.quotas, queue_for, held, found.unusable, found.protection, found.allowed)


def queue_statuses(specs: Mapping[str, tuple[TenantQueueSpec, int, TenantQueueStatus | None]], found: Tenants,
                   jobs: Iterable[ObservedJob], now: datetime) -> dict[str, TenantQueueStatus]:
    """Each queue's status: `specs`: name -> (spec, generation, the status as observed)."""
    running: dict[str, int] = {}
    waiting: dict[str, int] = {}
    held: dict[str, dict[str, int]] = {}
    for job in jobs:
        queue = queue_of(job, found.namespaces)
        if queue is None or queue not in specs:
            continue
        phase = job.status.phase or Phase.QUEUED
        if job.status.placement:
            running[queue] = running.get(queue, 0) + 1
            mine = held.setdefault(queue, {})
            for model, cards in held_cards(job).items():
                mine[model] = mine.get(model, 0) + cards
        elif phase in WAITING and not job.spec.suspend:
            waiting[queue] = waiting.get(queue, 0) + 1
    quotas = found.quotas
    usage = quotas.rolled_up({q: m for q, m in held.items() if q in quotas.queues})
    borrowing = _borrowing(quotas, usage)
    out = {}
    for name, (spec, generation, previous) in sorted(specs.items()):
        status = TenantQueueStatus(observed_generation=generation,
                                   conditions=list(previous.conditions) if previous else [])
        used = usage.get(name, {}) if name in quotas.queues else held.get(name, {})
        limits = {q.model: q.guaranteed for q in spec.quotas}
        for model in sorted({*limits, *used}):
            guaranteed, holds = limits.get(model, 0), used.get(model, 0)
            others = sum(b for q, b in borrowing.get(model, {}).items() if q != name and not _related(quotas, q, name))
            status.models.append(ModelUsage(model=model, guaranteed=guaranteed, used=holds,
                                            borrowed=max(holds - guaranteed, 0),
                                            lent=min(max(guaranteed - holds, 0), others)))
        status.used_cards = sum(m.used for m in status.models)
        status.borrowed_cards = sum(m.borrowed for m in status.models)
        status.running_jobs, status.waiting_jobs = running.get(name, 0), waiting.get(name, 0)
        _conditions(status, found.unusable.get(name), now)
        out[name] = status
    return out


def _borrowing(quotas: Quotas, usage: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """model -> queue -> cards it holds above its guarantee."""
    out: dict[str, dict[str, int]] = {}
    for name in quotas.queues:
        for model in usage.get(name, {}):
            if (borrowed := quotas.borrowed(usage, name, model)) > 0:
                out.setdefault(model, {})[name] = borrowed
    return out


def _related(quotas: Quotas, a: str, b: str) -> bool:
    """Whether one queue is the other's ancestor (their usage overlaps: one does not lend to the other)."""
    if a not in quotas.queues or b not in quotas.queues:
        return False
    return any(q.name == b for q in quotas.path(a)) or any(q.name == a for q in quotas.path(b))


def _conditions(status: TenantQueueStatus, problem: str | None, now: datetime) -> None:
    """kstatus: Ready True and Stalled False when usable; Stalled True (a person must fix the spec) when not."""
    ready, reason, message = (True, "Admitting", "the queue admits jobs within its quotas") if problem is None \
        else (False, "InvalidSpec", problem)
    conditions = set_condition(status.conditions, "Ready", ready, reason, message, now)
    status.conditions = set_condition(conditions, "Stalled", not ready, reason, "" if ready else message, now)
