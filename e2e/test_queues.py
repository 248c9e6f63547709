"""Tenant queues on the real local cluster: team A borrows all of team B's idle H800 cards with an elastic and a
fixed-size job; team B's jobs take them back, each borrower stopping with a graceful save (reported as its
trainer does on SIGTERM) and resuming from exactly that step; `cardpool queues` and `cardpool describe job`
say why each job waits."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cardpool.api.keys import GROUP, VERSION
from jobs import TIMEOUT, TORCH, checkpoint, env_of, get_job, make_pool, pods_of, submit, wait_attempt, wait_phase
from localkube import faults
from localkube.config import REPO
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for

H800 = {"spec.placement.accelerators": ["H800"]}  # 6 nodes, 48 cards


@pytest.fixture
def pool(kube: Kube, operator: Any, namespace: str) -> Iterator[str]:
    # defragmentation off: here only reclaim makes room (the two never act in one pass)
    yield from make_pool(kube, namespace, {"spec.defragmentation": {"enabled": False}})


@pytest.fixture
def queues(kube: Kube, namespace: str, pool: str) -> Iterator[tuple[str, str]]:
    """Team A: 16 H800 cards guaranteed, may borrow 32 more; team B: 32 guaranteed; both admit the test's
    namespace, whose jobs name theirs (spec.queue). Deleted after the test's jobs
    (the pool fixture's teardown, which waits for their pods, runs after this one's)."""
    custom = client.CustomObjectsApi(kube.api)
    names = (f"{namespace}-a"[:63], f"{namespace}-b"[:63])
    specs = ({"quotas": [{"model": "H800", "guaranteed": 16, "borrowingLimit": 32}], "minRuntimeSeconds": 0,
              "namespaces": [namespace]},
             {"quotas": [{"model": "H800", "guaranteed": 32}], "minRuntimeSeconds": 0, "namespaces": [namespace]})
    for name, spec in zip(names, specs, strict=True):
        custom.create_cluster_custom_object(GROUP, VERSION, "tenantqueues", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "TenantQueue", "metadata": {"name": name}, "spec": spec})
    yield names
    for name in names:
        try:
            custom.delete_cluster_custom_object(GROUP, VERSION, "tenantqueues", name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def cardpool(kube: Kube, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cardpool.cli.main", "--kubeconfig", str(kube.kubeconfig), *args],
                          capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO / "operator"),
                                                                            "PATH": "/usr/bin:/bin"})


def ready(kube: Kube, namespace: str, job: str) -> dict:
    return next(c for c in get_job(kube, namespace, job)["status"]["conditions"] if c["type"] == "Ready")


def stopped_for_reclaim(kube: Kube, namespace: str, job: str) -> dict:
    """The job's attempt ended as Reclaimed and it waits for the graceful save it asked for."""
    def check() -> dict:
        status = get_job(kube, namespace, job).get("status") or {}
        last = (status.get("history") or [{}])[-1]
        reason = next((c["reason"] for c in status.get("conditions", []) if c["type"] == "Ready"), None)
        if last.get("endReason") != "Reclaimed" or reason != "WaitingForCheckpoint":
            raise NotYet(f"{status.get('phase')}: {reason}; last attempt ended {last.get('endReason')}")
        return status

    return wait_for(f"{job} to stop for reclaim and wait for its save", check, timeout=TIMEOUT)


