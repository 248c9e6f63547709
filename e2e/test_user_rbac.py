"""Who may do what with cardpool's kinds (issue 16, point 5), asked of the real API server's authorizer.

The roles of manifests/operator/user-roles.yaml aggregate into Kubernetes' own admin, edit and view (the
cluster-role aggregation controller of kube-controller-manager fills them in); cardpool-trainer is bound to a
namespace's training ServiceAccount with the one-line command its file and the README give. Only the roles are
applied (the rest of manifests/ would start a Deployment); the module removes the ones it added, and waits
until admin, edit and view are as they were, so no other test sees them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from localkube.config import REPO
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for

ROLE_FILES = [REPO / "manifests" / "operator" / name for name in ("user-roles.yaml", "trainer-role.yaml")]
TJ, CKPT, POOLS = "trainingjobs.cardpool.io", "checkpoints.cardpool.io", "cardpools.cardpool.io"
AGGREGATION_TIMEOUT = 60


def cluster_roles(path: Path) -> list[str]:
    return [o["metadata"]["name"] for o in yaml.safe_load_all(path.read_text()) if o["kind"] == "ClusterRole"]


def aggregated(kube: Kube, role: str) -> set[tuple[str, str]]:
    """(resource, verb) pairs of cardpool.io in one of the built-in aggregated roles."""
    rules = client.RbacAuthorizationV1Api(kube.api).read_cluster_role(role).rules or []
    return {(r, v) for rule in rules if "cardpool.io" in (rule.api_groups or [])
            for r in rule.resources or [] for v in rule.verbs or []}


def wait_aggregated(kube: Kube, role: str, present: bool) -> None:
    def settled() -> bool:
        has = ("trainingjobs", "get") in aggregated(kube, role)
        if has != present:
            raise NotYet(f"{role}'s cardpool.io rules: {sorted(aggregated(kube, role))}")
        return True

    wait_for(f"ClusterRole {role} {'with' if present else 'without'} cardpool's rules (aggregation)", settled,
             timeout=AGGREGATION_TIMEOUT)


@pytest.fixture(scope="module")
def roles(kube: Kube, crds: list[str]) -> Iterator[None]:
    rbac = client.RbacAuthorizationV1Api(kube.api)
    names = [n for path in ROLE_FILES for n in cluster_roles(path)]

    def exists(name: str) -> bool:
        try:
            rbac.read_cluster_role(name)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    ours = [n for n in names if not exists(n)]  # an earlier install of manifests/ keeps its roles
    kube.run("apply", "--server-side", "--force-conflicts", *(f"-f{p}" for p in ROLE_FILES))
    for role in ("admin", "edit", "view"):
        wait_aggregated(kube, role, present=True)
    yield
    for name in ours:
        rbac.delete_cluster_role(name)
    if "cardpool-view" in ours:
        for role in ("admin", "edit", "view"):
            wait_aggregated(kube, role, present=False)


def can(kube: Kube, who: str, verb: str, resource: str, namespace: str | None, subresource: str = "") -> bool:
    """`kubectl auth can-i` as `who`: exit 0 yes, 1 no; anything else is an error."""
    args = ["auth", "can-i", verb, resource, "--as", who, *(["-n", namespace] if namespace else [])]
    result = kube.run(*args, *([f"--subresource={subresource}"] if subresource else []), check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


def bind(kube: Kube, namespace: str, name: str, cluster_role: str, *subject: str) -> None:
    kube.run("create", "rolebinding", name, "--clusterrole", cluster_role, *subject, "-n", namespace)


def test_edit_manages_trainingjobs_and_view_only_reads_them(kube: Kube, roles: None, namespace: str) -> None:
    alice, bob, carol = (f"{who}-{uuid.uuid4().hex[:6]}" for who in ("alice", "bob", "carol"))
    bind(kube, namespace, "alice-edit", "edit", "--user", alice)
    bind(kube, namespace, "bob-view", "view", "--user", bob)
    bind(kube, namespace, "carol-admin", "admin", "--user", carol)

    for verb in ("create", "update", "patch", "delete", "deletecollection", "get", "list", "watch"):
        assert can(kube, alice, verb, TJ, namespace), f"edit cannot {verb} trainingjobs"
        assert can(kube, carol, verb, TJ, namespace), f"admin cannot {verb} trainingjobs"
    for verb in ("get", "update", "patch"):
        assert can(kube, alice, verb, TJ, namespace, subresource="scale"), f"edit cannot {verb} trainingjobs/scale"
    for verb in ("get", "list", "watch"):
        assert can(kube, alice, verb, CKPT, namespace) and can(kube, bob, verb, CKPT, namespace)
        assert can(kube, bob, verb, TJ, namespace), f"view cannot {verb} trainingjobs"
    # status is the operator's; checkpoints are rank 0's; view changes nothing
    assert not can(kube, alice, "update", TJ, namespace, subresource="status")
    assert not can(kube, alice, "create", CKPT, namespace)
    for verb in ("create", "update", "patch", "delete"):
        assert not can(kube, bob, verb, TJ, namespace), f"view can {verb} trainingjobs"
    assert not can(kube, bob, "patch", TJ, namespace, subresource="scale")
    # a RoleBinding reaches its namespace only: not another one, not the cluster-scoped pools
    assert not can(kube, alice, "create", TJ, "default")
    assert not can(kube, alice, "list", POOLS, None)

    # and the API server takes alice's job (and refuses bob's) through kubectl, as they would run it
    job = yaml.safe_load((REPO / "manifests" / "examples" / "job-pytorch-homogeneous.yaml").read_text())
    job["metadata"] = {"name": "by-alice", "namespace": namespace}
    kube.run("create", "--as", alice, "-f", "-", stdin=yaml.safe_dump(job))
    refused = kube.run("create", "--as", bob, "-f", "-", check=False,
                       stdin=yaml.safe_dump({**job, "metadata": {"name": "by-bob", "namespace": namespace}}))
    assert refused.returncode != 0 and "forbidden" in refused.stderr, refused.stderr
    assert kube.run("get", TJ, "--as", bob, "-n", namespace, "-o", "name").stdout.split() == [
        "trainingjob.cardpool.io/by-alice"]


def test_the_pool_reader_role_lets_everyone_read_pools(kube: Kube, roles: None) -> None:
    dave = f"dave-{uuid.uuid4().hex[:6]}"
    binding = f"cardpool-pool-readers-{dave}"  # a user of this test's own, so no other test is affected
    assert not can(kube, dave, "list", POOLS, None)
    kube.run("create", "clusterrolebinding", binding, "--clusterrole", "cardpool-pool-reader", "--user", dave)
    try:
        assert all(can(kube, dave, verb, POOLS, None) for verb in ("get", "list", "watch"))
        assert not can(kube, dave, "update", POOLS, None) and not can(kube, dave, "list", TJ, "default")
    finally:
        kube.run("delete", "clusterrolebinding", binding)


def listed(kube: Kube, who: str, namespace: str) -> set[tuple[str, ...]]:
    """The rows of `kubectl auth can-i --list` (resources, non-resource URLs, resource names, verbs)."""
    lines = kube.run("auth", "can-i", "--list", "--as", who, "-n", namespace).stdout.splitlines()
    return {tuple(line.split()) for line in lines[1:] if line.strip()}


def test_the_trainer_may_report_checkpoints_and_progress_and_nothing_more(
        kube: Kube, roles: None, namespace: str) -> None:
    kube.run("create", "serviceaccount", "trainer", "-n", namespace)
    kube.run("create", "serviceaccount", "bystander", "-n", namespace)
    # the one-line binding of manifests/operator/trainer-role.yaml and the README
    kube.run("create", "rolebinding", "cardpool-trainer", "--clusterrole", "cardpool-trainer",
             "--serviceaccount", f"{namespace}:trainer", "-n", namespace)
    trainer = f"system:serviceaccount:{namespace}:trainer"

    # exactly what cardpool.runtime calls: create (and get, for a repeated report) a Checkpoint; patch its own
    # pod's progress annotation (admission/trainer-progress.yaml narrows the patch to that)
    extra = listed(kube, trainer, namespace) - listed(kube, f"system:serviceaccount:{namespace}:bystander", namespace)
    assert extra == {(CKPT, "[]", "[]", "[get", "create]"), ("pods", "[]", "[]", "[patch]")}, extra
    assert can(kube, trainer, "create", CKPT, namespace) and can(kube, trainer, "patch", "pods", namespace)
    for verb, resource, sub in [("create", "pods", ""), ("get", "secrets", ""), ("list", "pods", ""),
                                ("update", TJ, "status"), ("patch", TJ, "status"), ("create", TJ, ""),
                                ("delete", CKPT, ""), ("update", CKPT, "status"), ("create", "rolebindings", "")]:
        assert not can(kube, trainer, verb, resource, namespace, sub), f"the trainer can {verb} {resource} {sub}"
    assert not can(kube, trainer, "create", CKPT, "default"), "the binding reaches beyond its namespace"

    checkpoint = {"apiVersion": "cardpool.io/v1alpha1", "kind": "Checkpoint",
                  "metadata": {"name": "train-a0-s100", "namespace": namespace},
                  "spec": {"job": "train", "attempt": 0, "step": 100, "uri": "s3://ckpt/train/100", "worldSize": 8,
                           "complete": True}}
    kube.run("create", "--as", trainer, "-f", "-", stdin=yaml.safe_dump(checkpoint))
    assert kube.run("get", CKPT, "train-a0-s100", "--as", trainer, "-n", namespace, "-o", "name").stdout.strip()
