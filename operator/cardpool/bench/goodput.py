"""Goodput of one 10,000-card job through failures, in the simulator (cardpool.sim.world), where the operator's
own pass decides every restart.

The job: 1,250 workers x 8 H800 cards (10,000 cards), a step a second at full size, longer than the horizon.
The fleet: 1,275 nodes (25 spares, 2%) in racks of 8. Faults: cardpool.sim.faults' mix, scaled so the
job's 10,000 cards see one interruption per `mtbf_h` hours (3 by default). The trainer: a pod runs 20 s
after its creation, training resumes 60 s after the last pod runs (rendezvous and checkpoint load), a save
blocks training for 1 s (asynchronous, in memory, as flash checkpointing does) or 60 s (synchronous).

Policies (each the operator deciding, with a different job or fleet):
- cardpool: elastic (1,200..1,250 workers): a fault restarts it at once on what is healthy (spares first,
  else smaller), resumes from the latest checkpoint, grows back; saves at the operator's advice (the Young/Daly
  interval from the faults it counted and the save time the job states, status.checkpointAdvice);
- restart_fixed: fixed at 1,250 workers: restarts on spares while there are any, else waits for a repair;
  same interval;
- restart_wait: fixed at 1,250 workers on a fleet without spares, so every hardware fault waits for its
  repair (as a job whose pods are bound to their nodes does); saves every 10 minutes;
- cardpool_no_spares: cardpool's job on that fleet without spares: it shrinks instead of waiting, and grows
  back after the repair (with 2% spares and 4-hour repairs the spares never run out, so there cardpool and
  restart_fixed restart alike).
Figures: ETTR (kept training time over wall time since the first start) per save cost and policy; and, for
cardpool with the 60 s save, the advised interval against fixed 10- and 60-minute ones at 3-h and 24-h MTBF.

`llama3`: Meta's Llama 3 405B pre-training snapshot (Dubey et al., "The Llama 3 Herd of Models", 2024, section
3.3.4): 16,384 H100 (2,048 nodes of 8), 54 days, 419 unexpected interruptions (about 78% hardware: the fault
mix of cardpool.sim.faults), "higher than 90% effective training time". Not published, so assumed and stated:
a fixed-size job with 2% spare nodes; a synchronous save blocking 30 s, at the operator's advice; 5 minutes
from a fault to training again (detection 40 s, pods 20 s, rendezvous and checkpoint load 240 s); repairs after
4 hours; the 47 planned interruptions left out (a graceful save loses only the restart: 47 x 5 min is 0.3% of
the 54 days). What those numbers imply, by Young/Daly's arithmetic at the advised interval: 1 - sqrt(2 x save
/ MTBF) - restart / MTBF, with MTBF = 54 days / 419.

`sim_30d_10k_s`: the simulator's wall time for 30 days of the seeds' 10,000-card pool with 2,000 jobs and the
default faults (cardpool.bench.simspeed; its figures in `simspeed`). With `--quick` (2 days), simspeed's own
quick run (3 days, 200 jobs) is made instead and `sim_30d_10k_s` is null.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

from cardpool.api.cardpool import CardPoolSpec
from cardpool.bench import simspeed
from cardpool.core.interval import expected_waste, young_daly
from cardpool.sim.faults import FaultModel
from cardpool.sim.trainer import TrainerModel
from cardpool.sim.world import JobTrace, World, fleet

CARDS_PER_NODE = 8
WORKERS = 1250
SPARES = 25
SAVES = {"async": 1.0, "blocking": 60.0}
DAY = 86400.0


def pool() -> CardPoolSpec:
    return CardPoolSpec.model_validate({"nodeGroups": [{
        "name": "h800", "nodeSelector": {"cardpool.io/sim-group": "h800"}, "topologyKeys": ["rack"],
        "accelerator": {"vendor": "nvidia", "model": "H800", "resource": "nvidia.com/gpu",
                        "cardsPerNode": CARDS_PER_NODE}}]})


def one_job(policy: str, save_s: float, mtbf_h: float, days: float, seed: int,
            interval_s: float | None = None) -> dict:
    """ETTR and more of the 10,000-card job under `policy`. `interval_s`: a fixed interval (None: the policy's)."""
    spec = pool()
    cards = WORKERS * CARDS_PER_NODE
    model = FaultModel().scaled(mtbf_h, cards)
    spares = 0 if policy in ("restart_wait", "cardpool_no_spares") else SPARES
    smallest = WORKERS - 50 if policy.startswith("cardpool") else WORKERS
    trace = JobTrace("big", 0.0, CARDS_PER_NODE, smallest, WORKERS, ("H800",), 10**12, 1.0)
    trainer = TrainerModel(save_s=save_s)
    if interval_s is not None:
        trainer = replace(trainer, interval_s=interval_s)
    elif policy == "restart_wait":
        trainer = replace(trainer, interval_s=600.0)
    # without a fixed interval the trainer saves at the operator's advice (status.checkpointAdvice, from the
    # group's observed faults and the reported save time), the first attempt at its default until then
    world = World(spec, fleet(spec, {"h800": WORKERS + spares}), [trace], trainer, model, days * DAY, seed)
    started = time.perf_counter()
    world.run()
    world.close()
    rec = world.records["sim/big"]
    timeline = rec.timeline
    advice = world.jobs["sim/big"].status.checkpoint_advice
    return {"ettr": round(timeline.ettr(world.t) or 0.0, 4), "goodput": round(timeline.goodput() or 0.0, 4),
            "interruptions": len(world.faults_seen), "restarts": dict(sorted(rec.restarts.items())),
            "lost_h": round(timeline.lost_s / 3600, 2), "passes": world.passes,
            "advised_s": advice.interval_seconds if advice else None,
            "advised_mtbf_h": round(advice.mtbf_seconds / 3600, 2) if advice else None,
            "wall_s": round(time.perf_counter() - started, 1)}


LLAMA3 = {"nodes": 2048, "spares": 41, "days": 54.0, "interruptions": 419, "save_s": 30.0, "detect_s": 40.0,
          "pod_start_s": 20.0, "restart_s": 240.0, "published_ettr_lower_bound": 0.90}


def llama3(seed: int = 1, days: float | None = None) -> dict:
    """The Llama 3 run in the simulator (see the module's doc); `days`: a shorter horizon at the same rate."""
    p = LLAMA3
    spec = pool()
    nodes, cards = p["nodes"], p["nodes"] * CARDS_PER_NODE
    mtbf_s = p["days"] * DAY / p["interruptions"]
    model = replace(FaultModel().scaled(mtbf_s / 3600, cards), detect_s=p["detect_s"])
    trace = JobTrace("llama3", 0.0, CARDS_PER_NODE, nodes, nodes, ("H800",), 10**12, 1.0)
    trainer = TrainerModel(save_s=p["save_s"], restart_s=p["restart_s"], pod_start_s=p["pod_start_s"])
    horizon = (days or p["days"]) * DAY
    world = World(spec, fleet(spec, {"h800": nodes + p["spares"]}), [trace], trainer, model, horizon, seed)
    started = time.perf_counter()
    world.run()
    world.close()
    timeline = world.records["sim/llama3"].timeline
    advice = world.jobs["sim/llama3"].status.checkpoint_advice
    restart = p["detect_s"] + p["pod_start_s"] + p["restart_s"]
    implied = 1 - expected_waste(young_daly(mtbf_s, p["save_s"]), mtbf_s, p["save_s"], restart)
    return {"simulated_ettr": round(timeline.ettr(world.t) or 0.0, 4), "implied_ettr": round(implied, 4),
            "published_ettr_lower_bound": p["published_ettr_lower_bound"],
            "interruptions": len(world.faults_seen), "lost_h": round(timeline.lost_s / 3600, 1),
            "advised_s": advice.interval_seconds if advice else None,
            "mtbf_h": round(mtbf_s / 3600, 2), "assumed": {k: v for k, v in p.items()
                        if k not in ("days", "interruptions", "published_ettr_lower_bound")},
            "passes": world.passes, "wall_s": round(time.perf_counter() - started, 1)}


def run(days: float = 14.0, seed: int = 1, progress=lambda line: print(line, file=sys.stderr)) -> dict:
    ettr: dict[str, dict[str, float]] = {}
    details: dict[str, dict] = {}
    for save_name, save_s in SAVES.items():
        for policy in ("cardpool", "restart_fixed", "restart_wait", "cardpool_no_spares"):
            result = one_job(policy, save_s, 3.0, days, seed)
            progress(f"ettr {save_name} {policy}: {result}")
            ettr.setdefault(save_name, {})[policy] = result["ettr"]
            details[f"{save_name}/{policy}"] = result
    advised: dict[str, dict[str, float]] = {}
    for mtbf_h in (3.0, 24.0):
        row = {}
        for name, interval in (("advised", None), ("fixed_10min", 600.0), ("fixed_60min", 3600.0)):
            result = one_job("cardpool", SAVES["blocking"], mtbf_h, days, seed, interval)
            progress(f"interval mtbf {mtbf_h:g} h {name}: {result}")
            row[name] = result["ettr"]
        row["young_daly_s"] = round(young_daly(mtbf_h * 3600, SAVES["blocking"]), 1)  # at the true MTBF
        advised[f"mtbf_{mtbf_h:g}h"] = row
    llama = llama3(seed, days=None if days >= 14.0 else days)
    progress(f"llama3: {llama}")
    speed = simspeed.run(*((30.0, 2000) if days >= 14.0 else (3.0, 200)))
    progress(f"simspeed: {speed}")
    return {"ettr": ettr, "advised_interval": advised, "llama3": llama,
            "sim_30d_10k_s": speed.get("sim_30d_10k_s"), "simspeed": speed, "details": details,
            "setup": {"days": days, "seed": seed, "workers": WORKERS, "cards_per_worker": CARDS_PER_NODE,
                      "spares": SPARES, "mtbf_h": 3.0, "saves_s": SAVES, "advised_interval_save_s": SAVES["blocking"]}}
