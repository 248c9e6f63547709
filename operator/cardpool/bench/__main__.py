"""python -m cardpool.bench planner|defrag|pass|goodput|simspeed|quota|start|recovery|scale [--quick]

`goodput` (cardpool.bench.goodput): one 10,000-card job through 14 simulated days of faults (one per 3 h) in
the simulator, where the operator's own pass decides: {"ettr": {"async"|"blocking": {"cardpool",
"restart_fixed", "restart_wait"}}, "advised_interval": {"mtbf_3h"|"mtbf_24h": {"advised", "fixed_10min",
"fixed_60min", "young_daly_s"}}, "llama3": {"simulated_ettr", "implied_ettr", "published_ettr_lower_bound", ...},
"sim_30d_10k_s", ...}: Llama 3's 54-day run (2,048 nodes, 419 interruptions), and simspeed's run. `--quick`: 2
days of each, simspeed's quick run.
`simspeed` (cardpool.bench.simspeed): the simulator's speed at the seeds' scale, {"sim_30d_10k_s", "passes",
...}: 30 days, 1,250 nodes, 2,000 jobs, default failures. `--quick`: 3 days and 200 jobs ({"sim_s", ...}).

`quota` (cardpool.bench.quota): tenant queues with borrowing and checkpoint-aware reclaim against strict
partitioning, on a seeded two-tenant workload in the simulator: {"guarantee_p95_s", "utilisation",
"utilisation_strict", "utilisation_gain_points", "preemptions_per_job", "lost_work_card_s",
"lost_work_card_s_kill", ...}. `--quick`: one seed, one day.

`pass` (cardpool.bench.passcost): the controller's pass at 1,250 nodes, 1,000 jobs and ~8,600 pods without a
cluster: {"cold_ms", "idle_ms", "changed_ms_median", "changed_ms_p95", "api_calls"}.

`start`, `recovery`, `scale`: the cluster benchmarks, which start a private local cluster. They live in the
e2e kit of a checkout (e2e/clusterbench), not in this package: these names hand over to
`python -m clusterbench NAME` when `clusterbench` is importable (PYTHONPATH=e2e, as `make bench` sets it),
and otherwise exit with the command to run.
`defrag`: {"plan_ms": .., "big_job_delay_s": {"with_defrag": .., "without_defrag": ..}}: median time to plan
the moves that let a blocked 8-node gang start on 1,000 nodes carrying 400 running jobs, and the mean
queueing delay of big jobs with and without defragmentation in cardpool.sim.world, where the operator's own pass
decides (cardpool.bench.defragsim: 128 nodes, the "mixed" workload of `planner`). `--quick`: 1 seed, 300 jobs.
`planner`:

Prints progress lines, then one JSON object as the last line:
- place_ms: median time to plan one 512-card job (64 workers x 8) on heterogeneous pools of 250, 1,000 and
  4,000 nodes (8 cards each) carrying 75, 300 and 1,200 running jobs: a whole queue pass (ledger,
  placement, fragmentation), as the operator runs it;
- replan_ms: median time of a pass with 200 pending jobs on the 1,000-node pool;
- policies: cardpool's queue against first-fit and admission by summed free cards, simulated on seeded
  workloads (see cardpool.sim): card utilisation, mean queueing delay of big jobs (>= 64 cards) and mean
  fragmentation, averaged over the seeds. "mixed" is the headline workload (a stream of small jobs with
  occasional big gangs); "big_heavy" (most work in big gangs) is reported too.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from dataclasses import replace

from cardpool.bench import defragsim
from cardpool.core.defrag import Movable, plan_defrag
from cardpool.core.queue import schedule
from cardpool.core.snapshot import JobRequest, Snapshot
from cardpool.sim.engine import simulate
from cardpool.sim.policies import POLICIES
from cardpool.sim.workload import EPOCH, busy_fleet, fleet, workload


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm caches and imports
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def _pool(nodes_count: int, running: int, seed: int = 1) -> Snapshot:
    nodes, groups = fleet(nodes_count)
    return Snapshot(nodes=nodes, groups=groups, allocations=busy_fleet(nodes, running, seed))


def place_ms(repeats: int) -> dict[str, float]:
    big = JobRequest(key="bench/big", cards_per_worker=8, min_workers=64, max_workers=64,
                     accelerators=("H800", "Ascend910B"), submitted=EPOCH)
    out = {}
    for count in (250, 1000, 4000):
        pool = replace(_pool(count, running=count * 3 // 10), pending=(big,))
        plan = schedule(pool)
        assert plan.admitted or plan.waiting, "the job was decided"
        out[str(count)] = _median_ms(lambda pool=pool: schedule(pool), repeats)
        print(f"place one 512-card job, {count} nodes: {out[str(count)]} ms "
              f"({'placed' if plan.admitted else plan.waiting[0].reason})", file=sys.stderr)
    return out


def replan_ms(repeats: int) -> float:
    pool = _pool(1000, running=300)
    pending = tuple(j.request for j in workload(5, pool.nodes, jobs=200, big_share=0.1))
    pool = replace(pool, pending=pending)
    plan = schedule(pool)
    ms = _median_ms(lambda: schedule(pool), repeats)
    print(f"replan 200 pending on 1000 nodes: {ms} ms ({len(plan.admitted)} admitted, "
          f"{len(plan.waiting)} waiting)", file=sys.stderr)
    return ms


WORKLOADS = {"mixed": {"big_share": 0.02, "load": 0.85}, "big_heavy": {"big_share": 0.1, "load": 0.9}}


def policies(seeds: list[int], jobs: int, node_count: int) -> dict:
    nodes, groups = fleet(node_count)
    out: dict = {}
    for name, shape in WORKLOADS.items():
        per_policy = {}
        for policy_name, policy in POLICIES.items():
            runs = [simulate(policy(), nodes, groups, workload(seed, nodes, jobs=jobs, **shape)) for seed in seeds]
            per_policy[policy_name] = {
                "utilisation": round(statistics.mean(r.utilisation for r in runs), 4),
                "big_job_delay_s": round(statistics.mean(r.big_job_delay_s for r in runs), 1),
                "fragmentation": round(statistics.mean(r.fragmentation for r in runs), 4),
                "mean_delay_s": round(statistics.mean(r.mean_delay_s for r in runs), 1),
                "per_seed_big_job_delay_s": [round(r.big_job_delay_s, 1) for r in runs],
                "fragmentation_hourly_seed0": [round(f, 3) for f in runs[0].fragmentation_hourly],
            }
            print(f"{name} workload, {policy_name}: utilisation {per_policy[policy_name]['utilisation']}, "
                  f"big-job delay {per_policy[policy_name]['big_job_delay_s']} s, fragmentation "
                  f"{per_policy[policy_name]['fragmentation']}", file=sys.stderr)
        out[name] = per_policy
    return out


def defrag(repeats: int, seeds: list[int], jobs: int) -> dict:
    pool = _pool(1000, running=400, seed=3)
    gang = JobRequest(key="bench/gang", cards_per_worker=8, min_workers=8, max_workers=8, accelerators=("H800",),
                      submitted=EPOCH)
    pool = replace(pool, pending=(gang,))
    blocked = schedule(pool)
    assert not blocked.admitted, "the gang must be blocked for the benchmark to mean anything"
    movable = [Movable(JobRequest(key=a.job, cards_per_worker=a.workers[0].cards, min_workers=1,
                                  max_workers=a.size, accelerators=(a.workers[0].model,)),
                       a.size, float(sum(w.cards for w in a.workers) * (i % 7) * 300))
               for i, a in enumerate(pool.allocations)]
    plan = plan_defrag(pool, gang, movable)
    ms = _median_ms(lambda: plan_defrag(pool, gang, movable), repeats)
    print(f"defrag plan, 1000 nodes, 400 running jobs, 8-node gang: {ms} ms "
          f"({len(plan.moves) if plan else 'no'} moves)", file=sys.stderr)
    runs = defragsim.compare(128, jobs, seeds)
    for name, results in runs.items():
        print(f"mixed workload, operator's pass, {name}: big-job delay "
              f"{statistics.mean(r['big_job_delay_s'] for r in results):.0f} s, utilisation "
              f"{statistics.mean(r['utilisation'] for r in results):.3f}, moves {sum(r['moves'] for r in results)}",
              file=sys.stderr)

    def mean(key: str, digits: int = 1) -> dict:
        return {k: round(statistics.mean(r[key] for r in v), digits) for k, v in runs.items()}

    return {"plan_ms": ms, "big_job_delay_s": mean("big_job_delay_s"), "utilisation": mean("utilisation", 4),
            "mean_delay_s": mean("mean_delay_s"), "moves": sum(r["moves"] for r in runs["with_defrag"]),
            "per_seed_big_job_delay_s": {k: [round(r["big_job_delay_s"], 1) for r in v] for k, v in runs.items()},
            "setup": {"plan_nodes": 1000, "plan_running_jobs": 400, "plan_moves": len(plan.moves) if plan else 0,
                      "sim": "cardpool.sim.world (the operator's pass)", "sim_nodes": 128, "sim_jobs": jobs,
                      "seeds": seeds, "workload": defragsim.SHAPE, "moves_per_hour": 6}}


CLUSTER_BENCHMARKS = ("start", "recovery", "scale")


def cluster_benchmark(name: str, argv: list[str]) -> int:
    """Hand `name` over to the e2e kit's clusterbench, imported only now; without it, say how to run it."""
    try:
        clusterbench = importlib.import_module("clusterbench.__main__")
    except ModuleNotFoundError as exc:
        if exc.name not in ("clusterbench", "clusterbench.__main__", "localkube"):
            raise
        print(f"python -m cardpool.bench {name}: the cluster benchmarks are part of the e2e kit of a cardpool "
              f"checkout, not of the installed package ({exc.name} is not importable). From a checkout run:\n"
              f"  PYTHONPATH=e2e python -m clusterbench {name}\nor `make bench`.", file=sys.stderr)
        return 2
    return clusterbench.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    name = next((a for a in argv if not a.startswith("-")), None)
    if name in CLUSTER_BENCHMARKS:  # with their own options (--fleet, --other-pods, --help, ...)
        return cluster_benchmark(name, argv)
    parser = argparse.ArgumentParser(prog="python -m cardpool.bench", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["planner", "defrag", "pass", "goodput", "simspeed", "quota",
                                         *CLUSTER_BENCHMARKS])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and seeds (a smoke run)")
    args = parser.parse_args(argv)
    repeats, seeds, jobs = (3, [1], 300) if args.quick else (21, [1, 2, 3], 1500)
    if args.what == "defrag":
        print(json.dumps(defrag(repeats, seeds, jobs)))
        return 0
    if args.what == "goodput":
        from .goodput import run as goodput

        print(json.dumps(goodput(days=2.0 if args.quick else 14.0)))
        return 0
    if args.what == "simspeed":
        from .simspeed import run as simspeed

        print(json.dumps(simspeed(*((3.0, 200) if args.quick else (30.0, 2000)))))
        return 0
    if args.what == "quota":
        from .quota import run as quota

        print(json.dumps(quota(quick=args.quick)))
        return 0
    if args.what == "pass":
        from .passcost import run

        print(json.dumps(run(repeats=10 if args.quick else 60)))
        return 0
    result: dict = {"place_ms": place_ms(repeats), "replan_ms": replan_ms(max(repeats // 3, 3))}
    sim = policies(seeds, jobs, node_count=128)
    headline = ("utilisation", "big_job_delay_s", "fragmentation", "mean_delay_s")
    result["policies"] = {name: {k: figures[k] for k in headline} for name, figures in sim["mixed"].items()}
    result["workloads"] = sim
    result["setup"] = {"sim_nodes": 128, "sim_jobs": jobs, "seeds": seeds, "workloads": WORKLOADS}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
