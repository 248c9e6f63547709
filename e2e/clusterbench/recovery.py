"""Recovery time on a real local cluster: a node under a running 4-node gang turns NotReady; how long until
every pod of the new attempt runs on healthy nodes, and how much of that is the operator's own.

For each run (after one uncounted warm-up), on 64 KWOK H800 nodes:
- fault:    the moment the victim's Ready=False condition is first seen in the API (KWOK's stage sets it
            a second or two after the injection; that delay is the fault itself, not recovery);
- operator: until the last pod of the new attempt exists (the operator noticed, stopped the old attempt,
            waited for its pods, placed and recorded the new one, created its pods);
- total:    until all pods of the new attempt are Running (kube-scheduler binds them, KWOK runs them).
Both are read by polling the API every 20 ms, so each figure is late by at most one poll and one request.
"""

from __future__ import annotations

import statistics
import sys
import time

from cardpool.api.keys import GROUP, LABEL_ATTEMPT, LABEL_JOB, VERSION
from localkube import faults
from localkube.waiting import NotYet, wait_for

from .cluster import BenchCluster, bench_cluster, h800_pool, new_namespace

WORKERS, CARDS = 4, 8
POLL_S = 0.02


def _job() -> dict:
    container = {"name": "trainer", "image": "registry.example.com/train:1"}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob", "metadata": {"name": "gang"},
            "spec": {"pool": "bench", "framework": "PyTorch",
                     "workers": {"cardsPerWorker": CARDS, "size": {"min": WORKERS, "max": WORKERS},
                                 "template": {"spec": {"containers": [container]}}},
                     "placement": {"accelerators": ["H800"]}}}


def _pods(bench: BenchCluster, ns: str, attempt: int):
    return bench.core.list_namespaced_pod(ns, label_selector=f"{LABEL_JOB}=gang,{LABEL_ATTEMPT}={attempt}").items


def one_run(bench: BenchCluster, ns: str, timeout: float = 120) -> tuple[float, float]:
    new_namespace(bench, ns)
    bench.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", _job())

    def running() -> list:
        pods = _pods(bench, ns, 1)
        if len(pods) < WORKERS or any(p.status.phase != "Running" for p in pods):
            raise NotYet(f"{[p.status.phase for p in pods]}")
        return pods

    pods = wait_for("the gang to run", running, timeout=timeout)
    victim = next(p.spec.node_name for p in pods if p.metadata.labels["cardpool.io/rank"] == "1")
    faults.make_node_not_ready(bench.core, victim)
    fault = created = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            if fault is None:
                node = bench.core.read_node_status(victim)
                if any(c.type == "Ready" and c.status == "False" for c in node.status.conditions or []):
                    fault = now
                continue
            pods = _pods(bench, ns, 2)
            if created is None and len(pods) >= WORKERS:
                created = now
            if len(pods) >= WORKERS and all(p.status.phase == "Running" for p in pods):
                if victim in {p.spec.node_name for p in pods}:
                    raise AssertionError(f"the new attempt runs on the faulty node {victim}")
                return now - fault, created - fault
            time.sleep(POLL_S)
        raise TimeoutError(f"attempt 2 did not run within {timeout} s (fault seen: {fault is not None})")
    finally:
        faults.make_node_ready(bench.core, victim)
        bench.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", "gang")
        wait_for(f"the pods of {ns} to go", lambda: not bench.core.list_namespaced_pod(ns).items, timeout=timeout)

        def returned() -> bool:
            node = bench.core.read_node(victim)
            if node.spec.unschedulable or any(t.key.startswith("cardpool.io/") or "not-ready" in t.key
                                              for t in node.spec.taints or []):
                raise NotYet(f"taints {[t.key for t in node.spec.taints or []]}")
            return True

        wait_for(f"node {victim} to be back in the pool", returned, timeout=timeout)


def run(repeats: int = 3, fleet_file: str = "bench64.yaml") -> dict:
    health = {"probationSeconds": 0, "maxDrainedPercent": 10}
    with bench_cluster("recovery", fleet_file, 220, h800_pool(health)) as bench:
        totals, operators = [], []
        for i in range(repeats + 1):  # run 0 warms up connections and caches and is not counted
            total, operator = one_run(bench, f"recovery-{i}")
            print(f"run {i}{' (warm-up)' if i == 0 else ''}: total {total:.2f} s, operator {operator:.2f} s",
                  file=sys.stderr)
            totals.append(total)
            operators.append(operator)
        node_count = bench.node_count
    totals, operators = totals[1:], operators[1:]
    return {"total_s": round(statistics.median(totals), 2), "operator_s": round(statistics.median(operators), 2),
            "runs": {"total_s": [round(x, 2) for x in totals], "operator_s": [round(x, 2) for x in operators]},
            "setup": {"nodes": node_count, "workers": WORKERS, "cards_per_worker": CARDS, "repeats": repeats,
                      "poll_s": POLL_S, "kubernetes_default_not_ready_toleration_s": 300}}
