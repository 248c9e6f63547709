"""Prometheus metrics of the operator, read off each pool pass's plan (what was decided, never re-derived):
jobs by phase, restarts by reason, time to recover, cards and fragmentation per group, drained nodes; the
passes' own duration and errors, the applier's queue, the event loop's lag; per tenant queue its cards
(guaranteed, used, borrowed, lent), jobs, preemptions by reason and reclaim latency (and, in
cardpool.kube.budget, API requests by verb, resource and code). Served by prometheus-client on
CARDPOOL_METRICS_PORT (default 9464; 0 turns it off). Counters and histograms start from zero when the
operator starts, as usual for Prometheus.
"""

from __future__ import annotations

import logging
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from cardpool.api.trainingjob import Phase
from cardpool.core.lifecycle import MIGRATED, RECLAIMED
from cardpool.core.observed import ObservedJob
from cardpool.core.plan import JobPlan
from cardpool.core.pool import PoolPlan

log = logging.getLogger("cardpool.metrics")
JOBS = Gauge("cardpool_jobs", "TrainingJobs by pool and phase", ["pool", "phase"])
RESTARTS = Counter("cardpool_restarts_total", "Attempts ended by a failure or fault, by pool and reason",
                   ["pool", "reason"])
RECOVERY = Histogram("cardpool_recovery_seconds", "From an attempt's failure to all workers of the next one "
                     "running", ["pool"], buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600))
CARDS = Gauge("cardpool_cards", "Cards per pool, group and state (allocated, free, unhealthy)",
              ["pool", "group", "state"])
FRAGMENTATION = Gauge("cardpool_fragmentation_ratio", "Share of a group's free cards that cannot host a "
                      "full-node worker", ["pool", "group"])
DRAINED = Gauge("cardpool_drained_nodes", "Nodes drained by cardpool (draining or on probation)", ["pool", "group"])
HELD = Gauge("cardpool_held_nodes", "Faulty nodes not drained because their group is at its drain cap "
             "(spec.health.maxDrainedPercent; the pool's status.heldNodes)", ["pool"])
PASS_DURATION = Histogram("cardpool_pass_duration_seconds", "Duration of a pass: deciding every pool from the "
                          "observed world (its effects are carried out apart, see cardpool_apply_queue_tasks)",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30, 60))
PASS_ERRORS = Counter("cardpool_reconcile_errors_total", "Pool passes or job effects that failed", ["pool"])
APPLY_QUEUE = Gauge("cardpool_apply_queue_tasks", "API calls handed over by passes and not yet done")
SETTLING = Gauge("cardpool_settling_jobs", "Jobs whose effects are in flight or not yet seen in the watch", ["pool"])
QUEUE_CARDS = Gauge("cardpool_queue_cards", "Cards per tenant queue, accelerator model and state (guaranteed, "
                    "used, borrowed, lent), as the queue's status says", ["queue", "model", "state"])
QUEUE_JOBS = Gauge("cardpool_queue_jobs", "Jobs per tenant queue holding cards (running) or waiting",
                   ["queue", "state"])
PREEMPTIONS = Counter("cardpool_preemptions_total", "Attempts stopped on purpose to give cards to other jobs, by "
                      "pool, the stopped job's queue and reason (Reclaimed: lent cards taken back; Migrated: "
                      "defragmentation)", ["pool", "queue", "reason"])
RECLAIM_LATENCY = Histogram("cardpool_reclaim_seconds", "From a job starting to wait for lent cards its queue takes "
                            "back to its attempt being placed, by queue", ["queue"],
                            buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600))
LOOP_LAG = Gauge("cardpool_event_loop_lag_seconds", "How late the operator's asyncio loop last woke up (the "
                 "liveness probe is answered on it)")


def serve(port: int) -> None:
    if not port:
        return
    try:
        start_http_server(port)
    except OSError as exc:  # metrics are for people; a taken port must not stop the operator
        log.error("cannot serve metrics on port %d: %s", port, exc)


def record_pass(pool: str, plan: PoolPlan) -> None:
    SETTLING.labels(pool).set(sum(1 for p in plan.jobs if p.settling))
    phases = dict.fromkeys((p.value for p in Phase), 0)
    for job_plan in plan.jobs:
        phases[(job_plan.status.phase or Phase.QUEUED).value] += 1
    for phase, count in phases.items():
        JOBS.labels(pool, phase).set(count)
    HELD.labels(pool).set(len(plan.status.held_nodes))
    for group in plan.status.groups:
        CARDS.labels(pool, group.name, "allocated").set(group.allocated_cards)
        CARDS.labels(pool, group.name, "free").set(group.free_cards)
        CARDS.labels(pool, group.name, "unhealthy").set(group.unhealthy_cards)
        FRAGMENTATION.labels(pool, group.name).set(group.fragmentation_percent / 100)
        DRAINED.labels(pool, group.name).set(group.draining_nodes)


_claims: dict[str, datetime] = {}
"""Jobs waiting for reclaim -> since when (this process saw it begin)."""


def record_job(pool: str, job: ObservedJob, plan: JobPlan, now: datetime, queue: str | None = None) -> None:
    """A job's transition, once its status write has succeeded (a refused write is decided again). `queue`: its
    tenant queue, if any."""
    before, after = job.status, plan.status
    ended = after.history[-1] if after.history else None
    if ended is not None and ended.end_reason in (RECLAIMED, MIGRATED) and ended.end_time == now and (
            not before.history or before.history[-1].end_time is None):
        PREEMPTIONS.labels(pool, queue or "", ended.end_reason).inc()
    reason = next((c.reason for c in after.conditions if c.type == "Ready"), "")
    if reason == "WaitingForReclaim":
        _claims.setdefault(job.key, now)
    elif (since := _claims.pop(job.key, None)) is not None and after.phase == Phase.STARTING:
        RECLAIM_LATENCY.labels(queue or "").observe((now - since).total_seconds())
    live = (Phase.STARTING, Phase.RUNNING)
    if before.phase in live and after.phase not in live and after.last_failure is not None and (
            after.last_failure != before.last_failure):
        RESTARTS.labels(pool, after.last_failure.reason).inc()
    if before.phase == Phase.STARTING and after.phase == Phase.RUNNING and after.last_failure is not None and (
            after.last_failure.attempt == after.attempt - 1):
        RECOVERY.labels(pool).observe((now - after.last_failure.time).total_seconds())


def count_error(pool: str) -> None:
    PASS_ERRORS.labels(pool).inc()


def record_queues(statuses: dict) -> None:
    """Each tenant queue's figures, from the status the pass computed for it (a queue or model gone is gone
    from the figures too)."""
    QUEUE_CARDS.clear()
    QUEUE_JOBS.clear()
    for name, status in statuses.items():
        for m in status.models:
            for state in ("guaranteed", "used", "borrowed", "lent"):
                QUEUE_CARDS.labels(name, m.model, state).set(getattr(m, state))
        QUEUE_JOBS.labels(name, "running").set(status.running_jobs)
        QUEUE_JOBS.labels(name, "waiting").set(status.waiting_jobs)


def keep_claims(jobs: set[str]) -> None:
    """Forget the claims of jobs that are gone (or all, on losing leadership: `jobs` empty)."""
    for key in list(_claims):
        if key not in jobs:
            _claims.pop(key, None)
