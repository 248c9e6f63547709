"""Seeded synthetic fleets and workloads for the simulator and the benchmarks."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cardpool.core.snapshot import Allocation, Group, JobRequest, Node, Worker

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
# (group, model, relative throughput, share of the fleet's nodes)
FLEET_MIX = [("h800", "H800", 1.0, 0.35), ("a100", "A100", 0.35, 0.15), ("ascend910b", "Ascend910B", 0.6, 0.3),
             ("mlu590", "MLU590", 0.45, 0.2)]


def fleet(node_count: int, cards: int = 8, nodes_per_rack: int = 8, racks_per_spine: int = 4
          ) -> tuple[tuple[Node, ...], tuple[Group, ...]]:
    """A heterogeneous fleet of `node_count` nodes split over FLEET_MIX, racks and spines per group."""
    nodes: list[Node] = []
    groups: list[Group] = []
    remaining = node_count
    for i, (name, model, rate, share) in enumerate(FLEET_MIX):
        count = remaining if i == len(FLEET_MIX) - 1 else round(node_count * share)
        remaining -= count
        groups.append(Group(name, model, cards, rate))
        for n in range(count):
            rack = n // nodes_per_rack
            nodes.append(Node(f"{name}-{n:04d}", name, model, cards, cards,
                              (f"{name}-r{rack}", f"{name}-s{rack // racks_per_spine}")))
    return tuple(nodes), tuple(groups)


@dataclass(frozen=True, slots=True)
class SimJob:
    request: JobRequest
    arrival: float
    """Seconds from the start."""
    duration: float
    """Seconds of running at its start size."""

    @property
    def cards(self) -> int:
        return self.request.min_workers * self.request.cards_per_worker

    @property
    def big(self) -> bool:
        return self.cards >= 64


def workload(seed: int, nodes: tuple[Node, ...], jobs: int = 1500, load: float = 0.85,
             big_share: float = 0.02) -> list[SimJob]:
    """Mixed big (64-128 cards, full nodes) and small (1-16 cards) jobs, Poisson arrivals sized so that the
    offered load is `load` of the fleet's cards. A job prefers one or two models that can hold it."""
    rnd = random.Random(seed)
    model_cards: dict[str, int] = {}
    for n in nodes:
        model_cards[n.model] = model_cards.get(n.model, 0) + n.allocatable
    total_cards = sum(model_cards.values())
    specs = []
    for i in range(jobs):
        if rnd.random() < big_share:
            workers, cards, duration = rnd.choice([8, 12, 16]), 8, rnd.expovariate(1 / (3 * 3600))
        else:
            workers, cards = rnd.choice([(1, 1), (1, 2), (1, 4), (1, 8), (2, 8), (1, 4), (2, 4)])
            duration = rnd.expovariate(1 / 3600)
        models = sorted(m for m, c in model_cards.items() if c >= workers * cards)
        prefs: tuple[str, ...] = ()
        while len(prefs) < min(len(models), rnd.choice([1, 1, 2])):  # weighted by capacity: even load
            pick = rnd.choices(models, weights=[model_cards[m] for m in models])[0]
            prefs += () if pick in prefs else (pick,)
        specs.append((i, workers, cards, max(duration, 300.0), prefs))
    mean_work = sum(w * c * d for _, w, c, d, _ in specs) / len(specs)
    rate = load * total_cards / mean_work  # arrivals per second
    t = 0.0
    out = []
    for i, workers, cards, duration, prefs in specs:
        t += rnd.expovariate(rate)
        out.append(SimJob(JobRequest(key=f"sim/job-{i:04d}", cards_per_worker=cards, min_workers=workers,
                                     max_workers=workers, accelerators=prefs,
                                     submitted=EPOCH + timedelta(seconds=t)), t, duration))
    return out


def busy_fleet(nodes: tuple[Node, ...], running_jobs: int, seed: int) -> tuple[Allocation, ...]:
    """`running_jobs` allocations spread over the fleet (1-4 workers of 4 or 8 cards), for benchmarks."""
    rnd = random.Random(seed)
    free = {n.name: n.allocatable for n in nodes}
    order = list(nodes)
    rnd.shuffle(order)
    allocations = []
    cursor = 0
    for j in range(running_jobs):
        cards = rnd.choice([4, 8])
        workers = []
        for rank in range(rnd.randint(1, 4)):
            for _ in range(len(order)):
                node = order[cursor % len(order)]
                cursor += 1
                if free[node.name] >= cards:
                    free[node.name] -= cards
                    workers.append(Worker(rank, node.name, node.group, node.model, cards))
                    break
        if workers:
            allocations.append(Allocation(f"bench/run-{j:04d}", tuple(workers)))
    return tuple(allocations)
