"""Carry out a pool pass's plan, idempotently: status first (the job's memory), then deletions, then the
children of a new attempt, then events. Safe to repeat after a crash at any point."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime

from kubernetes.client.exceptions import ApiException

from cardpool.api.cardpool import CardPoolSpec, CardPoolStatus
from cardpool.api.conditions import set_condition
from cardpool.api.keys import GROUP, VERSION
from cardpool.core.lifecycle import JobPlan
from cardpool.core.observed import ObservedJob

from . import builders
from .client import Kube

log = logging.getLogger("cardpool.effects")
PARALLEL_CREATES = 16


def status_patch(model) -> dict:
    """A merge patch that also removes fields that became unset (null deletes in a merge patch)."""
    return model.model_dump(mode="json", by_alias=True)


def write_status(kube: Kube, job: ObservedJob, plan: JobPlan) -> str | None:
    """The job's new status, only if the job is still as observed. Returns the new resourceVersion; None
    when nothing changed. Raises ApiException 409 when the view was stale (decide again next pass)."""
    if not plan.status_changed:
        return None
    return kube.patch_job_status(job.namespace, job.name, status_patch(plan.status), job.resource_version)


def apply_children(kube: Kube, job: ObservedJob, plan: JobPlan, pool_name: str, pool: CardPoolSpec,
                   now: datetime, pool_executor: ThreadPoolExecutor) -> None:
    """After the status write: deletions, then the children of a new attempt, then events."""
    for name in plan.delete:
        kube.delete(kube.core.delete_namespaced_pod, name, job.namespace)
    for name in plan.force_delete:  # its kubelet is gone and will never confirm the end
        log.info("force-removing pod %s/%s, stuck terminating on a lost node", job.namespace, name)
        kube.delete(kube.core.delete_namespaced_pod, name, job.namespace, grace_period_seconds=0)
    if plan.create:
        log.info("placing attempt %s of %s: %d pods", plan.status.attempt, job.key, len(plan.create))
        # the children are built from the status just written: the recorded placement of this attempt
        current = replace(job, status=plan.status)
        svc = builders.service(current, pool_name)
        if not kube.create(kube.core.create_namespaced_service, job.namespace, svc):  # an earlier attempt's
            kube.call(kube.core.patch_namespaced_service, job.name, job.namespace, {"spec": svc["spec"]})
        _put_config_map(kube, builders.config_map(current, pool_name, pool))
        pods = [builders.worker_pod(current, pool_name, pool, slot) for slot in plan.create]
        list(pool_executor.map(lambda p: kube.create(kube.core.create_namespaced_pod, job.namespace, p), pods))
    for event in plan.events:
        post_event(kube, job, event.type, event.reason, event.message, now)
    if plan.delete_job:
        kube.delete(kube.custom.delete_namespaced_custom_object, GROUP, VERSION, job.namespace, "trainingjobs",
                    job.name, propagation_policy="Background")


def judge_checkpoints(kube: Kube, job: ObservedJob, plan: JobPlan, now: datetime) -> None:
    """The Accepted condition on each checkpoint the plan judged (after the job's status holds the verdict)."""
    for verdict in plan.verdicts:
        conditions = set_condition([], "Accepted", verdict.accepted, verdict.reason, verdict.message, now)
        kube.call(kube.custom.patch_namespaced_custom_object_status, GROUP, VERSION, job.namespace, "checkpoints",
                  verdict.checkpoint, {"status": {"conditions": [c.wire() for c in conditions]}})


def _put_config_map(kube: Kube, manifest: dict) -> None:
    meta = manifest["metadata"]
    if not kube.create(kube.core.create_namespaced_config_map, meta["namespace"], manifest):
        kube.call(kube.core.replace_namespaced_config_map, meta["name"], meta["namespace"], manifest)


def apply_pool_status(kube: Kube, name: str, status: CardPoolStatus, previous: CardPoolStatus | None) -> str | None:
    """The pool's new status; returns the new resourceVersion, None when nothing changed."""
    if status != previous:
        return kube.patch_pool_status(name, status_patch(status))
    return None


def post_event(kube: Kube, job: ObservedJob, type_: str, reason: str, message: str, now: datetime) -> None:
    """An event on a TrainingJob."""
    post(kube, job.namespace, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob", "name": job.name,
                               "namespace": job.namespace, "uid": job.uid}, type_, reason, message, now)


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
        log.warning("could not post event %s for %s %s: %s", reason, involved["kind"], involved["name"], exc.reason)
