"""Prometheus metrics of the operator, read off each pool pass's plan (what was decided, never re-derived):
jobs by phase, restarts by reason, time to recover, cards and fragmentation per group, drained nodes, and
the passes' own duration and errors. Served by prometheus-client on CARDPOOL_METRICS_PORT (default 9464;
0 turns it off). Counters and histograms start from zero when the operator starts, as usual for Prometheus.
"""

from __future__ import annotations

import logging
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from cardpool.api.trainingjob import Phase
from cardpool.core.lifecycle import JobPlan
from cardpool.core.observed import ObservedJob
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
PASS_SECONDS = Histogram("cardpool_reconcile_seconds", "Duration of a pool's pass (decide and act)", ["pool"],
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
PASS_ERRORS = Counter("cardpool_reconcile_errors_total", "Pool passes or job effects that failed", ["pool"])


def serve(port: int) -> None:
    if not port:
        return
    try:
        start_http_server(port)
    except OSError as exc:  # metrics are for people; a taken port must not stop the operator
        log.error("cannot serve metrics on port %d: %s", port, exc)


def record_pass(pool: str, plan: PoolPlan, seconds: float) -> None:
    PASS_SECONDS.labels(pool).observe(seconds)
    phases = dict.fromkeys((p.value for p in Phase), 0)
    for job_plan in plan.jobs:
        phases[(job_plan.status.phase or Phase.QUEUED).value] += 1
    for phase, count in phases.items():
        JOBS.labels(pool, phase).set(count)
    for group in plan.status.groups:
        CARDS.labels(pool, group.name, "allocated").set(group.allocated_cards)
        CARDS.labels(pool, group.name, "free").set(group.free_cards)
        CARDS.labels(pool, group.name, "unhealthy").set(group.unhealthy_cards)
        FRAGMENTATION.labels(pool, group.name).set(group.fragmentation_percent / 100)
        DRAINED.labels(pool, group.name).set(group.draining_nodes)


def record_job(pool: str, job: ObservedJob, plan: JobPlan, now: datetime) -> None:
    """A job's transition, once its status write has succeeded (a refused write is decided again)."""
    before, after = job.status, plan.status
    live = (Phase.STARTING, Phase.RUNNING)
    if before.phase in live and after.phase not in live and after.last_failure is not None and (
            after.last_failure != before.last_failure):
        RESTARTS.labels(pool, after.last_failure.reason).inc()
    if before.phase == Phase.STARTING and after.phase == Phase.RUNNING and after.last_failure is not None and (
            after.last_failure.attempt == after.attempt - 1):
        RECOVERY.labels(pool).observe((now - after.last_failure.time).total_seconds())


def count_error(pool: str) -> None:
    PASS_ERRORS.labels(pool).inc()
