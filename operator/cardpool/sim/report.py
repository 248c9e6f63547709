"""The figures of a capacity-planning run, as plain data (what --json writes and the table shows).

Per job: queueing delay (first placement minus arrival), ETTR and goodput (cardpool.sim.trainer), restarts
by the cause the operator recorded, training hours lost (redone after a restart), progress and final phase.
Per pool, from the samples taken at even times: mean utilisation (cards held by jobs' pods over the fleet's
cards), mean queue length (jobs waiting: queued or restarting), mean fragmentation; faults by kind and the
training lost per cause. Nothing here depends on the machine's speed, so a seed gives the same figures.
"""

from __future__ import annotations

from collections import Counter
from statistics import fmean

from cardpool.core.observed import ObservedJob

from .faults import HOUR
from .scenario import Scenario
from .world import NAMESPACE, JobRecord, World

NOT_SUBMITTED = "NotSubmitted"
"""The phase of a job whose arrival is after the horizon."""


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def ran_on(job: ObservedJob | None) -> list[str]:
    """Accelerators the job's attempts ran on (H800, or H800+Ascend910B for a Mixed one), first use first."""
    seen: list[str] = []
    for entry in job.status.history if job is not None else ():
        if entry.accelerator and entry.accelerator not in seen:
            seen.append(entry.accelerator)
    return seen


def job_row(rec: JobRecord, now: float, accelerators: list[str]) -> dict:
    trace, timeline = rec.trace, rec.timeline
    placed = rec.first_placed
    done = max((s.last for s in timeline.segments), default=0.0)
    return {
        "name": trace.name,
        "arrival_h": _r(trace.arrival_s / HOUR, 3),
        "workers": f"{trace.min_workers}-{trace.max_workers}" if trace.min_workers != trace.max_workers
        else str(trace.max_workers),
        "cards_per_worker": trace.cards_per_worker,
        "accelerators": list(trace.accelerators),
        "ran_on": accelerators,
        "priority": trace.priority,
        "phase": rec.phase,
        "first_placed_h": _r(placed / HOUR, 3) if placed is not None else None,
        "queue_delay_h": _r((placed - trace.arrival_s) / HOUR, 3) if placed is not None else None,
        "finished_h": _r(rec.finished / HOUR, 3) if rec.finished is not None else None,
        "ettr": _r(timeline.ettr(now)),
        "goodput": _r(timeline.goodput()),
        "restarts": dict(sorted(rec.restarts.items())),
        "lost_h": _r(timeline.lost_s / HOUR, 3),
        "steps": trace.steps,
        "steps_kept": int(done),
        "progress": _r(done / trace.steps),
    }


def figures(scenario: Scenario, world: World) -> dict:
    """Everything the run measured, JSON-ready."""
    settings, cards = scenario.settings, scenario.fleet.cards
    jobs = []
    for key, rec in world.records.items():
        jobs.append(job_row(rec, world.t, ran_on(world.jobs.get(key))))
    for trace in scenario.jobs:  # arriving after the horizon: never submitted, still the plan's
        if f"{NAMESPACE}/{trace.name}" not in world.records:
            jobs.append(job_row(JobRecord(trace, phase=NOT_SUBMITTED), world.t, []))
    jobs.sort(key=lambda j: (j["arrival_h"], j["name"]))
    samples = world.samples
    losses: dict[str, dict] = {}
    for rec in world.records.values():
        for cause, lost_s in rec.timeline.losses:
            entry = losses.setdefault(cause, {"interruptions": 0, "lost_h": 0.0})
            entry["interruptions"] += 1
            entry["lost_h"] += lost_s / HOUR
    for entry in losses.values():
        entry["lost_h"] = _r(entry["lost_h"], 3)
    restarts = Counter()
    for rec in world.records.values():
        restarts.update(rec.restarts)
    started = [j for j in jobs if j["ettr"] is not None]
    delays = [j["queue_delay_h"] for j in jobs if j["queue_delay_h"] is not None]
    held = sum(r.timeline.held_card_s for r in world.records.values())
    kept = sum(r.timeline.kept_card_s for r in world.records.values())
    model = scenario.fault_model
    trainer = settings.trainer
    return {
        "inputs": {
            "pool": scenario.pool_name, "groups": dict(scenario.fleet.counts), "nodes": len(scenario.fleet.nodes),
            "cards": cards, "jobs": len(scenario.jobs), "hours": settings.hours, "seed": settings.seed,
            "failures": {"preset": settings.failures.preset,
                         "system_mtbf_h": _r(model.system_mtbf_s(cards) / HOUR, 3) if model else None,
                         "card_mtbf_h": model.card_mtbf_h if model else None,
                         "repair_h": _r(model.repair_s / HOUR, 3) if model else None,
                         "rack_share": model.rack_share if model else None},
            "trainer": {"save_s": trainer.save_s, "interval_s": trainer.interval_s or "advised",
                        "restart_s": trainer.restart_s, "pod_start_s": trainer.pod_start_s},
        },
        "pool": {
            "mean_utilisation": _r(fmean(s.used_cards / cards for s in samples)) if samples else None,
            "mean_queue_length": _r(fmean(s.waiting_jobs for s in samples), 3) if samples else None,
            "max_queue_length": max((s.waiting_jobs for s in samples), default=0),
            "mean_fragmentation_percent": _r(fmean(s.fragmentation_percent for s in samples), 2) if samples else None,
            "jobs_succeeded": sum(1 for j in jobs if j["phase"] == "Succeeded"),
            "jobs_failed": sum(1 for j in jobs if j["phase"] == "Failed"),
            "jobs_never_placed": sum(1 for j in jobs if j["first_placed_h"] is None),
            "jobs_not_submitted": sum(1 for j in jobs if j["phase"] == NOT_SUBMITTED),
            "mean_ettr": _r(fmean(j["ettr"] for j in started)) if started else None,
            "min_ettr": min((j["ettr"] for j in started), default=None),
            "mean_queue_delay_h": _r(fmean(delays), 3) if delays else None,
            "max_queue_delay_h": max(delays, default=None),
            "goodput": _r(kept / held) if held else None,
            "lost_h": _r(sum(r.timeline.lost_s for r in world.records.values()) / HOUR, 3),
            "faults": dict(sorted(Counter(f.kind for f in world.faults_seen).items())),
            "restarts": dict(sorted(restarts.items())),
            "passes": world.passes,
        },
        "losses": dict(sorted(losses.items())),
        "jobs": jobs,
        "series": {
            "time_h": [_r(s.time / HOUR, 3) for s in samples],
            "utilisation": [_r(s.used_cards / cards) for s in samples],
            "waiting_jobs": [s.waiting_jobs for s in samples],
            "fragmentation_percent": [s.fragmentation_percent for s in samples],
        },
    }
