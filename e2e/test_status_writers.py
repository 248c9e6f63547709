"""Only the operator writes status (manifests/admission/status-writers.yaml): a second identity that RBAC
allows to write trainingjobs/status, cardpools/status and checkpoints/status is refused by admission with a
message saying who may, whatever kind of write it tries, and the running job it tried to end keeps its pods;
the operator's own ServiceAccount (and a cluster admin) pass the same write, and the running operator (here
with the admin's kubeconfig, group system:masters) still records the job's end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from cardpool.api.keys import GROUP, VERSION
from jobs import TORCH, get_job, make_pool, pods_of, submit, wait_phase
from localkube import faults
from localkube.config import REPO
from localkube.testing import Kube

POLICY = "status-writers.cardpool.io"
OPERATOR_NS, OPERATOR_SA = "cardpool-system", "cardpool-operator"  # manifests/operator/rbac.yaml
FORGED = {"phase": "Succeeded"}


@pytest.fixture
def pool(kube: Kube, quiet_operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace)


def token_for(kube: Kube, namespace: str, account: str) -> str:
    """A short-lived token of the ServiceAccount, from the TokenRequest API."""
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[],
                                                                                 expiration_seconds=600))
    return kube.core.create_namespaced_service_account_token(account, namespace, request).status.token


def api_as(kube: Kube, who: str, token: str, tmp_path: Path) -> client.ApiClient:
    """An API client for the cluster of `kube` that authenticates with `token` instead of the admin's cert."""
    kubeconfig = yaml.safe_load(kube.kubeconfig.read_text())
    kubeconfig["users"] = [{"name": "caller", "user": {"token": token}}]
    for context in kubeconfig["contexts"]:
        context["context"]["user"] = "caller"
    path = tmp_path / f"{who}.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    return config.new_client_from_config(str(path))


@pytest.fixture
def forger(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[client.ApiClient]:
    """A ServiceAccount of the test's namespace whom RBAC allows to read and write the status of every cardpool
    kind, as a careless ClusterRole would."""
    rbac = client.RbacAuthorizationV1Api(kube.api)
    name = f"{namespace}-status-writer"
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "status-writer"}})
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": [
        {"apiGroups": [GROUP], "resources": ["trainingjobs", "cardpools", "checkpoints"],
         "verbs": ["get", "list"]},
        {"apiGroups": [GROUP], "resources": ["trainingjobs/status", "cardpools/status", "checkpoints/status"],
         "verbs": ["get", "update", "patch"]}]})
    rbac.create_cluster_role_binding({"metadata": {"name": name},
                                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                  "name": name},
                                      "subjects": [{"kind": "ServiceAccount", "name": "status-writer",
                                                    "namespace": namespace}]})
    api = api_as(kube, "status-writer", token_for(kube, namespace, "status-writer"), tmp_path)
    try:
        yield api
    finally:
        api.close()
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)


@pytest.fixture
def operator_identity(kube: Kube, tmp_path: Path) -> Iterator[client.ApiClient]:
    """The operator's own ServiceAccount and RBAC, installed from manifests/operator as a user would."""
    for manifest in ("namespace.yaml", "rbac.yaml"):
        kube.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests" / "operator" / manifest))
    api = api_as(kube, "operator", token_for(kube, OPERATOR_NS, OPERATOR_SA), tmp_path)
    try:
        yield api
    finally:
        api.close()


Write = Callable[[client.CustomObjectsApi, str | None], object]


def writes(namespace: str, job: str, pool: str, checkpoint: str) -> dict[str, Write]:
    """Each way to write status, by name: every patch type (each reaches admission as an UPDATE) and a PUT."""
    def patch(kind: str, body: object, content_type: str) -> Write:
        def call(custom: client.CustomObjectsApi, dry_run: str | None) -> object:
            extra = {"field_manager": "forger", "force": True} if "apply" in content_type else {}
            if kind == "cardpools":
                return custom.patch_cluster_custom_object_status(GROUP, VERSION, kind, pool, body, dry_run=dry_run,
                                                                 _content_type=content_type, **extra)
            name = job if kind == "trainingjobs" else checkpoint
            return custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, kind, name, body,
                                                                dry_run=dry_run, _content_type=content_type,
                                                                **extra)
        return call

    def replace(custom: client.CustomObjectsApi, dry_run: str | None) -> object:
        for _ in range(5):  # a resourceVersion conflict (the operator wrote meanwhile) is checked before admission
            body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", job)
            body["status"] = {**body.get("status", {}), **FORGED}
            try:
                return custom.replace_namespaced_custom_object_status(GROUP, VERSION, namespace, "trainingjobs", job,
                                                                      body, dry_run=dry_run)
            except ApiException as exc:
                if exc.status != 409:
                    raise
        raise AssertionError(f"PUT of {namespace}/{job} status: five conflicts in a row")

    accepted = {"conditions": [{"type": "Accepted", "status": "True", "reason": "Forged", "message": "",
                                "lastTransitionTime": "2026-12-01T00:00:00Z"}]}
    return {
        "job: merge patch": patch("trainingjobs", {"status": FORGED}, "application/merge-patch+json"),
        "job: JSON patch": patch("trainingjobs", [{"op": "replace", "path": "/status/phase", "value": "Succeeded"}],
                                 "application/json-patch+json"),
        "job: server-side apply": patch("trainingjobs", {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob",
                                                         "metadata": {"name": job, "namespace": namespace},
                                                         "status": FORGED}, "application/apply-patch+yaml"),
        "job: PUT": replace,
        "pool: merge patch": patch("cardpools", {"status": {"freeCards": 0}}, "application/merge-patch+json"),
        "checkpoint: merge patch": patch("checkpoints", {"status": accepted}, "application/merge-patch+json"),
    }


