"""Helpers of the operator tests: a CardPool per test over the small fleet, submitting example jobs, waiting
for phases and attempts (with deadlines), reading pods and their env, reporting progress and checkpoints as
rank 0 does (through cardpool.runtime), reading a Checkpoint's verdict, and reading a node's drain."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cardpool.api.keys import ANNOTATION_DRAIN, GROUP, LABEL_JOB, TAINT_DRAIN, VERSION
from cardpool.runtime import Contract, ProgressReporter, Saved, report_checkpoint
from cardpool.runtime.progress import pod_writer
from localkube import faults
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for
from manifests import edit, example

POOL = "pool-mixed-vendor.yaml"
TORCH = "job-pytorch-homogeneous.yaml"  # 4 x 8 cards, [H800, A100]
MINDSPORE = "job-mindspore-elastic-ascend.yaml"  # 2..6 x 8 cards, unit 2, Ascend910B
TIMEOUT = 60
# a pool that returns healed nodes quickly and force-removes pods of lost nodes after 10 s
PROBATION_S = 3
HEALTH = {"spec.health": {"faultConditions": ["KernelDeadlock", "GPUUnhealthy"], "probationSeconds": PROBATION_S,
                          "maxDrainedPercent": 34, "stuckTerminatingSeconds": 10}}


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


def returned(kube: Kube, node: str) -> bool:
    n = kube.core.read_node(node)
    if ANNOTATION_DRAIN in (n.metadata.annotations or {}) or n.spec.unschedulable:
        raise NotYet(f"drain record {(n.metadata.annotations or {}).get(ANNOTATION_DRAIN)}, "
                     f"unschedulable={n.spec.unschedulable}")
    if any(t.key == TAINT_DRAIN for t in n.spec.taints or []):
        raise NotYet("still tainted")
    return True


def drained(kube: Kube, node: str) -> dict:
    n = kube.core.read_node(node)
    taints = {t.key: (t.value, t.effect) for t in n.spec.taints or []}
    if TAINT_DRAIN not in taints or not n.spec.unschedulable:
        raise NotYet(f"taints {taints}, unschedulable={n.spec.unschedulable}")
    return json.loads(n.metadata.annotations[ANNOTATION_DRAIN]) | {"taint": taints[TAINT_DRAIN]}


def rank_nodes(kube: Kube, namespace: str, job: str, attempt: int) -> dict[int, str]:
    return {int(p.metadata.labels["cardpool.io/rank"]): p.spec.node_name
            for p in pods_of(kube, namespace, job) if p.metadata.labels["cardpool.io/attempt"] == str(attempt)}


def wait_attempt(kube: Kube, namespace: str, job: str, attempt: int, phase: str = "Running",
                 timeout: float = TIMEOUT) -> dict:
    def check() -> dict:
        status = get_job(kube, namespace, job).get("status") or {}
        if status.get("attempt") != attempt or status.get("phase") != phase:
            ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
            raise NotYet(f"attempt {status.get('attempt')} {status.get('phase')}: {ready.get('reason')} "
                         f"{ready.get('message')}")
        return status

    return wait_for(f"TrainingJob {namespace}/{job} attempt {attempt} to be {phase}", check, timeout=timeout)


def rank0(kube: Kube, namespace: str, job: str, attempt: int, world_size: int = 32) -> Contract:
    """The env contract rank 0 of `attempt` reads in its pod (CARDPOOL_POD names that pod)."""
    body = get_job(kube, namespace, job)
    return Contract.from_env({"CARDPOOL_JOB": job, "CARDPOOL_NAMESPACE": namespace,
                              "CARDPOOL_ATTEMPT": str(attempt), "CARDPOOL_RANK": "0", "CARDPOOL_WORKERS": "1",
                              "CARDPOOL_CARDS_PER_WORKER": "8", "CARDPOOL_WORLD_SIZE": str(world_size),
                              "CARDPOOL_JOB_UID": body["metadata"]["uid"], "CARDPOOL_POD": f"{job}-a{attempt}-0"})


def report_progress(kube: Kube, namespace: str, job: str, attempt: int, step: int) -> None:
    """rank 0 of `attempt` reports `step` (ProgressReporter's annotation on its pod), and the operator took it."""
    assert ProgressReporter(rank0(kube, namespace, job, attempt), 0, pod_writer(kube.api)).report(step)

    def taken() -> bool:
        progress = (get_job(kube, namespace, job).get("status") or {}).get("progress") or {}
        if (progress.get("attempt"), progress.get("step")) != (attempt, step):
            raise NotYet(f"progress {progress}")
        return True

    wait_for(f"progress step {step} of {job} to be taken", taken, timeout=TIMEOUT)


def checkpoint(kube: Kube, namespace: str, job: str, attempt: int, step: int, world_size: int) -> None:
    """Report a checkpoint as rank 0 would (cardpool.runtime reports the saved step as progress on its pod,
    then creates the Checkpoint, owned by the job), and wait until the operator has recorded it. On KWOK a
    stopped attempt's pods are gone at once, so a graceful save reported afterwards has no pod to report its
    progress on (a real pod exists until its trainer has saved): the operator takes such a save unbounded."""
    contract = rank0(kube, namespace, job, attempt, world_size)
    report_checkpoint(contract, Saved(step, f"s3://ckpt/{job}/{step}", world_size, None), kube.api)

    def recorded() -> bool:
        last = (get_job(kube, namespace, job).get("status") or {}).get("lastCheckpoint") or {}
        if last.get("step") != step:
            raise NotYet(f"lastCheckpoint {last}")
        return True

    wait_for(f"checkpoint step {step} of {job} to be recorded", recorded, timeout=TIMEOUT)


def verdict(kube: Kube, namespace: str, name: str, timeout: float = TIMEOUT) -> tuple[str, str, str]:
    """The Checkpoint's Accepted condition (status, reason, message), once the operator has judged it."""
    def judged() -> tuple[str, str, str]:
        obj = client.CustomObjectsApi(kube.api).get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                             "checkpoints", name)
        accepted = next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Accepted"),
                        None)
        if accepted is None:
            raise NotYet("not judged yet")
        return accepted["status"], accepted["reason"], accepted.get("message", "")

    return wait_for(f"Checkpoint {namespace}/{name} to be judged", judged, timeout=timeout)


