"""Tenant queues over random workloads, the operator's own pass deciding in the simulator: no two jobs take
cards back from each other, no job is stopped for reclaim more often than its queue allows, and a queue below
its guarantee gets its cards back within the reclaim time (minimum runtime, graceful save, pods ending)."""

from __future__ import annotations

import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from cardpool.api.tenantqueue import TenantQueueSpec
from cardpool.bench.quota import POOL
from cardpool.sim.trainer import TrainerModel
from cardpool.sim.world import NAMESPACE, JobTrace, World, fleet

NODES = 8
MIN_RUNTIME_S = 60
PER_HOUR = 2
SAVE_S = 10.0
TRAINER = TrainerModel(save_s=SAVE_S, interval_s=900.0)
RECLAIM_S = MIN_RUNTIME_S + SAVE_S + TRAINER.terminate_s + 30
"""The longest a claim within the guarantee may wait while others borrow: the victims' minimum runtime, their
save and end, and the passes in between."""
FOR_JOB = re.compile(r"for job sim/(\S+) \(")


class Recorded(World):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stops: list[tuple[float, str, str]] = []
        """(time, victim, claimant)"""

    def _apply(self, job, plan) -> None:
        for event in plan.events:
            if event.reason == "Reclaimed":
                self.stops.append((self.t, job.name, FOR_JOB.search(event.message).group(1)))
        super()._apply(job, plan)


def queues(guarantees: tuple[int, int]) -> dict[str, TenantQueueSpec]:
    return {name: TenantQueueSpec.model_validate({
        "minRuntimeSeconds": MIN_RUNTIME_S, "maxReclaimsPerHour": PER_HOUR, "namespaces": [NAMESPACE],
        "quotas": [{"model": "H800", "guaranteed": g, "borrowingLimit": NODES * 8 - g}]})
        for name, g in zip(("a", "b"), guarantees, strict=True)}


def traces(seed: int, jobs: int) -> list[JobTrace]:
    rng = random.Random(seed)
    out = []
    for i in range(jobs):
        workers = rng.randint(1, 4)
        elastic = rng.random() < 0.4
        cards = rng.choice((4, 8, 8))  # half-node workers too: free cards can come in pieces
        out.append(JobTrace(f"j{i}", rng.uniform(0, 4 * 3600), cards, 1 if elastic else workers, workers, ("H800",),
                            int(rng.expovariate(1 / 3600)) + 60, 1.0, priority=rng.choice((0, 0, 10)),
                            queue=rng.choice(("a", "b"))))
    return sorted(out, key=lambda t: t.arrival_s)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), jobs=st.integers(10, 40), split=st.sampled_from([(32, 32), (16, 48), (48, 16)]))
def test_reclaim_never_loops_nor_exceeds_its_limits(seed: int, jobs: int, split: tuple[int, int]) -> None:
    workload = traces(seed, jobs)
    world = Recorded(POOL, fleet(POOL, {"h800": NODES}), workload, TRAINER, None, 8 * 3600, seed,
                     sample_every_s=600.0, queues=queues(split))
    world.run()
    assert sum(r.first_placed is not None for r in world.records.values()) >= len(workload) // 2, "jobs ran"
    pairs = {(victim, claimant) for _, victim, claimant in world.stops}
    assert not {(a, b) for a, b in pairs if (b, a) in pairs}, "two jobs took cards back from each other"
    for t, victim, _ in world.stops:
        window = [s for s in world.stops if s[1] == victim and t <= s[0] < t + 3600]
        assert len(window) <= PER_HOUR, f"{victim} stopped {len(window)} times within an hour"
    for claimant in {c for _, _, c in world.stops}:
        trace = next(tr for tr in workload if tr.name == claimant)
        first_stop = min(t for t, _, c in world.stops if c == claimant)
        placed = world.records[f"sim/{claimant}"].first_placed
        assert placed is not None and placed - first_stop <= RECLAIM_S, (
            f"{claimant} (queue {trace.queue}) placed {placed} s, {placed - first_stop if placed else '-'} s after "
            f"its first reclaim")
