"""Tenant quotas with borrowing and checkpoint-aware reclaim, measured with the operator's own pass in the
simulator (cardpool.sim.world): the same seeded two-tenant workload with borrowing and with strict partitioning.

The pool: 32 nodes of 8 H800 cards (256). Two queues, each guaranteed 128 cards; with borrowing, each may
borrow the other's idle cards (borrowingLimit 128), without, not at all (strict partitioning). Queues protect
a job for its first 2 minutes (minRuntimeSeconds 120) and stop a job for reclaim at most twice an hour.
Tenant "steady" submits a Poisson stream of jobs that alone would keep about 1.5 times its guarantee busy,
half of them elastic (1-4 workers of 8 cards), the rest 1-4 workers fixed. Tenant "bursty" is idle for hours,
then submits a burst of jobs filling its guarantee (1-4 workers of 8 cards, fixed). Job lengths are
exponential (mean 2 h at full size). Trainers save every 30 minutes, 20 s per save; a reclaim's graceful save
also takes 20 s. No faults.

Figures (jobs arriving after the first 10% of the window):
- guarantee_p95_s: for the bursty tenant's jobs that arrive while its queue, with them, stays within its
  guarantee, the 95th percentile of arrival to placement (the cards of its guarantee given back);
- utilisation (borrowing) and utilisation_strict, and their difference in points;
- preemptions_per_job: reclaim stops per job;
- lost_work_card_s: the work reclaim stops lost (cards x the graceful save's seconds: the training done since
  the last save is kept), against lost_work_card_s_kill: the same stops without a save, as preemption by
  deleting pods would lose (cards x the training since the job's last save).
"""

from __future__ import annotations

import random
import statistics
import sys

from cardpool.api.cardpool import CardPoolSpec
from cardpool.api.tenantqueue import TenantQueueSpec
from cardpool.core.lifecycle import RECLAIMED
from cardpool.sim.trainer import TrainerModel
from cardpool.sim.world import NAMESPACE, JobTrace, World, fleet

NODES = 32
GUARANTEE = 128
SAVE_S = 20.0
WARMUP = 0.1

POOL = CardPoolSpec.model_validate({
    "nodeGroups": [{"name": "h800", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H800"},
                    "accelerator": {"vendor": "nvidia", "model": "H800", "resource": "nvidia.com/gpu",
                                    "cardsPerNode": 8}}]})


def queues(borrowing: bool) -> dict[str, TenantQueueSpec]:
    limit = GUARANTEE if borrowing else 0
    return {name: TenantQueueSpec.model_validate({
        "minRuntimeSeconds": 120, "maxReclaimsPerHour": 2, "namespaces": [NAMESPACE],
        "quotas": [{"model": "H800", "guaranteed": GUARANTEE, "borrowingLimit": limit}]})
        for name in ("steady", "bursty")}


