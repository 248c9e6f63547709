"""Reporting to the operator: rank 0 creates a Checkpoint object once a save is complete, owned by its job (the
job's UID in an ownerReference) and naming its attempt, after reporting the saved step as progress: the
operator takes a Checkpoint only from this job, from its current attempt and up to the step that attempt
reported (cardpool.core.checkpoints). The training pod's ServiceAccount needs create (and get) on
checkpoints, and patch on its own pod for progress (manifests/operator/trainer-role.yaml)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from cardpool.api.keys import API_VERSION, GROUP, LABEL_JOB, VERSION

from .checkpoints import Saved
from .contract import Contract
from .kubeapi import api_client
from .progress import ProgressReporter, pod_writer

__all__ = ["api_client", "checkpoint_name", "report_checkpoint"]
log = logging.getLogger("cardpool.runtime")


def checkpoint_name(contract: Contract, step: int) -> str:
    return f"{contract.job}-a{contract.attempt}-s{step}"


def report_checkpoint(contract: Contract, saved: Saved, api=None, progress: ProgressReporter | None = None,
                      save_seconds: float | None = None) -> str:
    """Report the saved step as progress (through `progress`, the trainer's reporter, so the report keeps its
    total steps; else a one-off one, best effort like every progress report), then create the Checkpoint for
    the complete save; repeating it is harmless. Returns its name. `save_seconds`: how long the save stopped
    training (an asynchronous save: its blocking part only); by default how long `saved` took. The operator
    advises the checkpoint interval from it (CARDPOOL_CHECKPOINT_INTERVAL_SECONDS)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = api or api_client()
    (progress or ProgressReporter(contract, write=pod_writer(api))).saved(saved.step)
    if not contract.job_uid:
        log.warning("CARDPOOL_JOB_UID is not set: the operator refuses (NotOwned) a Checkpoint its job does not own")
    name = checkpoint_name(contract, saved.step)
    owner = ([{"apiVersion": API_VERSION, "kind": "TrainingJob", "name": contract.job, "uid": contract.job_uid}]
             if contract.job_uid else [])
    body = {"apiVersion": API_VERSION, "kind": "Checkpoint",
            "metadata": {"name": name, "namespace": contract.namespace, "labels": {LABEL_JOB: contract.job},
                         "ownerReferences": owner},
            "spec": {"job": contract.job, "attempt": contract.attempt, "step": saved.step, "uri": saved.uri,
                     "worldSize": saved.world_size, "complete": True,
                     "savedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}
    blocked = save_seconds if save_seconds is not None else saved.seconds
    if blocked is not None:
        body["spec"]["saveSeconds"] = round(max(blocked, 0.0), 3)
    try:
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, contract.namespace,
                                                                     "checkpoints", body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    return name