def test_only_the_operator_writes_status(kube: Kube, namespace: str, pool: str, forger: client.ApiClient,
                                         operator_identity: client.ApiClient) -> None:
    name = submit(kube, namespace, pool, TORCH, **{"spec.workers.size": {"min": 1, "max": 1}})
    wait_phase(kube, namespace, name, "Running")
    checkpoint = f"{name}-a1-s5"  # incomplete, so the operator records nothing from it
    client.CustomObjectsApi(kube.api).create_namespaced_custom_object(GROUP, VERSION, namespace, "checkpoints", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Checkpoint", "metadata": {"name": checkpoint},
        "spec": {"job": name, "attempt": 1, "step": 5, "uri": f"s3://ckpt/{name}/5", "worldSize": 8}})
    pods = {p.metadata.name: p.metadata.uid for p in pods_of(kube, namespace, name)}
    assert pods
    # RBAC alone would let the forger write: admission is what refuses it
    review = client.AuthorizationV1Api(forger).create_self_subject_access_review({"spec": {"resourceAttributes": {
        "group": GROUP, "resource": "trainingjobs", "subresource": "status", "verb": "patch", "namespace": namespace,
        "name": name}}})
    assert review.status.allowed

    ways = writes(namespace, name, pool, checkpoint)
    refused = {}
    for way, write in ways.items():
        with pytest.raises(ApiException) as caught:
            write(client.CustomObjectsApi(forger), None)
        refused[way] = (caught.value.status, caught.value.body)
    for way, (status, body) in refused.items():
        assert status == 403, (way, body)
        assert f"ValidatingAdmissionPolicy '{POLICY}'" in body, (way, body)
        assert (f"only the cardpool operator (system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}) or a cluster admin "
                "(group system:masters) may write") in body, (way, body)
        assert f"system:serviceaccount:{namespace}:status-writer may not" in body, (way, body)

    # nothing was written: the job runs on with the same pods, none of them being deleted
    assert get_job(kube, namespace, name)["status"]["phase"] == "Running"
    now = {p.metadata.name: (p.metadata.uid, p.metadata.deletion_timestamp) for p in pods_of(kube, namespace, name)}
    assert now == {pod: (uid, None) for pod, uid in pods.items()}

    # the same writes pass admission as the operator's ServiceAccount and as a cluster admin (dry run: the
    # operator's real state is left alone)
    for who, caller in (("the operator", operator_identity), ("the admin", kube.api)):
        for way, write in ways.items():
            try:
                write(client.CustomObjectsApi(caller), "All")
            except ApiException as exc:
                raise AssertionError(f"{who} was refused ({way}): {exc.status} {exc.body}") from exc
    assert get_job(kube, namespace, name)["status"]["phase"] == "Running"
    assert {p.metadata.name for p in pods_of(kube, namespace, name)} == set(pods)

    # and the running operator (the e2e one authenticates with the admin's certificate, group system:masters)
    # goes on writing this job's status: its real end is recorded
    faults.complete_pod(kube.core, namespace, f"{name}-a1-0")
    wait_phase(kube, namespace, name, "Succeeded")


def test_a_namesake_of_the_operator_in_another_namespace_is_refused(kube: Kube, namespace: str, pool: str,
                                                                    operator_identity: client.ApiClient,
                                                                    tmp_path: Path) -> None:
    """The identity is the ServiceAccount's namespace and name, not its name alone: anyone may create a
    ServiceAccount called cardpool-operator in a namespace of their own, even bound to the operator's role."""
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": OPERATOR_SA}})
    binding = f"{namespace}-namesake"
    rbac = client.RbacAuthorizationV1Api(kube.api)
    rbac.create_cluster_role_binding({"metadata": {"name": binding},
                                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                  "name": OPERATOR_SA},
                                      "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SA,
                                                    "namespace": namespace}]})
    api = api_as(kube, "namesake", token_for(kube, namespace, OPERATOR_SA), tmp_path)
    try:
        with pytest.raises(ApiException) as caught:
            client.CustomObjectsApi(api).patch_cluster_custom_object_status(
                GROUP, VERSION, "cardpools", pool, {"status": {"freeCards": 0}}, dry_run="All")
        assert caught.value.status == 403 and f"ValidatingAdmissionPolicy '{POLICY}'" in caught.value.body
    finally:
        api.close()
        rbac.delete_cluster_role_binding(binding)
