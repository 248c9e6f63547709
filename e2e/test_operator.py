"""The operator on the real local cluster: gangs placed as pods, lifecycle, crash safety, leader election.

Every test makes its own CardPool (named after its namespace) over the small fleet; cards held by other
tests' leftover pods count as used, as they would for two pools sharing nodes.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from cardpool.api.keys import GROUP, LABEL_JOB, VERSION
from jobs import (
    MINDSPORE,
    TIMEOUT,
    TORCH,
    env_of,
    get_job,
    make_pool,
    node_model,
    pods_of,
    run_a_job_to_its_ttl_unrefused,
    submit,
    wait_phase,
)
from localkube import faults
from localkube.config import REPO
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for


@pytest.fixture
def pool(kube: Kube, operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace)


def test_homogeneous_pytorch_job_runs_on_the_preferred_model_with_the_torchrun_contract(
        kube: Kube, namespace: str, pool: str) -> None:
    name = submit(kube, namespace, pool, TORCH)
    status = wait_phase(kube, namespace, name, "Running")
    assert status["placement"][0]["accelerator"] == "H800" and status["workers"] == 4
    assert status["size"] == "4/4" and status["worldSize"] == 32 and status["attempt"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "Reconciling": "False", "Stalled": "False", "Suspended": "False"}
    pods = sorted(pods_of(kube, namespace, name), key=lambda p: int(p.metadata.labels["cardpool.io/rank"]))
    assert [p.metadata.name for p in pods] == [f"{name}-a1-{r}" for r in range(4)]
    assert all(p.status.phase == "Running" and node_model(kube, p.spec.node_name) == "h800" for p in pods)
    assert [p.spec.node_name for p in pods] == status["placement"][0]["nodes"]
    for rank, pod in enumerate(pods):
        env = env_of(pod)
        assert env["MASTER_ADDR"] == f"{name}-0.{name}.{namespace}.svc" and env["MASTER_PORT"] == "29500"
        assert (env["NNODES"], env["NODE_RANK"], env["NPROC_PER_NODE"]) == ("4", str(rank), "8")
        assert env["PET_NNODES"] == "4" and env["CARDPOOL_WORLD_SIZE"] == "32"
        assert env["CARDPOOL_ACCELERATOR"] == "H800" and env["CARDPOOL_COLLECTIVE"] == "nccl"
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "8"
        assert pod.metadata.owner_references[0].kind == "TrainingJob"
        assert (pod.spec.hostname, pod.spec.subdomain) == (f"{name}-{rank}", name)
        unreachable = [t for t in pod.spec.tolerations if t.key == "node.kubernetes.io/unreachable"]
        assert unreachable[0].toleration_seconds == 30
    service = kube.core.read_namespaced_service(name, namespace)
    assert service.spec.cluster_ip == "None" and service.spec.publish_not_ready_addresses


def test_mindspore_job_gets_an_hccl_rank_table(kube: Kube, namespace: str, pool: str) -> None:
    name = submit(kube, namespace, pool, MINDSPORE)
    status = wait_phase(kube, namespace, name, "Running")
    assert status["workers"] == 6 and status["accelerator"] == "Ascend910B"
    table = json.loads(kube.core.read_namespaced_config_map(f"{name}-cardpool", namespace).data["rank_table.json"])
    assert table["version"] == "1.0" and table["server_count"] == "6" and table["status"] == "completed"
    ranks = [d["rank_id"] for s in table["server_list"] for d in s["device"]]
    assert ranks == [str(i) for i in range(48)]
    assert table["server_list"][2]["server_id"] == f"{name}-2.{name}.{namespace}.svc"
    pod = next(p for p in pods_of(kube, namespace, name) if p.metadata.labels["cardpool.io/rank"] == "2")
    env = env_of(pod)
    assert (env["RANK_TABLE_FILE"], env["RANK_SIZE"], env["RANK_ID"]) == (
        "/etc/cardpool/rank_table.json", "48", "16")
    assert env["CARDPOOL_COLLECTIVE"] == "hccl" and env["HCCL_CONNECT_TIMEOUT"] == "1200"  # the override
    assert pod.spec.containers[0].resources.limits["huawei.com/Ascend910"] == "8"
    assert any(v.config_map and v.config_map.name == f"{name}-cardpool" for v in pod.spec.volumes)


def test_a_job_larger_than_free_capacity_queues_without_pods_then_starts(kube: Kube, namespace: str,
                                                                         pool: str) -> None:
    holder = submit(kube, namespace, pool, TORCH)  # 4 of the 6 H800 nodes
    wait_phase(kube, namespace, holder, "Running")
    big = submit(kube, namespace, pool, TORCH, **{"metadata.name": "big", "spec.workers.size": {"min": 3, "max": 3},
                                                  "spec.placement.accelerators": ["H800"]})
    status = wait_phase(kube, namespace, big, "Queued")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "Reserved"
    assert "needs 3 x 8 cards of H800" in ready["message"]
    assert pods_of(kube, namespace, big) == []
    client.CustomObjectsApi(kube.api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs",
                                                                      holder)
    status = wait_phase(kube, namespace, big, "Running")
    assert status["workers"] == 3


def test_a_job_falls_back_to_its_second_preference(kube: Kube, namespace: str, pool: str) -> None:
    full = submit(kube, namespace, pool, TORCH, **{"metadata.name": "full", "spec.workers.size": {"min": 6, "max": 6},
                                                   "spec.placement.accelerators": ["H800"]})
    wait_phase(kube, namespace, full, "Running")
    name = submit(kube, namespace, pool, TORCH, **{"spec.workers.size": {"min": 2, "max": 2}})
    status = wait_phase(kube, namespace, name, "Running")
    assert status["accelerator"] == "A100"
    assert {node_model(kube, p.spec.node_name) for p in pods_of(kube, namespace, name)} == {"a100"}


def test_suspend_stops_the_workers_and_resume_starts_a_new_attempt(kube: Kube, namespace: str, pool: str) -> None:
    name = submit(kube, namespace, pool, TORCH)
    wait_phase(kube, namespace, name, "Running")
    api = client.CustomObjectsApi(kube.api)
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", name, {"spec": {"suspend": True}})
    status = wait_phase(kube, namespace, name, "Suspended")
    assert {c["type"]: c["status"] for c in status["conditions"]}["Suspended"] == "True"
    wait_for(f"pods of {name} to be gone", lambda: pods_of(kube, namespace, name) == [], timeout=TIMEOUT)
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", name, {"spec": {"suspend": False}})
    status = wait_phase(kube, namespace, name, "Running")
    assert status["attempt"] == 2 and status["restarts"]["counted"] == 0
    assert {p.metadata.name for p in pods_of(kube, namespace, name)} == {f"{name}-a2-{r}" for r in range(4)}
    # rendezvous DNS now answers with attempt 2's pods only
    assert kube.core.read_namespaced_service(name, namespace).spec.selector["cardpool.io/attempt"] == "2"


def test_deleting_a_job_removes_its_pods_service_and_config(kube: Kube, namespace: str, pool: str) -> None:
    name = submit(kube, namespace, pool, TORCH)
    wait_phase(kube, namespace, name, "Running")
    client.CustomObjectsApi(kube.api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs",
                                                                      name)

    def gone() -> bool:
        left = [p.metadata.name for p in pods_of(kube, namespace, name)]
        left += [s.metadata.name for s in kube.core.list_namespaced_service(namespace).items]
        left += [c.metadata.name for c in kube.core.list_namespaced_config_map(namespace).items
                 if c.metadata.name.startswith(name)]
        if left:
            raise NotYet(f"still there: {left}")
        return True

    wait_for(f"the children of {name} to be garbage-collected", gone, timeout=TIMEOUT)


def test_finished_job_is_deleted_after_its_ttl(kube: Kube, namespace: str, pool: str) -> None:
    name = submit(kube, namespace, pool, TORCH, **{"spec.workers.size": {"min": 2, "max": 2},
                                                   "spec.ttlSecondsAfterFinished": 3})
    wait_phase(kube, namespace, name, "Running")
    faults.complete_pod(kube.core, namespace, f"{name}-a1-0")  # PyTorch: rank 0 decides
    status = wait_phase(kube, namespace, name, "Succeeded")
    assert status["completionTime"]

    def deleted() -> bool:
        try:
            get_job(kube, namespace, name)
        except ApiException as exc:
            return exc.status == 404
        raise NotYet("the job still exists")

    wait_for(f"TrainingJob {name} to be deleted 3 s after it finished", deleted, timeout=TIMEOUT)


def test_sigkill_in_the_middle_of_a_64_pod_gang_converges_to_one_pod_per_rank(
        kube: Kube, namespace: str, pool: str, operator: Any) -> None:
    seen: list[int] = []
    killed = threading.Event()

    def kill_on_first_pod() -> None:
        w = watch.Watch()
        for event in w.stream(kube.core.list_namespaced_pod, namespace, label_selector=f"{LABEL_JOB}=gang",
                              timeout_seconds=TIMEOUT):
            if event["type"] == "ADDED":
                operator.stop(sig=signal.SIGKILL)
                seen.append(len(pods_of(kube, namespace, "gang")))
                killed.set()
                w.stop()

    watcher = threading.Thread(target=kill_on_first_pod, daemon=True)
    watcher.start()
    try:
        submit(kube, namespace, pool, TORCH, **{
            "metadata.name": "gang", "spec.workers.cardsPerWorker": 1, "spec.workers.size": {"min": 64, "max": 64},
            "spec.placement.accelerators": ["H800", "A100"], "spec.placement.mode": "Mixed",
            # eight 1-card workers share a 192-CPU node: cardpool places by cards, so keep CPU small
            "spec.workers.template.spec.containers.0.resources": {"requests": {"cpu": "4"}}})
        assert killed.wait(TIMEOUT), "no pod of the gang appeared"
    finally:
        watcher.join(timeout=5)
        operator.start()  # the same operator, restarted
    assert seen and seen[0] < 64, f"the operator was killed after creating {seen} pods: not mid-gang"
    status = wait_phase(kube, namespace, "gang", "Running", timeout=90)
    pods = pods_of(kube, namespace, "gang")
    ranks = sorted(int(p.metadata.labels["cardpool.io/rank"]) for p in pods)
    assert ranks == list(range(64)), "exactly one pod per rank"
    assert {p.metadata.labels["cardpool.io/attempt"] for p in pods} == {"1"} and status["attempt"] == 1


def test_two_replicas_one_acts_and_the_other_takes_over(kube: Kube, namespace: str, pool: str,
                                                        operator: Any) -> None:
    coordination = client.CoordinationV1Api(kube.api)

    def holder() -> str:
        return coordination.read_namespaced_lease("cardpool-operator", "default").spec.holder_identity

    operator.start("standby", health_port=operator.health_port + 1)
    try:
        assert holder() == "operator"
        first = submit(kube, namespace, pool, TORCH, **{"metadata.name": "first"})
        wait_phase(kube, namespace, first, "Running")
        assert "placing attempt 1 of " + f"{namespace}/first" in operator.log("operator")
        assert "placing attempt" not in operator.log("standby")

        operator.stop("operator", sig=signal.SIGKILL)  # no cleanup: the lease must expire
        wait_for("the standby to take the lease", lambda: holder() == "standby", timeout=25)
        second = submit(kube, namespace, pool, TORCH, **{"metadata.name": "second",
                                                         "spec.workers.size": {"min": 2, "max": 2}})
        wait_phase(kube, namespace, second, "Running")
        assert "placing attempt 1 of " + f"{namespace}/second" in operator.log("standby")
    finally:
        operator.stop("standby")  # SIGTERM: it releases the lease on the way out
        operator.stop("operator")
        operator.start()
    wait_for("the restarted operator to take the lease", lambda: holder() == "operator", timeout=25)


def test_installed_with_its_manifests_the_operator_works_with_only_its_rbac(
        kube: Kube, namespace: str, pool: str, operator: Any, tmp_path) -> None:
    kube.run("apply", "--server-side", "--force-conflicts", "-k", str(REPO / "manifests"))
    deployment = client.AppsV1Api(kube.api).read_namespaced_deployment("cardpool-operator", "cardpool-system")
    container = deployment.spec.template.spec.containers[0]
    assert deployment.spec.replicas == 2 and deployment.spec.template.spec.security_context.run_as_non_root
    assert container.security_context.read_only_root_filesystem and container.resources.limits["memory"]
    role = client.RbacAuthorizationV1Api(kube.api).read_cluster_role("cardpool-operator")
    assert not any("*" in r.verbs or "*" in r.resources or "secrets" in r.resources for r in role.rules)
    # the Deployment's pods cannot run here (KWOK only plays them): run this checkout as its ServiceAccount
    token = kube.run("create", "token", "cardpool-operator", "-n", "cardpool-system", "--duration=1h").stdout
    config = yaml.safe_load(kube.kubeconfig.read_text())
    config["users"] = [{"name": "cardpool-operator", "user": {"token": token.strip()}}]
    config["contexts"][0]["context"]["user"] = "cardpool-operator"
    restricted = tmp_path / "operator.kubeconfig"
    restricted.write_text(yaml.safe_dump(config))
    operator.stop("operator")
    try:
        operator.start("restricted", health_port=operator.health_port + 2, kubeconfig=restricted,
                       namespace="cardpool-system")
        run_a_job_to_its_ttl_unrefused(kube, namespace, pool, lambda: operator.log("restricted"))
    finally:
        operator.stop("restricted")
        operator.start()


def test_a_gang_that_cannot_start_is_rolled_back_and_requeued(kube: Kube, namespace: str, pool: str) -> None:
    # cardpool places by cards; a CPU request no node can meet keeps the pods Pending, as a real
    # scheduling surprise would
    name = submit(kube, namespace, pool, TORCH, **{
        "spec.startupTimeoutSeconds": 30, "spec.workers.size": {"min": 2, "max": 2},
        "spec.workers.template.spec.containers.0.resources": {"requests": {"cpu": "1000"}}})
    wait_phase(kube, namespace, name, "Starting")
    status = wait_phase(kube, namespace, name, "Queued", timeout=30 + TIMEOUT)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "GangStartTimeout" and "did not start within 30 s" in ready["message"]
    assert status["startTimeouts"] == 1 and status["notBefore"]
    wait_for(f"the pods of {name} to be deleted", lambda: pods_of(kube, namespace, name) == [], timeout=TIMEOUT)


def test_reported_checkpoints_are_judged_recorded_and_resumed_from(kube: Kube, namespace: str, pool: str) -> None:
    from cardpool.runtime import Contract, Saved, report_checkpoint

    name = submit(kube, namespace, pool, TORCH)
    wait_phase(kube, namespace, name, "Running")
    rank0 = next(p for p in pods_of(kube, namespace, name) if p.metadata.labels["cardpool.io/rank"] == "0")
    contract = Contract.from_env(env_of(rank0))  # what rank 0 reads inside its pod
    uri = "s3://checkpoints/llama-sft"
    report_checkpoint(contract, Saved(100, f"{uri}/100", 32, None), kube.api)

    def recorded(step: int):
        def check() -> dict:
            status = get_job(kube, namespace, name)["status"]
            if (status.get("lastCheckpoint") or {}).get("step") != step:
                raise NotYet(f"lastCheckpoint={status.get('lastCheckpoint')}")
            return status
        return check

    status = wait_for(f"{name} to record step 100", recorded(100), timeout=TIMEOUT)
    assert status["lastCheckpoint"]["uri"] == f"{uri}/100" and status["lastCheckpoint"]["worldSize"] == 32

    def verdict(checkpoint: str) -> tuple[str, str]:
        def check() -> tuple[str, str]:
            obj = client.CustomObjectsApi(kube.api).get_namespaced_custom_object(
                GROUP, VERSION, namespace, "checkpoints", checkpoint)
            accepted = next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Accepted"),
                            None)
            if not accepted:
                raise NotYet("not judged yet")
            return accepted["status"], accepted["reason"]
        return wait_for(f"checkpoint {checkpoint} to be judged", check, timeout=TIMEOUT)

    assert verdict(f"{name}-a1-s100") == ("True", "Recorded")
    owner = client.CustomObjectsApi(kube.api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "checkpoints", f"{name}-a1-s100")["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "TrainingJob" and owner["name"] == name
    report_checkpoint(contract, Saved(50, f"{uri}/50", 32, None), kube.api)
    assert verdict(f"{name}-a1-s50") == ("False", "NotNewer")

    # a new attempt resumes from the recorded step
    api = client.CustomObjectsApi(kube.api)
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", name, {"spec": {"suspend": True}})
    wait_phase(kube, namespace, name, "Suspended")
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", name, {"spec": {"suspend": False}})
    wait_phase(kube, namespace, name, "Running")
    env = env_of(next(p for p in pods_of(kube, namespace, name) if p.metadata.labels["cardpool.io/attempt"] == "2"))
    assert (env["CARDPOOL_RESUME_STEP"], env["CARDPOOL_RESUME_URI"], env["CARDPOOL_RESUME_WORLD_SIZE"]) == (
        "100", f"{uri}/100", "32")
    report_checkpoint(contract, Saved(300, f"{uri}/300", 32, None), kube.api)  # attempt 1 reporting late
    assert verdict(f"{name}-a1-s300") == ("False", "OlderAttempt")


def test_a_job_for_a_pool_that_does_not_exist_says_so(kube: Kube, namespace: str, operator: Any) -> None:
    name = submit(kube, namespace, f"{namespace}-nowhere", TORCH)

    def reported() -> dict:
        status = get_job(kube, namespace, name).get("status") or {}
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        if ready.get("reason") != "PoolNotFound":
            raise NotYet(f"status={status}")
        return ready

    ready = wait_for(f"{name} to report its missing pool", reported, timeout=TIMEOUT)
    assert f"CardPool {namespace}-nowhere does not exist" in ready["message"]
    assert pods_of(kube, namespace, name) == []