def stalled(kube: Kube, namespace: str, name: str, reason: str, timeout: float) -> str:
    """Wait until the job is Stalled for `reason`; its message."""
    def check() -> str:
        conditions = {c["type"]: c for c in (get_job(kube, namespace, name).get("status") or {}).get("conditions", [])}
        found = conditions.get("Stalled", {})
        if (found.get("status"), found.get("reason")) != ("True", reason):
            ready = conditions.get("Ready", {})
            raise NotYet(f"Stalled={found.get('status')}/{found.get('reason')}; Ready: {ready.get('reason')} "
                         f"{ready.get('message')}")
        return found["message"]
    return wait_for(f"TrainingJob {namespace}/{name} to be Stalled with {reason}", check, timeout=timeout)


def run_a_job_to_its_ttl_unrefused(kube: Kube, namespace: str, pool: str, log: Callable[[], str]) -> None:
    """A job runs, succeeds and is deleted by its TTL, and the operator whose `log` this is was refused nothing
    on the way (an operator running with only the RBAC an install gives it)."""
    name = submit(kube, namespace, pool, TORCH, **{"spec.ttlSecondsAfterFinished": 0})
    wait_phase(kube, namespace, name, "Running")
    faults.complete_pod(kube.core, namespace, f"{name}-a1-0")
    wait_for(f"{name} to finish and be deleted by its TTL", lambda: not [
        j for j in client.CustomObjectsApi(kube.api).list_namespaced_custom_object(
            GROUP, VERSION, namespace, "trainingjobs")["items"] if j["metadata"]["name"] == name], timeout=TIMEOUT)
    text = log()
    assert "forbidden" not in text.lower() and "(403)" not in text, text