def workload(seed: int, hours: float) -> list[JobTrace]:
    rng = random.Random(seed)
    window = hours * 3600
    mean_s = 7200.0
    out: list[JobTrace] = []
    # steady: about 1.5 x its guarantee of card-seconds offered: arrivals of jobs of 20 cards on average
    rate = 1.5 * GUARANTEE / (20 * mean_s)
    t, i = 0.0, 0
    while (t := t + rng.expovariate(rate)) < window:
        elastic = rng.random() < 0.5
        workers = rng.randint(1, 4)
        duration = rng.expovariate(1 / mean_s)
        out.append(JobTrace(f"steady-{i}", t, 8, 1 if elastic else workers, 4 if elastic else workers,
                            ("H800",), max(int(duration), 60), 1.0, queue="steady"))
        i += 1
    # bursty: a burst filling its guarantee every 4-8 hours
    t, burst = rng.uniform(1, 3) * 3600, 0
    while t < window:
        cards = 0
        while cards < GUARANTEE:
            workers = min(rng.randint(1, 4), (GUARANTEE - cards) // 8)
            cards += workers * 8
            duration = rng.expovariate(1 / mean_s)
            out.append(JobTrace(f"bursty-{burst}-{cards}", t + rng.uniform(0, 60), 8, workers, workers, ("H800",),
                                max(int(duration), 60), 1.0, queue="bursty"))
        t += rng.uniform(4, 8) * 3600
        burst += 1
    return sorted(out, key=lambda j: j.arrival_s)


class _Measured(World):
    """The simulated world, noting what the figures need: each bursty job's queue usage at its arrival, and
    the work each reclaim stop keeps or would have lost."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.within: set[str] = set()
        self.lost_graceful = 0.0
        self.lost_kill = 0.0

    def _on_arrive(self, trace: JobTrace) -> None:
        if trace.queue == "bursty":
            held = sum(sum(g.workers for g in j.status.placement) * j.spec.workers.cards_per_worker
                       for j in self.jobs.values() if j.spec.queue == "bursty")
            waiting = sum(self.records[k].trace.min_workers * 8 for k, j in self.jobs.items()
                          if j.spec.queue == "bursty" and not j.status.placement and self.records[k].finished is None
                          and self.records[k].first_placed is None)
            if held + waiting + trace.min_workers * 8 <= GUARANTEE:
                self.within.add(trace.name)
        super()._on_arrive(trace)

    def _stop(self, key: str, planned: bool) -> None:
        run, job = self.records[key].run, self.jobs.get(key)
        last = job.status.history[-1] if job is not None and job.status.history else None
        if run is not None and planned and last is not None and last.end_reason == RECLAIMED:
            self.lost_graceful += run.cards * SAVE_S
            self.lost_kill += run.cards * max(self.t - run.since, 0.0)
        super()._stop(key, planned)


def one_run(seed: int, hours: float, borrowing: bool) -> dict:
    traces = workload(seed, hours)
    window = hours * 3600
    world = _Measured(POOL, fleet(POOL, {"h800": NODES}), traces,
                      TrainerModel(save_s=SAVE_S, interval_s=1800.0), None, window + 6 * 3600, seed,
                      sample_every_s=300.0, queues=queues(borrowing))
    world.run(window)
    world.close()
    begin = WARMUP * window
    delays = []
    for trace in traces:
        if trace.arrival_s < begin or trace.name not in world.within:
            continue
        rec = world.records[f"sim/{trace.name}"]
        placed = rec.first_placed if rec.first_placed is not None else world.t
        delays.append(placed - trace.arrival_s)
    used = [s.used_cards / (NODES * 8) for s in world.samples if begin <= s.time <= window]
    stops = sum(rec.restarts.get(RECLAIMED, 0) for rec in world.records.values())
    return {"delays": delays, "utilisation": statistics.mean(used) if used else 0.0, "stops": stops,
            "jobs": len(world.records), "lost_graceful": world.lost_graceful, "lost_kill": world.lost_kill,
            "passes": world.passes}


def _p95(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def run(quick: bool = False) -> dict:
    seeds = [1] if quick else [1, 2, 3]
    hours = 24.0 if quick else 72.0
    borrowing, strict = [], []
    for seed in seeds:
        borrowing.append(one_run(seed, hours, True))
        strict.append(one_run(seed, hours, False))
        print(f"seed {seed}: utilisation {borrowing[-1]['utilisation']:.3f} with borrowing, "
              f"{strict[-1]['utilisation']:.3f} strict; {borrowing[-1]['stops']} reclaim stops of "
              f"{borrowing[-1]['jobs']} jobs; {len(borrowing[-1]['delays'])} claims within the guarantee",
              file=sys.stderr)
    delays = [d for r in borrowing for d in r["delays"]]
    use, use_strict = (statistics.mean(r["utilisation"] for r in runs) for runs in (borrowing, strict))
    return {
        "guarantee_p95_s": round(_p95(delays), 1),
        "guarantee_max_s": round(max(delays, default=0.0), 1),
        "claims": len(delays),
        "utilisation": round(use, 4), "utilisation_strict": round(use_strict, 4),
        "utilisation_gain_points": round(100 * (use - use_strict), 1),
        "preemptions_per_job": round(sum(r["stops"] for r in borrowing) / sum(r["jobs"] for r in borrowing), 4),
        "lost_work_card_s": round(sum(r["lost_graceful"] for r in borrowing)),
        "lost_work_card_s_kill": round(sum(r["lost_kill"] for r in borrowing)),
        "seeds": seeds, "hours": hours,
    }
