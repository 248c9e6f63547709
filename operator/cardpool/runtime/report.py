"""Reporting to the operator: rank 0 creates a Checkpoint object once a save is complete. The training
pod's ServiceAccount needs create (and get) on checkpoints, and patch on its own pod for progress
(manifests/operator/trainer-role.yaml)."""

from __future__ import annotations

from datetime import UTC, datetime

from cardpool.api.keys import API_VERSION, GROUP, LABEL_JOB, VERSION

from .checkpoints import Saved
from .contract import Contract


def checkpoint_name(contract: Contract, step: int) -> str:
    return f"{contract.job}-a{contract.attempt}-s{step}"


def api_client():
    """In a pod: its ServiceAccount; elsewhere (tests, local runs): the kubeconfig."""
    from kubernetes import client, config  # imported here: a trainer that never reports needs no client

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def report_checkpoint(contract: Contract, saved: Saved, api=None) -> str:
    """Create the Checkpoint for a complete save; repeating it is harmless. Returns its name."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = api or api_client()
    name = checkpoint_name(contract, saved.step)
    owner = ([{"apiVersion": API_VERSION, "kind": "TrainingJob", "name": contract.job, "uid": contract.job_uid}]
             if contract.job_uid else [])
    body = {"apiVersion": API_VERSION, "kind": "Checkpoint",
            "metadata": {"name": name, "namespace": contract.namespace, "labels": {LABEL_JOB: contract.job},
                         "ownerReferences": owner},
            "spec": {"job": contract.job, "attempt": contract.attempt, "step": saved.step, "uri": saved.uri,
                     "worldSize": saved.world_size, "complete": True,
                     "savedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}
    try:
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, contract.namespace,
                                                                     "checkpoints", body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    return name
