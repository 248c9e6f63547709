"""Defragmentation on the real local cluster: small jobs that finished left every A100 node half used; a
full-node gang cannot start although 16 cards are free. cardpool moves one small job, the only one no
PodDisruptionBudget protects (graceful save, resume from it on another node), and the gang starts on the
node it freed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from cardpool.api.keys import GROUP, VERSION
from jobs import (
    TIMEOUT,
    TORCH,
    checkpoint,
    env_of,
    get_job,
    make_pool,
    pods_of,
    rank_nodes,
    submit,
    wait_attempt,
    wait_phase,
)
from localkube import faults
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for

A100 = {"spec.placement.accelerators": ["A100"]}
SMALL = {**A100, "spec.workers.cardsPerWorker": 4, "spec.workers.size": {"min": 1, "max": 1},
         "spec.checkpoint": {"uri": "s3://ckpt/small", "gracefulSaveSeconds": 60}}


@pytest.fixture
def pool(kube: Kube, operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace, {"spec.defragmentation": {
        "enabled": True, "movableJobs": "All", "maxMigrationsPerHour": 6, "maxConcurrentMigrations": 2}})


def pool_status(kube: Kube, pool: str) -> dict:
    return client.CustomObjectsApi(kube.api).get_cluster_custom_object(GROUP, VERSION, "cardpools", pool)["status"]


def test_a_gang_blocked_by_fragmentation_starts_after_one_small_job_moves(
        kube: Kube, namespace: str, pool: str) -> None:
    smalls = [submit(kube, namespace, pool, TORCH, **SMALL, **{"metadata.name": f"small-{i}"}) for i in range(8)]
    for name in smalls:
        wait_attempt(kube, namespace, name, 1)
        checkpoint(kube, namespace, name, 1, 100, 4)
    by_node: dict[str, list[str]] = {}
    for name in smalls:
        by_node.setdefault(rank_nodes(kube, namespace, name, 1)[0], []).append(name)
    assert sorted(len(v) for v in by_node.values()) == [2, 2, 2, 2]  # best fit packs two per node
    finished = [names[0] for names in by_node.values()]
    for name in finished:  # half of them end: every node keeps 4 busy cards, none is free
        faults.complete_pod(kube.core, namespace, f"{name}-a1-0")
    for name in finished:
        wait_phase(kube, namespace, name, "Succeeded")
    def fragmented() -> tuple[int, int, int]:  # the pool's status is written apart from the jobs': wait for it
        a100 = next(g for g in pool_status(kube, pool)["groups"] if g["name"] == "a100")
        seen = (a100["freeCards"], a100["largestFreeBlock"], a100["fragmentationPercent"])
        if seen != (16, 4, 100):
            raise NotYet(f"a100 free, largest free block, fragmentation: {seen}")
        return seen

    wait_for("16 free A100 cards, 4 on each node, in the pool's status", fragmented, timeout=TIMEOUT)
    # a PodDisruptionBudget protects three of the four left; the fourth (its checkpoint the oldest, so the
    # most expensive to move) is the only one defragmentation may move
    left = sorted(names[1] for names in by_node.values())
    client.PolicyV1Api(kube.api).create_namespaced_pod_disruption_budget(namespace, {
        # minAvailable as a count: maxUnavailable would make the disruption controller read the replicas of
        # the pods' owner through the scale subresource, whose spec.workers.size.desired is often unset
        "metadata": {"name": "protect"}, "spec": {"minAvailable": 3, "selector": {"matchExpressions": [
            {"key": "cardpool.io/job", "operator": "In", "values": left[1:]}]}}})

    def budget_observed() -> bool:
        pdb = client.PolicyV1Api(kube.api).read_namespaced_pod_disruption_budget("protect", namespace)
        if pdb.status is None or pdb.status.expected_pods != 3:
            raise NotYet(f"status {pdb.status}")
        return True

    wait_for("the disruption controller to count the protected pods", budget_observed, timeout=TIMEOUT)

    started = time.monotonic()
    gang = submit(kube, namespace, pool, TORCH, **A100, **{"metadata.name": "gang",
                                                           "spec.workers.size": {"min": 1, "max": 1}})

    def moving() -> list[str]:
        defrag = pool_status(kube, pool).get("defragmentation") or {}
        moves = [m for m in defrag.get("migrations", []) if m["madeRoomFor"] == f"{namespace}/gang"]
        if not moves:
            raise NotYet(f"defragmentation {defrag}")
        return [m["job"].split("/")[1] for m in moves]

    moved = wait_for("the pool to plan and start a move for the gang", moving, timeout=TIMEOUT)
    planned = time.monotonic() - started
    assert moved == [left[0]]
    old_node = next(node for node, names in by_node.items() if moved[0] in names)

    # the moved job's pod is gone at once on KWOK (a real one takes its grace period to save): the gang
    # starts on the node it left, while the moved job waits for the save it was asked for
    wait_phase(kube, namespace, gang, "Running")
    gang_started = time.monotonic() - started
    migration = next(m for m in pool_status(kube, pool)["defragmentation"]["migrations"]
                     if m["job"] == f"{namespace}/{moved[0]}")
    assert migration["fromNodes"] == [old_node] and migration["toNodes"] != [old_node]
    assert rank_nodes(kube, namespace, gang, 1)[0] == old_node  # the node the move freed

    def waiting_for_save() -> dict:
        status = get_job(kube, namespace, moved[0])["status"]
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        if ready["reason"] != "WaitingForCheckpoint":
            raise NotYet(f"{status['phase']}: {ready['reason']} {ready['message']}")
        return status

    status = wait_for(f"{moved[0]} to stop and wait for its graceful save", waiting_for_save, timeout=TIMEOUT)
    assert status["history"][0]["endReason"] == "Migrated" and status["restarts"]["uncounted"] == 1
    checkpoint(kube, namespace, moved[0], 1, 150, 4)  # the save the trainer makes on SIGTERM
    status = wait_attempt(kube, namespace, moved[0], 2)
    new_node = rank_nodes(kube, namespace, moved[0], 2)[0]
    assert new_node != old_node and status["history"][-1]["resumedFromStep"] == 150
    pod = next(p for p in pods_of(kube, namespace, moved[0]) if p.metadata.labels["cardpool.io/attempt"] == "2")
    assert env_of(pod)["CARDPOOL_RESUME_STEP"] == "150"
    resumed = time.monotonic() - started

    def done() -> dict:
        defrag = pool_status(kube, pool)["defragmentation"]
        if defrag.get("target") is not None:
            raise NotYet(f"target {defrag.get('target')}")
        return defrag

    defrag = wait_for("the defragmentation to be recorded as done", done, timeout=TIMEOUT)
    # pool-wide figures (the other groups' free whole nodes count too): lower once the gang runs
    assert defrag["fragmentationAfterPercent"] < defrag["fragmentationBeforePercent"]
    reasons = {e.reason for e in kube.core.list_namespaced_event(
        "default", field_selector=f"involvedObject.name={pool}").items}
    assert {"Defragmenting", "DefragmentationDone"} <= reasons
    print(f"defragmentation: move started {planned:.1f} s after the gang was submitted, gang Running at "
          f"{gang_started:.1f} s, moved job running again (after its save was reported) at {resumed:.1f} s")
