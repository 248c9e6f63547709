"""Things that change under a running job, on the real local cluster (issue 14, class 4).

A job whose CardPool is deleted is still judged: a failed rank fails or restarts it, and it then waits, Stalled
with PoolNotFound, until the pool is back. An edit the running attempt cannot take (its accelerators, its pod
template) restarts it (SpecChanged, not counted against the restart budget) so that the spec in force is the
spec as written, and observedGeneration says so. After a pool drops a model, the jobs that name it can still be
suspended or relabelled: the admission policy checks accelerators only when they (or the pool) change."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cardpool.api.keys import GROUP, VERSION
from jobs import (
    POOL,
    TORCH,
    checkpoint,
    env_of,
    get_job,
    make_pool,
    node_model,
    pods_of,
    submit,
    wait_attempt,
    wait_phase,
)
from localkube import faults
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for
from manifests import edit, example

VERDICT_S = 10
SMALL = {"spec.workers.size": {"min": 1, "max": 1}}


@pytest.fixture
def pool(kube: Kube, quiet_operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace)


def custom(kube: Kube) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api)


def patch_job(kube: Kube, namespace: str, name: str, body: dict) -> dict:
    return custom(kube).patch_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", name, body)


def condition(kube: Kube, namespace: str, name: str, type_: str) -> dict:
    status = get_job(kube, namespace, name).get("status") or {}
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def test_a_job_whose_pool_is_deleted_is_still_judged_and_waits_for_the_pool(kube: Kube, namespace: str,
                                                                            pool: str) -> None:
    failing = submit(kube, namespace, pool, TORCH, **SMALL, **{"metadata.name": "fails"})
    restarting = submit(kube, namespace, pool, TORCH, **SMALL, **{"metadata.name": "restarts"})
    for name in (failing, restarting):
        wait_phase(kube, namespace, name, "Running")
    custom(kube).delete_cluster_custom_object(GROUP, VERSION, "cardpools", pool)
    faults.fail_pod(kube.core, namespace, f"{failing}-a1-0", exit_code=2)  # the Fail rule of the example
    faults.fail_pod(kube.core, namespace, f"{restarting}-a1-0", exit_code=1)  # within the restart budget
    status = wait_phase(kube, namespace, failing, "Failed", timeout=VERDICT_S)
    assert "exit code 2" in next(c for c in status["conditions"] if c["type"] == "Ready")["message"]

    def waiting_for_the_pool() -> dict:
        stalled = condition(kube, namespace, restarting, "Stalled")
        if (stalled.get("status"), stalled.get("reason")) != ("True", "PoolNotFound"):
            raise NotYet(f"Stalled {stalled}")
        return stalled
    stalled = wait_for(f"{restarting} to wait, Stalled, for its pool", waiting_for_the_pool, timeout=VERDICT_S)
    assert pool in stalled["message"]
    assert get_job(kube, namespace, restarting)["status"]["restarts"]["counted"] == 1
    wait_for("the failed attempts' pods to go", lambda: not pods_of(kube, namespace, restarting)
             or (_ for _ in ()).throw(NotYet("pods left")), timeout=VERDICT_S)
    custom(kube).create_cluster_custom_object(GROUP, VERSION, "cardpools",
                                              edit(example(POOL), {"metadata.name": pool}))
    wait_attempt(kube, namespace, restarting, 2)


def test_changing_the_accelerators_of_a_running_job_restarts_it_on_them(kube: Kube, namespace: str,
                                                                        pool: str) -> None:
    job = submit(kube, namespace, pool, TORCH, **SMALL)  # [H800, A100]: on H800
    wait_phase(kube, namespace, job, "Running")
    assert node_model(kube, pods_of(kube, namespace, job)[0].spec.node_name) == "h800"
    patch_job(kube, namespace, job, {"spec": {"placement": {"accelerators": ["A100"]}}})
    checkpoint(kube, namespace, job, 1, 100, 8)  # the graceful save the restart waits for
    status = wait_attempt(kube, namespace, job, 2)
    assert status["observedGeneration"] == 2 and status["accelerator"] == "A100"
    assert status["restarts"] == {"counted": 0, "uncounted": 1, "scaling": 0}
    assert (status["history"][0]["endReason"], status["history"][0]["planned"]) == ("SpecChanged", True)
    assert status["lastCheckpoint"]["step"] == 100
    assert [node_model(kube, p.spec.node_name) for p in pods_of(kube, namespace, job)] == ["a100"]


def test_editing_the_template_of_a_running_job_restarts_it_with_the_new_pods(kube: Kube, namespace: str,
                                                                            pool: str) -> None:
    job = submit(kube, namespace, pool, TORCH, **SMALL)
    wait_phase(kube, namespace, job, "Running")
    body = get_job(kube, namespace, job)
    container = body["spec"]["workers"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "LEARNING_RATE", "value": "3e-4"}]
    patch_job(kube, namespace, job, {"spec": {"workers": {"template": body["spec"]["workers"]["template"]}}})
    checkpoint(kube, namespace, job, 1, 100, 8)
    wait_attempt(kube, namespace, job, 2)
    assert env_of(pods_of(kube, namespace, job)[0]).get("LEARNING_RATE") == "3e-4"
    assert condition(kube, namespace, job, "Reconciling").get("status") == "False"


def test_after_a_pool_drops_a_model_its_jobs_can_still_be_suspended_and_relabelled(kube: Kube, namespace: str,
                                                                                  pool: str) -> None:
    job = submit(kube, namespace, pool, TORCH, **SMALL)  # names H800 and A100
    wait_phase(kube, namespace, job, "Running")
    groups = custom(kube).get_cluster_custom_object(GROUP, VERSION, "cardpools", pool)["spec"]["nodeGroups"]
    custom(kube).patch_cluster_custom_object(GROUP, VERSION, "cardpools", pool, {"spec": {"nodeGroups": [
        g for g in groups if g["accelerator"]["model"] != "A100"]}})
    patch_job(kube, namespace, job, {"metadata": {"labels": {"team": "vision"}}})
    patch_job(kube, namespace, job, {"spec": {"suspend": True}})
    wait_phase(kube, namespace, job, "Suspended", timeout=VERDICT_S)
    with pytest.raises(ApiException) as refused:  # naming the dropped model again is a change: checked
        patch_job(kube, namespace, job, {"spec": {"placement": {"accelerators": ["A100", "H800"]}}})
    assert refused.value.status == 422 and "spec.placement.accelerators" in refused.value.body
    assert "A100" in refused.value.body
