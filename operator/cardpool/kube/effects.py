"""The operator's writes, one idempotent API call each, so the controller's applier can schedule them one by
one: a create that finds the object there is done (AlreadyExists), a delete that finds it gone is done
(NotFound), and a status write names the resourceVersion it was decided on, so a decision made on a stale
view is refused (409) and decided again. Safe to repeat after a crash at any point."""

from __future__ import annotations

import logging
from datetime import datetime

from kubernetes.client.exceptions import ApiException

from cardpool.api.cardpool import CardPoolStatus
from cardpool.api.conditions import set_condition
from cardpool.api.keys import GROUP, TENANTQUEUE_PLURAL, VERSION
from cardpool.api.tenantqueue import TenantQueueStatus
from cardpool.api.trainingjob import TrainingJobStatus
from cardpool.core.observed import ObservedJob
from cardpool.core.plan import Verdict

from . import refusals
from .client import Kube

log = logging.getLogger("cardpool.effects")


def status_patch(model) -> dict:
    """A merge patch that also removes fields that became unset (null deletes in a merge patch)."""
    return model.model_dump(mode="json", by_alias=True)


def version(resource_version: str) -> int:
    """kube-apiserver's resourceVersions come from etcd revisions and grow. They are opaque to clients in
    general; comparing them is what lets the operator wait for its own writes to show in the watch."""
    try:
        return int(resource_version or 0)
    except ValueError:
        return 1 << 62


def write_job_status(kube: Kube, job: ObservedJob, status: TrainingJobStatus) -> int:
    """The job's new status, only if the job is still as observed. Returns the resourceVersion it produced.
    Raises ApiException 409 when the view was stale."""
    return version(kube.patch_job_status(job.namespace, job.name, status_patch(status), job.resource_version))


def create_pod(kube: Kube, manifest: dict) -> bool:
    """False when it exists already (a crash between create and the watch, or a lagging index)."""
    return kube.create(kube.core.create_namespaced_pod, manifest["metadata"]["namespace"], manifest)


def dry_run_pod(kube: Kube, manifest: dict) -> None:
    """Ask the API server whether it would create the pod (validation and admission; nothing is stored). A pod of
    that name that exists already passed both."""
    kube.create(kube.core.create_namespaced_pod, manifest["metadata"]["namespace"], manifest, dry_run="All")


def delete_pod(kube: Kube, namespace: str, name: str, force: bool = False) -> bool:
    """`force`: its kubelet is gone and will never confirm the end (grace period 0)."""
    if force:
        log.info("force-removing pod %s/%s, stuck terminating on a lost node", namespace, name)
        return kube.delete(kube.core.delete_namespaced_pod, name, namespace, grace_period_seconds=0)
    return kube.delete(kube.core.delete_namespaced_pod, name, namespace)


def ensure_service(kube: Kube, manifest: dict) -> None:
    meta = manifest["metadata"]
    if not kube.create(kube.core.create_namespaced_service, meta["namespace"], manifest):  # an earlier attempt's
        kube.call(kube.core.patch_namespaced_service, meta["name"], meta["namespace"], {"spec": manifest["spec"]})


def put_config_map(kube: Kube, manifest: dict) -> None:
    meta = manifest["metadata"]
    if not kube.create(kube.core.create_namespaced_config_map, meta["namespace"], manifest):
        kube.call(kube.core.replace_namespaced_config_map, meta["name"], meta["namespace"], manifest)


def judge_checkpoint(kube: Kube, namespace: str, verdict: Verdict, now: datetime) -> None:
    """The Accepted condition on a checkpoint the plan judged (after the job's status holds the verdict)."""
    conditions = set_condition([], "Accepted", verdict.accepted, verdict.reason, verdict.message, now)
    try:
        kube.call(kube.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, "checkpoints",
                  verdict.checkpoint, {"status": {"conditions": [c.wire() for c in conditions]}})
    except ApiException as exc:
        if exc.status != 404:  # deleted meanwhile: nothing left to judge
            raise


def delete_job(kube: Kube, namespace: str, name: str) -> None:
    kube.delete(kube.custom.delete_namespaced_custom_object, GROUP, VERSION, namespace, "trainingjobs", name,
                propagation_policy="Background")


def write_pool_status(kube: Kube, name: str, status: CardPoolStatus) -> int:
    """The pool's new status; returns the resourceVersion it produced."""
    return version(kube.patch_pool_status(name, status_patch(status)))


def write_queue_status(kube: Kube, name: str, status: TenantQueueStatus) -> int:
    """A TenantQueue's new status; returns the resourceVersion it produced."""
    return version(kube.patch_pool_status(name, status_patch(status), TENANTQUEUE_PLURAL))


def post_event(kube: Kube, job: ObservedJob, type_: str, reason: str, message: str, now: datetime) -> None:
    """An event on a TrainingJob."""
    post(kube, job.namespace, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob", "name": job.name,
                               "namespace": job.namespace, "uid": job.uid}, type_, reason, message, now)


def post_pool_event(kube: Kube, pool: str, type_: str, reason: str, message: str, now: datetime) -> None:
    post(kube, "default", {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CardPool", "name": pool},
         type_, reason, message, now)


def post(kube: Kube, namespace: str, involved: dict, type_: str, reason: str, message: str, now: datetime) -> None:
    """An event on `involved` (cluster-scoped objects' events go to the default namespace, as kubelet's do)."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {
        "metadata": {"generateName": f"{involved['name']}.", "namespace": namespace},
        "involvedObject": involved, "type": type_, "reason": reason, "message": message[:1024],
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        "source": {"component": "cardpool"}, "reportingComponent": "cardpool.io/operator",
    }
    try:
        kube.call(kube.core.create_namespaced_event, namespace, body)
    except ApiException as exc:  # an event is information; losing one must not fail the reconcile
        if refusals.namespace_terminating(exc) or refusals.gone(exc):  # it goes with its namespace
            log.debug("event %s for %s %s not posted: %s", reason, involved["kind"], involved["name"], exc.reason)
            return
        log.warning("could not post event %s for %s %s: %s", reason, involved["kind"], involved["name"], exc.reason)
