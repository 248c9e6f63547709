"""The TenantQueue side of a pass: the queues parsed once per version, the admission each pool's queue pass
decides with, and the queues' status writes. Decisions are core.tenants'; this only feeds and carries them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from cardpool.api.tenantqueue import TenantQueueSpec, TenantQueueStatus
from cardpool.core import tenants as core
from cardpool.core.observed import ObservedJob
from cardpool.core.quota import QueueAdmission
from cardpool.kube import effects

from . import metrics
from .applier import Applier, Fenced, Priority, Task, Work
from .expectations import Expectations, describe

log = logging.getLogger("cardpool.queues")


@dataclass(frozen=True)
class _Queue:
    version: str
    generation: int
    spec: TenantQueueSpec
    status: TenantQueueStatus | None


class TenantQueues:
    def __init__(self, applier: Applier, expectations: Expectations,
                 write: Callable[[str, TenantQueueStatus], int], clock: Callable[[], float]):
        self.applier, self.expectations = applier, expectations
        self._write, self._clock = write, clock
        self._parsed: dict[str, _Queue] = {}
        self._unreadable: set[str] = set()
        self.found: core.Tenants | None = None

    def observe(self, bodies: Mapping[str, dict], named: bool = False) -> core.Tenants | None:
        """The queues of this pass; None when there are none and no job names one (`named`): no job is
        limited. A job naming a queue when none exists waits, saying so."""
        out = {}
        for name, body in bodies.items():
            meta = body.get("metadata", {})
            version = meta.get("resourceVersion", "")
            known = self._parsed.get(name)
            if known is None or known.version != version or not version:
                try:
                    status = TenantQueueStatus.model_validate(body["status"]) if body.get("status") else None
                    known = _Queue(version, meta.get("generation") or 0,
                                   TenantQueueSpec.model_validate(body.get("spec") or {}), status)
                except ValidationError as exc:  # admission validates; an object it let through is reported
                    if name not in self._unreadable:
                        log.error("cannot read TenantQueue %s: %s", name, exc)
                        self._unreadable.add(name)
                    continue
                self._unreadable.discard(name)
            out[name] = known
        self._parsed = out
        self.found = core.tenants({n: q.spec for n, q in out.items()}) if out or named else None
        return self.found

    def admission(self, jobs: Iterable[ObservedJob]) -> QueueAdmission | None:
        """What the pools' queue passes decide with: `jobs`, every pool's, with the status last decided."""
        return core.admission(self.found, jobs) if self.found is not None else None

    def write_statuses(self, jobs: Iterable[ObservedJob], now: datetime, mono: float) -> None:
        """Each queue's status, written when it changed and no write of it is awaited."""
        if self.found is None:
            metrics.record_queues({})
            return
        specs = {n: (q.spec, q.generation, q.status) for n, q in self._parsed.items()}
        statuses = core.queue_statuses(specs, self.found, jobs, now)
        metrics.record_queues(statuses)
        for name, status in statuses.items():
            queue, key = self._parsed[name], f"tenantqueue:{name}"
            if status == queue.status or self.applier.in_flight(key) or not self.expectations.settled(
                    key, mono, effects.version(queue.version)):
                continue
            self.expectations.expect(key, mono, effects.version(queue.version), status)

            def done(error: BaseException | None, key: str = key, name: str = name) -> None:
                if error is not None and not isinstance(error, Fenced):
                    log.warning("writing the status of queue %s failed: %s", name, describe(error))
                self.expectations.finished(key, self._clock(), error)
            self.applier.submit(Work(key, [[Task(
                f"status of queue {name}", Priority.NORMAL,
                lambda n=name, s=status, k=key: self.expectations.wrote(k, self._write(n, s)))]], done))

    def queue_of(self, job: ObservedJob) -> str | None:
        return core.queue_of(job, self.found.namespaces) if self.found is not None else job.spec.queue

    def keys(self) -> set[str]:
        return {f"tenantqueue:{name}" for name in self._parsed}

    def forget(self) -> None:
        self._parsed.clear()
        self.found = None
