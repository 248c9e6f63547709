"""Discrete-event simulation of one pool under one admission policy, on a virtual clock: the bare queue
decision against the baselines of `bench planner` (no failures, no job lifecycle, no defragmentation; those
run in cardpool.sim.world, where the operator's own pass decides).

Events are arrivals, completions and (while jobs wait) a periodic tick. After each instant's events the
policy decides on a snapshot built exactly as the operator would see the pool; started gangs run for their
duration. Figures are integrated over the measured window: from the end of the warm-up (the first
`warmup` share of the arrival period, when the empty pool fills) to the last arrival.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from cardpool.core.fragmentation import fragmentation
from cardpool.core.placement import Placement
from cardpool.core.snapshot import Allocation, Group, Node, Snapshot

from .workload import SimJob

TICK = 300.0
HOUR = 3600.0


@dataclass
class SimResult:
    policy: str
    utilisation: float
    """Busy card-seconds of running gangs over the fleet's card-seconds, during the arrival window."""
    big_job_delay_s: float
    """Mean queueing delay of jobs of 64 cards or more."""
    mean_delay_s: float
    fragmentation: float
    """Time-weighted mean share of free cards not on whole free nodes, during the arrival window."""
    fragmentation_hourly: list[float] = field(default_factory=list)
    unfinished: int = 0
    decisions: int = 0

    def figures(self) -> dict:
        return {"utilisation": round(self.utilisation, 4), "big_job_delay_s": round(self.big_job_delay_s, 1),
                "mean_delay_s": round(self.mean_delay_s, 1), "fragmentation": round(self.fragmentation, 4),
                "fragmentation_hourly": [round(f, 3) for f in self.fragmentation_hourly],
                "unfinished": self.unfinished}


def simulate(policy, nodes: tuple[Node, ...], groups: tuple[Group, ...], jobs: list[SimJob],
             max_time: float = 30 * 24 * HOUR, warmup: float = 0.2) -> SimResult:
    total_cards = sum(n.allocatable for n in nodes)
    window = max(j.arrival for j in jobs)
    begin = warmup * window
    by_key = {j.request.key: j for j in jobs}
    events: list[tuple[float, int, str, str]] = [(j.arrival, i, "arrive", j.request.key) for i, j in enumerate(jobs)]
    heapq.heapify(events)
    seq = len(events)
    pending: dict[str, SimJob] = {}
    running: dict[str, Placement] = {}
    started_at: dict[str, float] = {}
    finish_at: dict[str, float] = {}
    holding: dict[str, tuple] = {}
    delays: dict[str, float] = {}
    now = busy = frag = 0.0
    busy_area = frag_area = 0.0
    hourly: list[float] = []
    decisions = 0
    next_tick = 0.0
    while events and now <= max_time:
        at = events[0][0]
        if now < window:  # integrate the figures that held since the last instant
            span = max(min(at, window) - max(now, begin), 0.0)
            busy_area += busy * span
            frag_area += frag * span
            hourly += [frag] * (int(min(at, window) // HOUR) - int(now // HOUR))
        now = at
        while events and events[0][0] == now:
            _, _, kind, key = heapq.heappop(events)
            if kind == "arrive":
                pending[key] = by_key[key]
            elif kind == "finish" and finish_at.get(key) == now:  # else: moved since, it ends later
                del running[key]
                del finish_at[key]
        snapshot = Snapshot(nodes=nodes, groups=groups,
                            allocations=tuple(Allocation(k, p.workers) for k, p in running.items())
                            + tuple(Allocation(k, w) for k, w in holding.items()),
                            pending=tuple(j.request for j in pending.values()))
        decision = policy.decide(snapshot, now, {k: (by_key[k].request, started_at[k]) for k in running})
        decisions += 1
        holding = dict(decision.holding)
        for placement in decision.start:
            job = pending.pop(placement.job)
            running[placement.job] = placement
            started_at[placement.job] = now
            delays[placement.job] = now - job.arrival
            finish_at[placement.job] = now + job.duration
            heapq.heappush(events, (now + job.duration, seq, "finish", placement.job))
            seq += 1
        if pending and next_tick <= now:  # waiting jobs get looked at again even when nothing happens
            next_tick = now + TICK
            heapq.heappush(events, (next_tick, seq, "tick", ""))
            seq += 1
        busy = sum(p.cards for p in running.values())
        frag = _pool_fragmentation(snapshot, running, holding)
    measured = [(k, j) for k, j in by_key.items() if begin <= j.arrival]
    big = [delays.get(k, now - j.arrival) for k, j in measured if j.big]
    every = [delays.get(k, now - j.arrival) for k, j in measured]
    return SimResult(policy=policy.name, utilisation=busy_area / (total_cards * (window - begin)),
                     big_job_delay_s=sum(big) / len(big) if big else 0.0, mean_delay_s=sum(every) / len(every),
                     fragmentation=frag_area / (window - begin), fragmentation_hourly=hourly,
                     unfinished=len(pending), decisions=decisions)


def _pool_fragmentation(snapshot: Snapshot, running: dict[str, Placement], holding: dict[str, tuple]) -> float:
    current = Snapshot(nodes=snapshot.nodes, groups=snapshot.groups,
                       allocations=tuple(Allocation(k, p.workers) for k, p in running.items())
                       + tuple(Allocation(k, w) for k, w in holding.items()))
    figures = fragmentation(current).values()
    free = sum(f.free_cards for f in figures)
    return 1 - sum(f.largest_gang_cards for f in figures) / free if free else 0.0
