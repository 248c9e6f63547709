"""`make release`'s assets (release/build.py) on the local cluster (issue 16, point 4): dist/manifests.yaml is
the kustomize install in one file, and `kubectl apply --server-side -f` takes it as a user runs it; applying it
again changes nothing. The objects it added are removed afterwards (the session's CRDs and admission policies,
which the crds fixture installed, stay), so no other test sees them.

prometheus.yaml is only parsed here: its kinds need the Prometheus Operator's CRDs, which this cluster has not.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import yaml

from localkube.config import REPO, bindir
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for

_spec = importlib.util.spec_from_file_location("release_build", REPO / "release" / "build.py")
release = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(release)
Key = tuple[str, str, str]


def key(obj: dict) -> Key:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def exists(kube: Kube, k: Key) -> bool:
    kind, namespace, name = k
    args = ["get", kind, name, "-o", "name", "--ignore-not-found"] + (["-n", namespace] if namespace else [])
    return bool(kube.run(*args).stdout.strip())


def test_make_releases_manifests_apply_server_side(kube: Kube, crds: list[str], tmp_path: Path) -> None:
    kubectl = str(bindir() / "kubectl")
    image = "registry.example:5000/ml/cardpool-operator:1.2.3"
    written = release.build(kubectl, tmp_path, image)
    assert sorted(p.name for p in written) == ["cardpool-dashboard.json", "manifests.yaml", "prometheus.yaml"]
    manifest = tmp_path / "manifests.yaml"
    objects = [o for o in yaml.safe_load_all(manifest.read_text()) if o]
    built = subprocess.run([kubectl, "kustomize", str(REPO / "manifests")], capture_output=True, text=True,
                           check=True).stdout
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]] == [image]
    # otherwise the kustomize install as it is
    kustomized = [o for o in yaml.safe_load_all(built) if o]
    published = next(o for o in kustomized if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    tag = published["containers"][0]["image"].rpartition(":")[2]
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        c["image"] = f"{release.PUBLISHED}:{tag}"
    assert objects == kustomized
    assert sorted({o["kind"] for o in objects}) == [
        "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "Namespace",
        "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount", "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding"]
    assert [o["kind"] for o in yaml.safe_load_all((tmp_path / "prometheus.yaml").read_text())] == [
        "ServiceMonitor", "PrometheusRule"]
    assert json.loads((tmp_path / "cardpool-dashboard.json").read_text())["panels"]

    before = {key(o) for o in objects if exists(kube, key(o))}
    added = [key(o) for o in objects if key(o) not in before and o["kind"] != "CustomResourceDefinition"]
    try:
        kube.run("apply", "--server-side", "--force-conflicts", "-f", str(manifest))
        missing = [key(o) for o in objects if not exists(kube, key(o))]
        assert not missing, missing
        kube.run("wait", "--for", "condition=Established", "--timeout=60s",
                 *(f"crd/{o['metadata']['name']}" for o in objects if o["kind"] == "CustomResourceDefinition"))
        diff = kube.run("diff", "--server-side", "--force-conflicts", "-f", str(manifest), check=False)
        assert diff.returncode == 0, diff.stdout  # 1 would mean the second apply changes something
    finally:
        # namespaced objects first, then the cluster's; a namespace of our own last, awaited until gone
        for kind, namespace, name in sorted(added, key=lambda k: (k[0] == "Namespace", not k[1])):
            kube.run("delete", kind, name, "--ignore-not-found", "--wait=false",
                     *(["-n", namespace] if namespace else []))

        def gone() -> bool:
            left = [k for k in added if exists(kube, k)]
            if left:
                raise NotYet(f"left: {left}")
            return True

        wait_for("the objects manifests.yaml added to be deleted", gone, timeout=120)
