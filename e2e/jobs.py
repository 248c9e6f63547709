"""Helpers of the operator tests: a CardPool per test over the small fleet, submitting example jobs, waiting
for phases (with deadlines), reading pods and their env."""

from __future__ import annotations

from collections.abc import Iterator

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cardpool.api.keys import GROUP, LABEL_JOB, VERSION
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for
from manifests import edit, example

POOL = "pool-mixed-vendor.yaml"
TORCH = "job-pytorch-homogeneous.yaml"  # 4 x 8 cards, [H800, A100]
MINDSPORE = "job-mindspore-elastic-ascend.yaml"  # 2..6 x 8 cards, unit 2, Ascend910B
TIMEOUT = 60


def make_pool(kube: Kube, namespace: str, changes: dict[str, object] | None = None) -> Iterator[str]:
    """A CardPool named after the namespace (the example, with `changes`); removed with the namespace's jobs
    and pods, so the next test finds the cards free."""
    body = edit(example(POOL), {"metadata.name": namespace, **(changes or {})})
    client.CustomObjectsApi(kube.api).create_cluster_custom_object(GROUP, VERSION, "cardpools", body)
    yield namespace
    # leave the cards free for the next test: its jobs and their pods gone before the pool
    kube.run("delete", "trainingjobs.cardpool.io", "--all", "-n", namespace, "--wait=false")

    def no_pods() -> bool:
        left = kube.core.list_namespaced_pod(namespace).items
        if left:
            raise NotYet(f"{len(left)} pods left, e.g. {left[0].metadata.name}")
        return True

    wait_for(f"the pods of namespace {namespace} to be gone", no_pods, timeout=TIMEOUT)
    try:
        client.CustomObjectsApi(kube.api).delete_cluster_custom_object(GROUP, VERSION, "cardpools", namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise


def submit(kube: Kube, namespace: str, pool: str, manifest: str, **changes) -> str:
    body = edit(example(manifest), {"spec.pool": pool, **changes})
    client.CustomObjectsApi(kube.api).create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs",
                                                                      body)
    return body["metadata"]["name"]


def get_job(kube: Kube, namespace: str, name: str) -> dict:
    return client.CustomObjectsApi(kube.api).get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                          "trainingjobs", name)


def wait_phase(kube: Kube, namespace: str, name: str, phase: str, timeout: float = TIMEOUT) -> dict:
    def check() -> dict:
        status = get_job(kube, namespace, name).get("status") or {}
        if status.get("phase") != phase:
            ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
            raise NotYet(f"phase={status.get('phase')} reason={ready.get('reason')} {ready.get('message')}")
        return status

    return wait_for(f"TrainingJob {namespace}/{name} to be {phase}", check, timeout=timeout)


def pods_of(kube: Kube, namespace: str, job: str) -> list[client.V1Pod]:
    return kube.core.list_namespaced_pod(namespace, label_selector=f"{LABEL_JOB}={job}").items


def env_of(pod: client.V1Pod) -> dict[str, str]:
    return {e.name: e.value for e in pod.spec.containers[0].env}


def node_model(kube: Kube, node: str) -> str:
    return kube.core.read_node(node).metadata.labels["localkube.cardpool.io/group"]


