"""Pods the API server refuses, and routine deletes, on the real local cluster (issue 14, classes 1 and 5).

A TrainingJob the CRD schema admits can still build worker pods that core/v1 validation or an admission plugin
refuses (a limit below its request, a mount of a missing volume, a PriorityClass that does not exist, a
namespace's PodSecurity level). The operator asks in a server-side dry run before it places the gang: the job
is Stalled with the API server's own message within seconds, no pod of it exists, and its log holds no
traceback. An invalid pod is asked again only when the spec changes; an admission refusal after a backoff, so
creating the missing PriorityClass lets the job run without any edit. Deleting a namespace or 500 jobs leaves
no children behind and no traceback in the log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cardpool.api.keys import GROUP, VERSION
from jobs import TORCH, get_job, make_pool, pods_of, stalled, submit, wait_phase
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for
from manifests import edit, example

VERDICT_S = 10  # the bound: a terminal condition with the API's message within 10 s
SMALL = {"spec.workers.size": {"min": 1, "max": 1}}


@pytest.fixture
def pool(kube: Kube, quiet_operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace)


@pytest.fixture
def neighbour(kube: Kube, namespace: str, pool: str) -> Iterator[str]:
    """A good job running beside the bad one: the bad input leaves it untouched (same attempt, same pod)."""
    name = submit(kube, namespace, pool, TORCH, **SMALL, **{"metadata.name": "neighbour"})
    wait_phase(kube, namespace, name, "Running")
    before = [p.metadata.uid for p in pods_of(kube, namespace, name)]
    yield name
    status = get_job(kube, namespace, name)["status"]
    assert (status["phase"], status["attempt"], status["restarts"]["counted"]) == ("Running", 1, 0), status
    assert [p.metadata.uid for p in pods_of(kube, namespace, name)] == before


def trainer(**fields: object) -> dict[str, object]:
    """Changes to the example's trainer container (the first)."""
    return {f"spec.workers.template.spec.containers.0.{k}": v for k, v in fields.items()}


# Pods the CRD schema cannot refuse: core/v1 validation across fields, and admission plugins.
INVALID = [
    pytest.param("limit-below-request", trainer(resources={"requests": {"cpu": "32"}, "limits": {"cpu": "1"}}),
                 "must be less than or equal to cpu limit", id="limit-below-request"),
    pytest.param("mount-of-no-volume", trainer(volumeMounts=[{"name": "data", "mountPath": "/data"}]),
                 "volumeMounts[0].name", id="mount-of-a-missing-volume"),
    pytest.param("override-bad-for-a100",
                 {"spec.workers.overrides": [{"accelerator": "A100",
                                              "resources": {"requests": {"cpu": "64"}, "limits": {"cpu": "2"}}}]},
                 "must be less than or equal to cpu limit", id="an-override-invalid-on-one-model"),
    # the API server runs without --allow-privileged (as many managed clusters do): its own policy, a 422
    pytest.param("privileged", trainer(securityContext={"privileged": True}), "privileged: Forbidden",
                 id="privileged-where-the-cluster-refuses-it"),
]


@pytest.mark.parametrize(("name", "changes", "names"), INVALID)
def test_an_invalid_worker_pod_stalls_the_job_with_the_api_servers_message_and_no_pod(
        kube: Kube, namespace: str, pool: str, neighbour: str, name: str, changes: dict, names: str) -> None:
    job = submit(kube, namespace, pool, TORCH, **{"metadata.name": name}, **changes)
    message = stalled(kube, namespace, job, "InvalidPodTemplate", VERDICT_S)
    assert names in message and "spec.workers.template" in message, message
    status = get_job(kube, namespace, job)["status"]
    assert status["phase"] == "Queued" and status.get("attempt", 0) == 0 and not pods_of(kube, namespace, job)
    assert status["observedGeneration"] == 1
    events = kube.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={job}").items
    assert not any(e.reason == "GangPlaced" for e in events)


def test_an_invalid_template_is_asked_again_when_the_spec_changes_and_then_runs(
        kube: Kube, namespace: str, pool: str) -> None:
    job = submit(kube, namespace, pool, TORCH, **SMALL, **trainer(
        volumeMounts=[{"name": "data", "mountPath": "/data"}]))
    stalled(kube, namespace, job, "InvalidPodTemplate", VERDICT_S)
    client.CustomObjectsApi(kube.api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "trainingjobs", job,
        {"spec": {"workers": {"template": {"spec": {"volumes": [{"name": "data", "emptyDir": {}}]}}}}})
    status = wait_phase(kube, namespace, job, "Running")
    assert status["observedGeneration"] == 2 and status["attempt"] == 1
    stall = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stall["status"] == "False"


def test_a_missing_priority_class_is_refused_until_it_exists_then_the_job_runs_unedited(
        kube: Kube, namespace: str, pool: str, neighbour: str) -> None:
    scheduling = client.SchedulingV1Api(kube.api)
    klass = f"{namespace}-gold"[:63]
    job = submit(kube, namespace, pool, TORCH, **SMALL, **{"spec.workers.template.spec.priorityClassName": klass})
    message = stalled(kube, namespace, job, "PodsRefused", VERDICT_S)
    assert klass in message and not pods_of(kube, namespace, job), message
    scheduling.create_priority_class({"metadata": {"name": klass}, "value": 1000})
    try:
        status = wait_phase(kube, namespace, job, "Running")  # asked again after its backoff (10 s, then 20 s)
        assert status["attempt"] == 1 and status["observedGeneration"] == 1
    finally:
        scheduling.delete_priority_class(klass)


