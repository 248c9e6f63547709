"""Gang start time on a real local cluster: a 256-card TrainingJob against an Indexed Job of its pods.

Starts a private local cluster (its own folder and ports) with 64 KWOK H800 nodes (or the large fleet with
--fleet large.yaml), the CRDs and this checkout's operator; then, `repeats` times each, measures from the
create call until every pod of the workload has run (KWOK completes Job pods right after they run). A first,
uncounted run of each warms connections and caches.
Run from a checkout: `PYTHONPATH=e2e python -m clusterbench start` (or `make bench`). Also reports the
operator's resident memory at the end.
"""

from __future__ import annotations

import statistics
import sys
import time

from kubernetes import client

from cardpool.api.keys import GROUP, LABEL_JOB, VERSION
from localkube.waiting import wait_for

from .cluster import bench_cluster, h800_pool, new_namespace

WORKERS, CARDS = 32, 8


def _measure(core: client.CoreV1Api, namespace: str, selector: str, create, timeout: float = 120) -> float:
    """Seconds from `create()` until all WORKERS pods matching `selector` have run (Running, or Succeeded
    already), polled every 50 ms."""
    t0 = time.monotonic()
    create()
    while time.monotonic() - t0 < timeout:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        if sum(p.status.phase in ("Running", "Succeeded") for p in pods) >= WORKERS:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise TimeoutError(f"the {WORKERS} pods of {selector} did not all run within {timeout} s")


def run(repeats: int = 3, fleet_file: str = "bench64.yaml") -> dict:
    with bench_cluster("start", fleet_file, 200, h800_pool()) as bench:
        core, custom = bench.core, bench.custom
        container = {"name": "trainer", "image": "registry.example.com/train:1",
                     "resources": {"requests": {"cpu": "8", "nvidia.com/gpu": str(CARDS)},
                                   "limits": {"nvidia.com/gpu": str(CARDS)}}}
        cardpool_s, job_s = [], []
        for i in range(repeats + 1):  # run 0 warms both up (connections, caches) and is not counted
            ns = f"bench-{i}"
            new_namespace(bench, ns)
            tj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob", "metadata": {"name": "gang"},
                  "spec": {"pool": "bench", "framework": "PyTorch",
                           "workers": {"cardsPerWorker": CARDS, "size": {"min": WORKERS, "max": WORKERS},
                                       "template": {"spec": {"containers": [dict(container)]}}},
                           "placement": {"accelerators": ["H800"]}}}
            cardpool_s.append(_measure(core, ns, f"{LABEL_JOB}=gang", lambda ns=ns, tj=tj: (
                custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", tj))))
            custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", "gang")
            wait_for(f"the gang's pods in {ns} to go", lambda ns=ns: not core.list_namespaced_pod(
                ns, label_selector=f"{LABEL_JOB}=gang").items, timeout=120)
            job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "indexed"},
                   "spec": {"completionMode": "Indexed", "completions": WORKERS, "parallelism": WORKERS,
                            "backoffLimit": 0, "template": {"metadata": {"labels": {"bench": "indexed"}},
                                                            "spec": {"restartPolicy": "Never",
                                                                     "containers": [dict(container)]}}}}
            job_s.append(_measure(core, ns, "bench=indexed", lambda ns=ns, job=job: (
                client.BatchV1Api(bench.api).create_namespaced_job(ns, job))))
            client.BatchV1Api(bench.api).delete_namespaced_job("indexed", ns, propagation_policy="Background")
            wait_for(f"the Job's pods in {ns} to go", lambda ns=ns: not core.list_namespaced_pod(
                ns, label_selector="bench=indexed").items, timeout=120)
            print(f"run {i}{' (warm-up)' if i == 0 else ''}: cardpool {cardpool_s[-1]:.2f} s, "
                  f"indexed Job {job_s[-1]:.2f} s", file=sys.stderr)
        operator_rss = bench.operator_rss_mib()
        node_count = bench.node_count
    cardpool_s, job_s = cardpool_s[1:], job_s[1:]
    c, j = statistics.median(cardpool_s), statistics.median(job_s)
    return {"cardpool_s": round(c, 2), "indexed_job_s": round(j, 2), "ratio": round(c / j, 2),
            "runs": {"cardpool_s": [round(x, 2) for x in cardpool_s], "indexed_job_s": [round(x, 2) for x in job_s]},
            "operator_rss_mib": round(operator_rss, 1),
            "setup": {"nodes": node_count, "workers": WORKERS, "cards_per_worker": CARDS,
                      "repeats": repeats, "pool_interval_s": 1.0}}

