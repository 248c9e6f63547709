"""The controller runtime on the real local cluster: a fault's restart is not held up by another job's bulk pod
creation; cards held by pods cardpool does not manage are not given out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from cardpool.api.keys import GROUP, VERSION
from jobs import HEALTH, TIMEOUT, TORCH, make_pool, pods_of, rank_nodes, submit, wait_attempt, wait_phase
from localkube import faults
from localkube import fleet as fleets
from localkube.config import FLEETS
from localkube.testing import Kube, pod_manifest
from localkube.waiting import NotYet, wait_for
from manifests import example

BULK = fleets.Fleet.load(FLEETS / "bulk.yaml")
GANG = 256
# a budget low enough that the gang's creation outlasts the fault's way to the operator (the node's update,
# kopf's event, a pass, the status write, the old pods' end, the next pass) on a busy machine: 256 creates at
# 20/s take 13 s; at 40/s (6.4 s) a CI run with a CPU hog and other work on its two cores once missed it
SLOW_CLIENT = {"CARDPOOL_KUBE_QPS": "20", "CARDPOOL_KUBE_BURST": "5"}


def get_pool(kube: Kube, name: str) -> dict:
    return client.CustomObjectsApi(kube.api).get_cluster_custom_object(GROUP, VERSION, "cardpools", name)


@pytest.fixture
def bulk_nodes(kube: Kube) -> Iterator[list[str]]:
    names = [n["metadata"]["name"] for n in BULK.node_objects()]
    kube.run("delete", "node", "--ignore-not-found", "--wait=true", "--timeout=60s", *names)  # an earlier run's
    fleets.apply(kube.core, BULK, prune=False)
    yield names
    kube.run("delete", "node", "--ignore-not-found", "--wait=true", "--timeout=60s", *names)


@pytest.fixture
def slow_operator(operator: Any) -> Iterator[Any]:
    operator.stop()
    operator.start(env=SLOW_CLIENT)
    yield operator
    operator.stop()
    operator.start()


def test_a_faulted_jobs_restart_goes_ahead_of_another_gangs_pod_creation(
        kube: Kube, namespace: str, bulk_nodes: list[str], slow_operator: Any) -> None:
    groups = example("pool-mixed-vendor.yaml")["spec"]["nodeGroups"]
    bulk = {"name": "bulk", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L40S"},
            "accelerator": {"vendor": "nvidia", "model": "L40S", "resource": "nvidia.com/gpu", "cardsPerNode": 8}}
    pool = make_pool(kube, namespace, {**HEALTH, "spec.nodeGroups": [*groups, bulk]})
    pool_name = next(pool)
    try:
        faulted = submit(kube, namespace, pool_name, TORCH, **{"metadata.name": "faulted",
                                                               "spec.workers.size": {"min": 2, "max": 2},
                                                               "spec.placement.accelerators": ["H800"]})
        wait_phase(kube, namespace, faulted, "Running")
        victim = rank_nodes(kube, namespace, faulted, 1)[1]
        big = submit(kube, namespace, pool_name, TORCH, **{
            "metadata.name": "big", "spec.workers.cardsPerWorker": 1,
            # 8 one-card workers per node must fit the node's CPU and memory too (cardpool counts only cards)
            "spec.workers.template.spec.containers.0.resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
            "spec.workers.size": {"min": GANG, "max": GANG}, "spec.placement.accelerators": ["L40S"]})

        def creating() -> int:
            count = len(pods_of(kube, namespace, big))
            if not 0 < count < GANG // 4:
                raise NotYet(f"{count} of the gang's {GANG} pods exist")
            return count

        wait_for("the gang's pods to be in creation", creating, timeout=TIMEOUT, interval=0.05)
        faults.make_node_not_ready(kube.core, victim)
        try:
            def restarted() -> int:
                second = [p for p in pods_of(kube, namespace, faulted) if p.metadata.labels["cardpool.io/attempt"]
                          == "2"]
                if len(second) < 2:
                    raise NotYet(f"{len(second)} of 2 pods of attempt 2")
                return len(pods_of(kube, namespace, big))

            gang_then = wait_for("the faulted job's new attempt to have its pods", restarted, timeout=TIMEOUT,
                                 interval=0.05)
            assert gang_then < GANG, "the other gang's creation finished first: the restart waited behind it"
            status = wait_attempt(kube, namespace, faulted, 2)
            assert victim not in status["placement"][0]["nodes"]
            wait_phase(kube, namespace, big, "Running", timeout=3 * TIMEOUT)
            print(f"the restart's pods existed when {gang_then} of the gang's {GANG} pods did")
        finally:
            faults.make_node_ready(kube.core, victim)
    finally:
        started = time.monotonic()
        next(pool, None)  # the pool's teardown: jobs deleted, pods gone, pool deleted
        print(f"teardown took {time.monotonic() - started:.1f} s")


def test_cards_held_by_a_pod_cardpool_does_not_manage_are_not_given_out(
        kube: Kube, namespace: str, operator: Any) -> None:
    pool = make_pool(kube, namespace)
    pool_name = next(pool)
    try:
        h800 = sorted(n.metadata.name for n in kube.core.list_node(
            label_selector="nvidia.com/gpu.product=NVIDIA-H800").items)
        kube.core.create_namespaced_pod(namespace, pod_manifest("inference", {"nvidia.com/gpu": "8"}, node=h800[0]))

        def inference_running() -> bool:
            pod = kube.core.read_namespaced_pod("inference", namespace)
            if pod.status.phase != "Running":
                raise NotYet(f"phase {pod.status.phase}")
            return True

        wait_for("the inference pod to run on its node", inference_running, timeout=TIMEOUT)

        def pool_sees_it() -> dict:
            groups = {g["name"]: g for g in (get_pool(kube, pool_name).get("status") or {}).get("groups", [])}
            group = groups.get("h800", {})
            if group.get("otherCards") != 8:
                raise NotYet(f"h800 group status {group}")
            return group

        group = wait_for("the pool to count the inference pod's cards", pool_sees_it, timeout=TIMEOUT)
        assert group["freeCards"] == 8 * (len(h800) - 1) and group["allocatedCards"] == 0
        # a gang of every H800 node cannot start while one node's cards are taken, and says why
        whole = submit(kube, namespace, pool_name, TORCH, **{"spec.workers.size": {"min": len(h800),
                                                                                   "max": len(h800)},
                                                             "spec.placement.accelerators": ["H800"]})
        status = wait_phase(kube, namespace, whole, "Queued")
        assert not pods_of(kube, namespace, whole), "placed onto cards another workload holds"
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] in ("Reserved", "NoCapacity"), ready
        kube.core.delete_namespaced_pod("inference", namespace, grace_period_seconds=0)
        running = wait_phase(kube, namespace, whole, "Running")
        assert sorted(running["placement"][0]["nodes"]) == h800
    finally:
        next(pool, None)