def test_a_namespaces_pod_security_level_refuses_a_host_network_template(kube: Kube, namespace: str, pool: str,
                                                                         neighbour: str) -> None:
    kube.core.patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    job = submit(kube, namespace, pool, TORCH, **SMALL, **{"spec.workers.template.spec.hostNetwork": True})
    message = stalled(kube, namespace, job, "PodsRefused", VERDICT_S)
    assert "PodSecurity" in message and "hostNetwork" in message, message
    assert not pods_of(kube, namespace, job)


def test_a_pod_refused_only_by_the_real_create_rolls_the_attempt_back(kube: Kube, namespace: str,
                                                                       pool: str) -> None:
    """The PriorityClass exists at the dry run and is gone at the next attempt: the attempt is rolled back
    (no pod), the job says why, and it runs again once the class is back."""
    scheduling = client.SchedulingV1Api(kube.api)
    klass = f"{namespace}-silver"[:63]
    scheduling.create_priority_class({"metadata": {"name": klass}, "value": 500})
    job = submit(kube, namespace, pool, TORCH, **SMALL, **{"spec.workers.template.spec.priorityClassName": klass})
    wait_phase(kube, namespace, job, "Running")
    scheduling.delete_priority_class(klass)
    # the running attempt is not touched; its next one is refused when its pod is created
    pod = f"{job}-a1-0"
    kube.core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)
    message = stalled(kube, namespace, job, "PodsRefused", timeout=30)
    assert klass in message, message
    scheduling.create_priority_class({"metadata": {"name": klass}, "value": 500})
    try:
        wait_phase(kube, namespace, job, "Running")
    finally:
        scheduling.delete_priority_class(klass)


# ---- routine deletes --------------------------------------------------------------------------------------

def children(kube: Kube, namespace: str) -> dict[str, int]:
    selector = "app.kubernetes.io/managed-by=cardpool"
    return {"pods": len(kube.core.list_namespaced_pod(namespace, label_selector=selector).items),
            "services": len(kube.core.list_namespaced_service(namespace, label_selector=selector).items),
            "configmaps": len(kube.core.list_namespaced_config_map(namespace, label_selector=selector).items)}


def none_left(kube: Kube, namespace: str) -> bool:
    left = children(kube, namespace)
    if any(left.values()):
        raise NotYet(f"left: {left}")
    return True


def test_deleting_the_namespace_of_running_jobs_recreates_nothing(kube: Kube, quiet_operator: Any) -> None:
    namespace = f"t-ns-delete-{int(time.time() * 1000) % 10**8}"
    kube.core.create_namespace({"metadata": {"name": namespace, "labels": {"cardpool.io/e2e": "true"}}})
    wait_for(f"ServiceAccount default in {namespace}",
             lambda: kube.core.read_namespaced_service_account("default", namespace), timeout=60)
    pools = make_pool(kube, namespace)
    pool = next(pools)
    try:
        jobs = [submit(kube, namespace, pool, TORCH, **SMALL, **{"metadata.name": f"job-{i}"}) for i in range(3)]
        for job in jobs:
            wait_phase(kube, namespace, job, "Running")
        start = quiet_operator.log_size()
        kube.core.delete_namespace(namespace)

        def gone() -> bool:
            try:
                kube.core.read_namespace(namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return True
                raise
            raise NotYet(f"namespace {namespace} still there; children {children(kube, namespace)}")
        wait_for(f"namespace {namespace} to be deleted", gone, timeout=120)
        logged = quiet_operator.log_since(start)
        assert "Traceback" not in logged and "WARNING" not in logged, logged[-4000:]
    finally:
        next(pools, None)  # the pool's teardown: its pods gone, then the pool


BULK = 500


def test_a_bulk_create_and_delete_of_500_jobs_leaves_no_children_and_no_traceback(
        kube: Kube, namespace: str, pool: str, quiet_operator: Any) -> None:
    body = edit(example(TORCH), {"spec.pool": pool, **SMALL})
    custom = client.CustomObjectsApi(kube.api)

    def create(i: int) -> None:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs",
                                               edit(body, {"metadata.name": f"bulk-{i:03d}"}))
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool_of_threads:
        list(pool_of_threads.map(create, range(BULK)))
    print(f"created {BULK} jobs in {time.monotonic() - started:.1f} s")

    def some_running() -> int:
        pods = kube.core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/managed-by=cardpool")
        running = sum(1 for p in pods.items if p.status.phase == "Running")
        if running < 10:
            raise NotYet(f"{running} pods running")
        return running
    wait_for("some of the 500 jobs to run", some_running, timeout=120)

    def delete(i: int) -> None:  # as a GitOps prune does: one DELETE per job, several at once
        try:
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", f"bulk-{i:03d}")
        except ApiException as exc:
            if exc.status != 404:
                raise
    with ThreadPoolExecutor(8) as pool_of_threads:
        list(pool_of_threads.map(delete, range(BULK)))
    wait_for(f"no TrainingJob, pod, Service or ConfigMap left in {namespace}",
             lambda: none_left(kube, namespace) and not custom.list_namespaced_custom_object(
                 GROUP, VERSION, namespace, "trainingjobs")["items"], timeout=180)
