"""The operator's Prometheus endpoint during a fault: restarts by reason and the time to recover move."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobs import HEALTH, TORCH, make_pool, rank_nodes, returned, submit, wait_attempt
from localkube import faults
from localkube.testing import Kube
from localkube.waiting import wait_for


@pytest.fixture
def pool(kube: Kube, operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace, HEALTH)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_node_fault_moves_the_restart_and_recovery_figures(kube: Kube, namespace: str, pool: str,
                                                              operator: Any) -> None:
    job = submit(kube, namespace, pool, TORCH, **{"spec.workers.size": {"min": 2, "max": 2},
                                                  "spec.placement.accelerators": ["H800"]})
    wait_attempt(kube, namespace, job, 1)
    before = scrape(operator.metrics_url)
    assert value(before, "cardpool_jobs", pool=pool, phase="Running") == 1
    assert value(before, "cardpool_cards", pool=pool, group="h800", state="allocated") == 16
    assert value(before, "cardpool_pass_duration_seconds_count") > 0

    victim = rank_nodes(kube, namespace, job, 1)[0]
    faults.make_node_not_ready(kube.core, victim)
    try:
        wait_attempt(kube, namespace, job, 2)
        after = wait_for("the recovery to be observed", lambda: (s := scrape(operator.metrics_url)) and value(
            s, "cardpool_recovery_seconds_count", pool=pool) > value(
            before, "cardpool_recovery_seconds_count", pool=pool) and s, timeout=30)
        assert value(after, "cardpool_restarts_total", pool=pool, reason="NodeNotReady") == value(
            before, "cardpool_restarts_total", pool=pool, reason="NodeNotReady") + 1
        recovered = value(after, "cardpool_recovery_seconds_sum", pool=pool) - value(
            before, "cardpool_recovery_seconds_sum", pool=pool)
        assert 0 < recovered < 30
        assert value(after, "cardpool_drained_nodes", pool=pool, group="h800") == 1
        assert value(after, "cardpool_cards", pool=pool, group="h800", state="unhealthy") == 8
    finally:
        faults.make_node_ready(kube.core, victim)
        wait_for(f"node {victim} to be returned by cardpool", lambda: returned(kube, victim), timeout=90)