def test_a_tenant_takes_its_lent_cards_back_with_graceful_saves(
        kube: Kube, namespace: str, pool: str, queues: tuple[str, str]) -> None:
    team_a, team_b = queues
    fixed = submit(kube, namespace, pool, TORCH, **H800, **{
        "metadata.name": "a-fixed", "spec.queue": team_a, "spec.workers.size": {"min": 2, "max": 2}})
    elastic = submit(kube, namespace, pool, TORCH, **H800, **{
        "metadata.name": "a-elastic", "spec.queue": team_a, "spec.workers.size": {"min": 2, "max": 4}})
    wait_attempt(kube, namespace, fixed, 1)
    assert wait_attempt(kube, namespace, elastic, 1)["workers"] == 4  # team A holds all 48 cards
    checkpoint(kube, namespace, elastic, 1, 100, 32)

    def queue_status(name: str) -> dict:
        return client.CustomObjectsApi(kube.api).get_cluster_custom_object(GROUP, VERSION, "tenantqueues",
                                                                          name).get("status") or {}

    def borrowing() -> dict:
        status = queue_status(team_a)
        if status.get("borrowedCards") != 32:
            raise NotYet(f"queue {team_a}: {status}")
        return status

    wait_for(f"queue {team_a} to show 32 borrowed cards", borrowing, timeout=TIMEOUT)

    # team B submits: the elastic borrower gives its cards back first, and B's job runs within 30 s
    started = time.monotonic()
    first = submit(kube, namespace, pool, TORCH, **H800, **{
        "metadata.name": "b-first", "spec.queue": team_b, "spec.workers.size": {"min": 2, "max": 2}})
    wait_phase(kube, namespace, first, "Running", timeout=30)
    took = time.monotonic() - started
    stopped = stopped_for_reclaim(kube, namespace, elastic)
    assert stopped["restarts"]["uncounted"] == 1 and stopped["restarts"]["counted"] == 0
    assert get_job(kube, namespace, fixed)["status"]["attempt"] == 1, "the fixed-size borrower was left alone"
    checkpoint(kube, namespace, elastic, 1, 150, 32)  # the save its trainer makes on SIGTERM
    shrunk = wait_attempt(kube, namespace, elastic, 2)
    assert shrunk["workers"] == 2 and shrunk["history"][-1]["resumedFromStep"] == 150
    print(f"team B's first job ran {took:.1f} s after its submission; the elastic borrower shrank to 2 workers")

    # a second job of team B: the fixed-size borrower, whose save is the newest, stops this time
    checkpoint(kube, namespace, fixed, 1, 300, 16)
    second = submit(kube, namespace, pool, TORCH, **H800, **{
        "metadata.name": "b-second", "spec.queue": team_b, "spec.workers.size": {"min": 2, "max": 2}})
    wait_phase(kube, namespace, second, "Running", timeout=30)
    stopped_for_reclaim(kube, namespace, fixed)
    checkpoint(kube, namespace, fixed, 1, 320, 16)
    assert get_job(kube, namespace, elastic)["status"]["attempt"] == 2, "the elastic one was not stopped again"

    def waits_for_cards() -> dict:
        condition = ready(kube, namespace, fixed)
        if condition["reason"] not in ("Reserved", "BehindReservation", "NoCapacity"):
            raise NotYet(f"{condition['reason']}: {condition['message']}")
        return condition

    condition = wait_for(f"{fixed} to wait for cards after its save", waits_for_cards, timeout=TIMEOUT)
    assert "free now: room for 0 on H800" in condition["message"]

    story = cardpool(kube, "-n", namespace, "describe", "job", fixed)
    assert story.returncode == 0, story.stderr
    assert team_a in story.stdout and condition["reason"] in story.stdout and "Reclaimed" in story.stdout

    def figures() -> dict:
        rows = {r["queue"]: r for r in json.loads(cardpool(kube, "-o", "json", "queues").stdout)}
        seen = {q: (rows[q]["used"], rows[q]["borrowed"], rows[q]["waiting"]) for q in queues if q in rows}
        if seen != {team_a: (16, 0, 1), team_b: (32, 0, 0)}:
            raise NotYet(f"cardpool queues: {seen}")
        return rows

    wait_for("cardpool queues to show team B at its guarantee and team A's job waiting", figures, timeout=TIMEOUT)
    table = cardpool(kube, "queues")
    assert table.returncode == 0 and team_a in table.stdout and "GUARANTEED" in table.stdout

    # team B's second job ends: the fixed-size borrower resumes from exactly the step it saved
    for rank in range(2):
        faults.complete_pod(kube.core, namespace, f"{second}-a1-{rank}")
    wait_phase(kube, namespace, second, "Succeeded")
    resumed = wait_attempt(kube, namespace, fixed, 2)
    assert resumed["history"][-1]["resumedFromStep"] == 320
    pod = next(p for p in pods_of(kube, namespace, fixed) if p.metadata.labels["cardpool.io/attempt"] == "2")
    assert env_of(pod)["CARDPOOL_RESUME_STEP"] == "320"
    assert took <= 30
