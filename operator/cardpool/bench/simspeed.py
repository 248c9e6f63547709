"""How fast the simulator runs the seeds' scale (issue 15's speed target: 30 days of a 10,000-card pool with
2,000 jobs and the default failure rates in 5 minutes or less).

The fleet: 1,250 nodes of 8 cards in four groups (H800 500, A100 250, Ascend 910B 300, MLU590 200), racks of 8.
The workload (seeded): 2,000 jobs arriving over the first 80% of the period; half 1 x 1 card, a fifth 1 x 8,
a fifth 2-4..5-8 x 8, a tenth 16-32..33-64 x 8, each on one model, 1 to 72 hours of steps at full size.
Prints {"sim_30d_10k_s", "passes", "faults", "jobs_done", ...} as its last line; `--quick`: 3 days, 200 jobs.
"""

from __future__ import annotations

import random
import time

from cardpool.api.cardpool import CardPoolSpec
from cardpool.sim.faults import FaultModel
from cardpool.sim.trainer import TrainerModel
from cardpool.sim.world import JobTrace, World, fleet

GROUPS = (("h800", "H800", "nvidia", "nvidia.com/gpu", 500), ("a100", "A100", "nvidia", "nvidia.com/gpu", 250),
          ("ascend910b", "Ascend910B", "huawei", "huawei.com/Ascend910", 300),
          ("mlu590", "MLU590", "cambricon", "cambricon.com/mlu", 200))
DAY = 86400.0


def pool() -> CardPoolSpec:
    return CardPoolSpec.model_validate({"nodeGroups": [
        {"name": name, "nodeSelector": {"cardpool.io/sim-group": name}, "topologyKeys": ["rack"],
         "accelerator": {"vendor": vendor, "model": model, "resource": resource, "cardsPerNode": 8}}
        for name, model, vendor, resource, _ in GROUPS]})


def workload(days: float, count: int, seed: int) -> list[JobTrace]:
    rnd = random.Random(seed)
    models = [model for _, model, _, _, _ in GROUPS]
    out = []
    for i in range(count):
        kind = rnd.random()
        if kind < 0.5:
            low, high, cards = 1, 1, 1
        elif kind < 0.7:
            low, high, cards = 1, 1, 8
        elif kind < 0.9:
            low, high, cards = rnd.randint(2, 4), rnd.randint(5, 8), 8
        else:
            low, high, cards = rnd.randint(16, 32), rnd.randint(33, 64), 8
        out.append(JobTrace(f"job-{i:04d}", rnd.uniform(0, 0.8 * days * DAY), cards, low, high,
                            (rnd.choice(models),), int(rnd.uniform(3600, 72 * 3600)), 1.0))
    return out


def run(days: float = 30.0, jobs: int = 2000, seed: int = 1) -> dict:
    spec = pool()
    model = FaultModel()
    world = World(spec, fleet(spec, {name: n for name, _, _, _, n in GROUPS}), workload(days, jobs, seed),
                  TrainerModel(), model, days * DAY, seed)
    started = time.perf_counter()
    world.run()
    world.close()
    wall = time.perf_counter() - started
    return {"sim_30d_10k_s" if (days, jobs) == (30.0, 2000) else "sim_s": round(wall, 1), "days": days,
            "jobs": jobs, "passes": world.passes, "faults": len(world.faults_seen),
            "jobs_done": sum(1 for r in world.records.values() if r.finished is not None),
            "ms_per_pass": round(1000 * wall / max(world.passes, 1), 1)}
