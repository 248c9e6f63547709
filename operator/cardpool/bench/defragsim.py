"""Defragmentation's effect on big jobs, measured with the operator's own pass (cardpool.sim.world): the same
fleet and workload with spec.defragmentation off and on, every decision (placement, reservation, moves, their
budget and the graceful saves) the operator's.

The fleet: cardpool.sim.workload's four-model mix, every model at relative throughput 1.0 (a job's duration is
the workload's whatever model it lands on, as in `bench planner`). The workload: its "mixed" shape (Poisson
arrivals at 85% of the cards, 2% big gangs of 64-128 cards). Defragmentation: enabled, movableJobs All, at most
6 moves an hour, one at a time. Trainers save every 30 minutes (1 s each), so a move loses at most the training
since the last save plus its restart. No faults. Figures over jobs arriving after the first 20% of the arrival
window: mean queueing delay (arrival to first placement; a job never placed counts until the horizon) of big
jobs and of all jobs, card utilisation over the window, and the moves made.
"""

from __future__ import annotations

import statistics

from cardpool.api.cardpool import CardPoolSpec, DefragmentationPolicy
from cardpool.bench import simspeed
from cardpool.core.lifecycle import MIGRATED
from cardpool.sim.trainer import TrainerModel
from cardpool.sim.workload import fleet as sim_fleet
from cardpool.sim.workload import workload
from cardpool.sim.world import JobTrace, World, fleet

SHAPE = {"big_share": 0.02, "load": 0.85}
WARMUP = 0.2
DRAIN_S = 3 * 86400.0
"""Simulated time after the last arrival, for the queue to empty."""


def pool(node_count: int, defragment: bool) -> tuple[CardPoolSpec, dict[str, int]]:
    """simspeed's four groups (the same names and models as cardpool.sim.workload's fleet), defragmentation off
    or on, and the node count of each group."""
    nodes, groups = sim_fleet(node_count)
    spec = simspeed.pool().model_copy(update={"defragmentation": DefragmentationPolicy(
        enabled=defragment, movable_jobs="All", max_migrations_per_hour=6)})
    counts = {g.name: sum(1 for n in nodes if n.group == g.name) for g in groups}
    return spec, counts


def one_run(node_count: int, jobs: int, seed: int, defragment: bool) -> dict:
    spec, counts = pool(node_count, defragment)
    nodes, _ = sim_fleet(node_count)
    traces = [JobTrace(j.request.key.split("/", 1)[1], j.arrival, j.request.cards_per_worker, j.request.min_workers,
                       j.request.max_workers, j.request.accelerators, max(int(j.duration), 1), 1.0)
              for j in workload(seed, nodes, jobs=jobs, **SHAPE)]
    window = max(t.arrival_s for t in traces)
    world = World(spec, fleet(spec, counts), traces, TrainerModel(save_s=1.0, interval_s=1800.0), None,
                  window + DRAIN_S, seed, sample_every_s=600.0)
    world.run()
    world.close()
    begin = WARMUP * window
    delays, big = [], []
    for trace in traces:
        if trace.arrival_s < begin:
            continue
        rec = world.records[f"sim/{trace.name}"]
        placed = rec.first_placed if rec.first_placed is not None else world.t
        delays.append(placed - trace.arrival_s)
        if trace.min_workers * trace.cards_per_worker >= 64:
            big.append(placed - trace.arrival_s)
    cards = sum(counts.values()) * 8
    used = [s.used_cards / cards for s in world.samples if begin <= s.time <= window]
    moves = sum(rec.restarts.get(MIGRATED, 0) for rec in world.records.values())  # history is capped
    return {"big_job_delay_s": statistics.mean(big) if big else 0.0, "mean_delay_s": statistics.mean(delays),
            "utilisation": statistics.mean(used) if used else 0.0, "moves": moves, "passes": world.passes}


def compare(node_count: int, jobs: int, seeds: list[int]) -> dict[str, list[dict]]:
    """Per variant ("without_defrag", "with_defrag"), one run per seed."""
    return {name: [one_run(node_count, jobs, seed, on) for seed in seeds]
            for name, on in (("without_defrag", False), ("with_defrag", True))}
