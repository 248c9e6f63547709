"""One job across two accelerator families on the real local cluster: 8 workers over the 6 H800 nodes and
the Ascend 910B group, each pod with its family's image, device resource, communication library and share
of the global batch; a fault in the H800 family restarts the job with a recomputed layout and split."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from jobs import HEALTH, make_pool, pods_of, returned, submit, wait_attempt
from localkube import faults
from localkube.testing import Kube
from localkube.waiting import wait_for

MIXED = "job-mixed-families.yaml"  # DeepSpeed, [H800, Ascend910B], Mixed, global batch 1024


@pytest.fixture
def pool(kube: Kube, operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace, HEALTH)


def family_view(kube: Kube, namespace: str, job: str, attempt: int) -> list[dict]:
    out = []
    for pod in pods_of(kube, namespace, job):
        if pod.metadata.labels["cardpool.io/attempt"] != str(attempt):
            continue
        trainer = pod.spec.containers[0]
        env = {e.name: e.value for e in trainer.env}
        out.append({"rank": int(env["CARDPOOL_RANK"]), "model": env["CARDPOOL_ACCELERATOR"],
                    "image": trainer.image.rsplit(":", 1)[1], "collective": env["CARDPOOL_COLLECTIVE"],
                    "resources": sorted(k for k in trainer.resources.limits if "/" in k),
                    "share": int(env["CARDPOOL_BATCH_SHARE"]), "layout": json.loads(env["CARDPOOL_LAYOUT"]),
                    "node": pod.spec.node_name})
    return sorted(out, key=lambda p: p["rank"])


def test_a_job_across_h800_and_ascend_gets_each_familys_stack_and_share_and_survives_a_fault(
        kube: Kube, namespace: str, pool: str) -> None:
    job = submit(kube, namespace, pool, MIXED, **{"spec.workers.size": {"min": 8, "max": 8}})
    status = wait_attempt(kube, namespace, job, 1)
    assert status["accelerator"] == "H800+Ascend910B"
    assert [(g["accelerator"], g["workers"], g["relativeThroughput"], g["batchShare"]) for g in status["placement"]] \
        == [("H800", 6, 1.0, 852), ("Ascend910B", 2, 0.6, 172)]  # per rank 1024/7.2 = 142.2 and 85.3
    pods = family_view(kube, namespace, job, 1)
    assert [(p["model"], p["image"], p["collective"], p["resources"], p["share"]) for p in pods] == \
        [("H800", "cuda12", "nccl", ["nvidia.com/gpu"], 142)] * 6 + \
        [("Ascend910B", "cann8", "hccl", ["huawei.com/Ascend910"], 86)] * 2
    assert sum(p["share"] for p in pods) == 1024
    assert pods[0]["layout"] == pods[7]["layout"] and [g["collective"] for g in pods[0]["layout"]] == ["nccl", "hccl"]

    victim = pods[2]["node"]  # an H800 node: that family now has 5 nodes
    faults.make_node_not_ready(kube.core, victim)
    try:
        status = wait_attempt(kube, namespace, job, 2)
        assert status["lastFailure"]["reason"] == "NodeNotReady"
        assert [(g["accelerator"], g["workers"], g["batchShare"]) for g in status["placement"]] == [
            ("H800", 5, 754), ("Ascend910B", 3, 270)]  # recomputed: per rank 1024/6.8 = 150.6 and 90.4
        pods = family_view(kube, namespace, job, 2)
        assert victim not in {p["node"] for p in pods} and sum(p["share"] for p in pods) == 1024
        assert [(p["model"], p["share"]) for p in pods] == [("H800", 151)] * 4 + [("H800", 150)] + [
            ("Ascend910B", 90)] * 3
        assert [g["workers"] for g in pods[0]["layout"]] == [5, 3]
    finally:
        faults.make_node_ready(kube.core, victim)
        wait_for(f"node {victim} to be returned by cardpool", lambda: returned(kube, victim), timeout=90)
