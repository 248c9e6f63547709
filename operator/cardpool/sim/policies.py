"""Admission policies the simulator compares: cardpool's queue, and two baselines seen in the field.

- cardpool: cardpool.core.queue.schedule (topology best fit, reservation for the blocked head, backfill).
- first_fit: gang all-or-nothing, queue order, each worker on the first node (by name) with room, no
  reservation: whatever fits goes, so a stream of small jobs can keep a big gang waiting.
- sum_admission: what quota-only queues do. A job is admitted when its model's free cards add up to what it
  needs; its pods are then bound one by one, first fit. Bound pods hold their cards while the rest wait;
  a job not fully bound within `timeout` seconds releases its pods and goes back to the queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cardpool.core.placement import Placement
from cardpool.core.queue import queue_order, schedule
from cardpool.core.snapshot import JobRequest, Snapshot, Worker


@dataclass
class Decision:
    start: list[Placement]
    """Jobs whose whole gang runs from now."""
    holding: dict[str, tuple[Worker, ...]] = field(default_factory=dict)
    """Admitted jobs' pods that hold cards while waiting for the rest of their gang."""


Running = dict[str, tuple[JobRequest, float]]
"""Running jobs: key -> (request, start time)."""


class CardpoolPolicy:
    name = "cardpool"

    def decide(self, snapshot: Snapshot, now: float, running: Running | None = None) -> Decision:
        return Decision(list(schedule(snapshot).admitted))


def _first_fit(job: JobRequest, model: str, free: dict[str, int], snapshot: Snapshot, workers_needed: int,
               start_rank: int = 0) -> list[Worker]:
    """Bind up to `workers_needed` workers of `model`, each on the first node by name with room (updates free)."""
    out: list[Worker] = []
    for node in sorted((n for n in snapshot.nodes if n.model == model and n.usable), key=lambda n: n.name):
        while free[node.name] >= job.cards_per_worker and len(out) < workers_needed:
            free[node.name] -= job.cards_per_worker
            out.append(Worker(start_rank + len(out), node.name, node.group, model, job.cards_per_worker))
    return out


class FirstFitPolicy:
    name = "first_fit"

    def decide(self, snapshot: Snapshot, now: float, running: Running | None = None) -> Decision:
        free = snapshot.free()
        started = []
        for job in queue_order(snapshot.pending):
            for model in job.accelerators:  # all workers on one model, the first model with room for the gang
                trial = dict(free)
                workers = _first_fit(job, model, trial, snapshot, job.min_workers)
                if len(workers) == job.min_workers:
                    free = trial
                    started.append(Placement(job.key, tuple(workers)))
                    break
        return Decision(started)


class SumAdmissionPolicy:
    name = "sum_admission"

    def __init__(self, timeout: float = 600.0):
        self.timeout = timeout
        self.admitted: dict[str, tuple[float, tuple[Worker, ...]]] = {}

    def decide(self, snapshot: Snapshot, now: float, running: Running | None = None) -> Decision:
        free = snapshot.free()  # held pods are allocations in the snapshot, so already not free
        jobs = {j.key: j for j in snapshot.pending}
        started = []
        for key in list(self.admitted):
            since, held = self.admitted[key]
            job = jobs[key]
            more = _first_fit(job, held[0].model, free, snapshot, job.min_workers - len(held),
                              start_rank=len(held)) if held else []
            held = held + tuple(more)
            if len(held) == job.min_workers:
                started.append(Placement(key, held))
                del self.admitted[key]
            elif now - since > self.timeout:  # like a pods-ready timeout: release and requeue
                for w in held:
                    free[w.node] += w.cards
                del self.admitted[key]
            else:
                self.admitted[key] = (since, held)
        quota = {}
        for node in snapshot.nodes:
            quota[node.model] = quota.get(node.model, 0) + free[node.name]
        for job in queue_order(snapshot.pending):
            if job.key in self.admitted or any(p.job == job.key for p in started):
                continue
            need = job.min_workers * job.cards_per_worker
            model = next((m for m in job.accelerators if quota.get(m, 0) >= need), None)
            if model is None:
                continue
            quota[model] -= need
            held = tuple(_first_fit(job, model, free, snapshot, job.min_workers))
            if len(held) == job.min_workers:
                started.append(Placement(job.key, held))
            else:
                self.admitted[job.key] = (now, held)
        return Decision(started, {k: held for k, (_, held) in self.admitted.items() if held})


POLICIES = {"cardpool": CardpoolPolicy, "first_fit": FirstFitPolicy, "sum_admission": SumAdmissionPolicy}
"""The policies `python -m cardpool.bench planner` compares (defragmentation is compared in `bench defrag`)."""
