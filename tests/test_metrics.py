"""The operator's metrics: what the Grafana dashboard in manifests/ queries is what the operator exports,
and a pass's plan turns into the figures (the endpoint itself is scraped in e2e/test_metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

from cardpool.controller import metrics

DASHBOARD = Path(__file__).resolve().parents[1] / "manifests" / "grafana" / "cardpool-dashboard.json"


def exported() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        names |= {s.name for s in family.samples} | {family.name}
    for metric in (metrics.JOBS, metrics.RESTARTS, metrics.RECOVERY, metrics.CARDS, metrics.FRAGMENTATION,
                   metrics.DRAINED, metrics.PASS_DURATION, metrics.PASS_ERRORS, metrics.APPLY_QUEUE,
                   metrics.SETTLING, metrics.LOOP_LAG, metrics.QUEUE_CARDS, metrics.QUEUE_JOBS, metrics.PREEMPTIONS,
                   metrics.RECLAIM_LATENCY):
        for family in metric.describe():
            names.add(family.name)
    return names | {f"{n}_bucket" for n in names} | {f"{n}_total" for n in names}


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    board = json.loads(DASHBOARD.read_text())
    queried = {m for p in board["panels"] for t in p["targets"] for m in re.findall(r"cardpool_\w+", t["expr"])}
    queried |= set(re.findall(r"cardpool_\w+", json.dumps(board["templating"])))
    assert queried and queried <= exported(), queried - exported()
    assert len(board["panels"]) == 9


def test_a_pass_and_a_restart_become_figures() -> None:
    from dataclasses import replace
    from datetime import timedelta

    from cardpool.core.pool import reconcile_pool

    from .core.test_lifecycle import NOW, job, started
    from .core.test_pool_pass import NODES, POOL

    running = job(started(phase="Running"), pods=[(1, r, "Running") for r in range(4)])
    lost = [replace(n, conditions={"Ready": "False"}) if n.name == "h800-2" else n for n in NODES]
    plan = reconcile_pool(POOL, 1, None, lost, [running], NOW)
    before = REGISTRY.get_sample_value("cardpool_restarts_total", {"pool": "m", "reason": "NodeNotReady"}) or 0
    metrics.record_pass("m", plan)
    metrics.record_job("m", running, plan.jobs[0], NOW)
    assert REGISTRY.get_sample_value("cardpool_restarts_total", {"pool": "m", "reason": "NodeNotReady"}) == before + 1
    assert REGISTRY.get_sample_value("cardpool_jobs", {"pool": "m", "phase": "Restarting"}) == 1
    assert REGISTRY.get_sample_value("cardpool_cards", {"pool": "m", "group": "h800", "state": "unhealthy"}) == 8
    # the next attempt runs 30 s after the failure: one recovery of 30 s
    failure = plan.jobs[0].status.last_failure.model_dump(by_alias=True, mode="json")
    restarted = job({**started(attempt=2), "lastFailure": failure}, pods=[(2, r, "Running") for r in range(4)])
    again = reconcile_pool(POOL, 1, None, NODES, [restarted], NOW + timedelta(seconds=30))
    count = REGISTRY.get_sample_value("cardpool_recovery_seconds_count", {"pool": "m"}) or 0
    metrics.record_job("m", restarted, again.jobs[0], NOW + timedelta(seconds=30))
    assert REGISTRY.get_sample_value("cardpool_recovery_seconds_count", {"pool": "m"}) == count + 1
    assert REGISTRY.get_sample_value("cardpool_recovery_seconds_sum", {"pool": "m"}) >= 30


def test_a_reclaim_becomes_a_preemption_and_the_claims_latency() -> None:
    from dataclasses import replace
    from datetime import timedelta

    from cardpool.api.trainingjob import Phase
    from cardpool.core.pool import reconcile_pool
    from cardpool.core.tenants import admission, tenants

    from .core.test_reclaim import NODES, NOW, POOL, queues, running, waiting

    jobs = [running("a1", 0, 4, saved_minutes_ago=30), running("a2", 4, 4, saved_minutes_ago=2), waiting("b1", 4)]
    plan = reconcile_pool(POOL, 1, None, NODES, jobs, NOW, admission=admission(tenants(queues()), jobs))
    plans = {p.job: p for p in plan.jobs}
    labels = {"pool": "metrics-test", "queue": "metrics-a", "reason": "Reclaimed"}
    before = REGISTRY.get_sample_value("cardpool_preemptions_total", labels) or 0
    metrics.record_job("metrics-test", jobs[1], plans["a/a2"], NOW, "metrics-a")
    metrics.record_job("metrics-test", jobs[2], plans["b/b1"], NOW, "metrics-b")
    assert REGISTRY.get_sample_value("cardpool_preemptions_total", labels) == before + 1
    # 25 s later the cards are back and its attempt is placed
    later = replace(plans["b/b1"], status=plans["b/b1"].status.model_copy(update={
        "phase": Phase.STARTING, "conditions": []}))
    queue = {"queue": "metrics-b"}
    count = REGISTRY.get_sample_value("cardpool_reclaim_seconds_count", queue) or 0
    total = REGISTRY.get_sample_value("cardpool_reclaim_seconds_sum", queue) or 0
    metrics.record_job("metrics-test", jobs[2], later, NOW + timedelta(seconds=25), "metrics-b")
    assert REGISTRY.get_sample_value("cardpool_reclaim_seconds_count", queue) == count + 1
    assert REGISTRY.get_sample_value("cardpool_reclaim_seconds_sum", queue) - total == 25
