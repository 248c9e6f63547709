"""The Helm chart (charts/cardpool) with a real Helm, built from e2e/helm's pinned module: it lints, its
defaults render the objects of the kustomize install, its values land where they should, and `helm install`
gives an operator that works with only the chart's RBAC.

The Deployment's pods cannot run here (KWOK only plays them): as in
test_operator.py::test_installed_with_its_manifests_the_operator_works_with_only_its_rbac, this checkout's
operator runs as a process with the chart's ServiceAccount token, settings and namespace.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cardpool import __version__
from jobs import make_pool, run_a_job_to_its_ttl_unrefused
from localkube.config import REPO, bindir
from localkube.processes import operator_command
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for

CHART = REPO / "charts" / "cardpool"
RELEASE = "cardpool"
# what the chart adds to every object (and only to what it renders): Helm's conventional release labels
RELEASE_LABELS = {"helm.sh/chart": f"cardpool-{__version__}", "app.kubernetes.io/instance": RELEASE,
                  "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/version": __version__}
KEEP = {"helm.sh/resource-policy": "keep"}
CRDS = ["cardpools.cardpool.io", "checkpoints.cardpool.io", "tenantqueues.cardpool.io", "trainingjobs.cardpool.io"]
# By design only in the kustomize install: a chart does not own its release namespace unless asked
# (namespace.create; `helm install --create-namespace` makes it otherwise). The ServiceMonitor is only in the
# chart, and off by default: the kustomize install cannot assume the Prometheus Operator's CRDs.
ONLY_KUSTOMIZE = {("Namespace", "", "cardpool-system")}

Key = tuple[str, str, str]


class Helm:
    """The built helm, with its own config, cache and data folders (never the user's)."""

    def __init__(self, binary: Path, home: Path):
        self.binary = binary
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(home), **{
            f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}}

    def run(self, *args: str, kubeconfig: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        env = {**self.env, **({"KUBECONFIG": str(kubeconfig)} if kubeconfig else {})}
        result = subprocess.run([str(self.binary), *args], capture_output=True, text=True, env=env, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def template(self, *args: str, namespace: str = "cardpool-system") -> dict[Key, dict]:
        return by_key(self.run("template", RELEASE, str(CHART), "--namespace", namespace, *args).stdout)


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(bindir() / "helm", tmp_path_factory.mktemp("helm-home"))


def by_key(text: str) -> dict[Key, dict]:
    objects = [o for o in yaml.safe_load_all(text) if o]
    keyed = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects}
    assert len(keyed) == len(objects), "two objects with the same kind, namespace and name"
    return keyed


def kustomize() -> dict[Key, dict]:
    out = subprocess.run([str(bindir() / "kubectl"), "kustomize", str(REPO / "manifests")], capture_output=True,
                         text=True, check=True, timeout=120)
    return by_key(out.stdout)


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two parsed objects differ, as paths, so a failure says which fields drifted."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in (differences(a.get(k), b.get(k), f"{path}.{k}") if k in a and k in b
                          else [f"{path}.{k}: only in {'helm' if k in a else 'kustomize'}"])]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: helm {json.dumps(a)[:200]} != kustomize {json.dumps(b)[:200]}"]


def without_release_metadata(obj: dict) -> dict:
    """`obj` without the release labels (checked present first) and, on a CRD, the keep policy."""
    meta = obj["metadata"]
    labels = meta.get("labels") or {}
    assert {k: labels.get(k) for k in RELEASE_LABELS} == RELEASE_LABELS, f"{obj['kind']} {meta['name']}: {labels}"
    meta = {k: v for k, v in meta.items() if k != "labels"}
    if rest := {k: v for k, v in labels.items() if k not in RELEASE_LABELS}:
        meta["labels"] = rest
    if obj["kind"] == "CustomResourceDefinition":
        assert meta.pop("annotations") == KEEP, f"CRD {meta['name']} is not kept on uninstall"
    return {**obj, "metadata": meta}


def deployment(objects: dict[Key, dict]) -> dict:
    return next(o for (kind, _, _), o in objects.items() if kind == "Deployment")


def container(objects: dict[Key, dict]) -> dict:
    return deployment(objects)["spec"]["template"]["spec"]["containers"][0]


def env(objects: dict[Key, dict]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(objects)["env"]}


def test_helm_lint_passes(helm: Helm) -> None:
    for extra in ([], ["--set", "metrics.serviceMonitor.enabled=true,namespace.create=true,crds.keep=false"]):
        out = helm.run("lint", "--strict", str(CHART), *extra)
        assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout, out.stdout


def test_the_charts_defaults_render_the_objects_of_the_kustomize_install(helm: Helm) -> None:
    """Every object and every field of `kubectl kustomize manifests/`, from `helm template` with default
    values: the CRDs, admission policies and RBAC from the chart's copies (crdgen keeps them equal), the
    Deployment, PodDisruptionBudget and metrics Service from templates. Helm adds only its release labels and
    keeps its CRDs on uninstall; the one object only the kustomize install has is the namespace."""
    ours, theirs = helm.template(), kustomize()
    assert set(theirs) - set(ours) == ONLY_KUSTOMIZE and set(ours) <= set(theirs), (
        f"only helm: {sorted(set(ours) - set(theirs))}; only kustomize: {sorted(set(theirs) - set(ours))}")
    kinds = {kind for kind, _, _ in ours}
    assert {"CustomResourceDefinition", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
            "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount", "Deployment",
            "PodDisruptionBudget", "Service"} == kinds
    drift = {f"{k[0]} {k[2]}": d for k in ours if (d := differences(without_release_metadata(ours[k]), theirs[k]))}
    assert not drift, json.dumps(drift, indent=1)
    # with namespace.create the chart makes the namespace as the kustomize install does (restricted pods)
    made = helm.template("--set", "namespace.create=true")
    namespace = ("Namespace", "", "cardpool-system")
    assert not differences(without_release_metadata(made[namespace]), theirs[namespace])


def test_the_chart_follows_its_values(helm: Helm) -> None:
    values = {"replicas": "3", "image.repository": "registry.example/cardpool", "image.tag": "9.9.9",
              "image.pullPolicy": "Always", "resources.limits.memory": "2Gi", "kube.qps": "150",
              "kube.burst": "250", "workers": "8", "resyncSeconds": "30", "minPassIntervalSeconds": "0.5",
              "logLevel": "debug", "logFormat": "json", "healthPort": "8081", "metrics.port": "9999",
              "metrics.serviceMonitor.enabled": "true", "metrics.serviceMonitor.labels.release": "prom",
              "podDisruptionBudget.maxUnavailable": "2", "priorityClassName": "system-cluster-critical",
              "nodeSelector.pool": "system", "crds.keep": "false"}
    objects = helm.template("--set", ",".join(f"{k}={v}" for k, v in values.items()), namespace="ml-ops")
    spec = deployment(objects)["spec"]
    pod, main = spec["template"]["spec"], container(objects)
    assert spec["replicas"] == 3 and pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == {"pool": "system"} and pod["affinity"]["podAntiAffinity"]
    assert main["image"] == "registry.example/cardpool:9.9.9" and main["imagePullPolicy"] == "Always"
    assert main["resources"] == {"requests": {"cpu": "500m", "memory": "384Mi"},
                                 "limits": {"cpu": "2", "memory": "2Gi"}}
    assert {k: v for k, v in env(objects).items() if v is not None} == {
        "CARDPOOL_KUBE_QPS": "150", "CARDPOOL_KUBE_BURST": "250", "CARDPOOL_WORKERS": "8",
        "CARDPOOL_METRICS_PORT": "9999", "CARDPOOL_RESYNC_SECONDS": "30", "CARDPOOL_MIN_PASS_INTERVAL": "0.5"}
    assert main["args"] == ["kopf", "run", "--standalone", "--all-namespaces", "--liveness=http://0.0.0.0:8081/healthz",
                            "--debug", "--log-format=json", "-m", "cardpool.handlers"]
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {"health": 8081, "metrics": 9999}
    assert spec["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9999"
    service = objects[("Service", "ml-ops", "cardpool-operator-metrics")]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9999, "targetPort": "metrics"}]
    monitor = objects[("ServiceMonitor", "ml-ops", "cardpool-operator")]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert objects[("PodDisruptionBudget", "ml-ops", "cardpool-operator")]["spec"]["maxUnavailable"] == 2
    # everything namespaced moves to the release namespace, and the operator's identity with it
    assert {ns for _, ns, _ in objects} == {"", "ml-ops"}
    subjects = [s for o in objects.values() for s in o.get("subjects", [])]
    assert subjects and all(s["namespace"] == "ml-ops" for s in subjects)
    writers = objects[("ValidatingAdmissionPolicy", "", "status-writers.cardpool.io")]["spec"]["variables"]
    assert writers == [{"name": "operator", "expression": "'system:serviceaccount:ml-ops:cardpool-operator'"}]
    crds = [o for (kind, _, _), o in objects.items() if kind == "CustomResourceDefinition"]
    assert len(crds) == len(CRDS) and not any(o["metadata"].get("annotations") for o in crds)
    # off switches
    off = helm.template("--set", "crds.install=false,podDisruptionBudget.enabled=false,metrics.service.enabled=false")
    assert not {kind for kind, _, _ in off} & {"CustomResourceDefinition", "PodDisruptionBudget", "Service"}
    assert helm.template("--set", "image.digest=sha256:" + "a" * 64)[("Deployment", "cardpool-system",
                         "cardpool-operator")]["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "ghcr.io/cardpool/operator@sha256:" + "a" * 64)


@pytest.mark.parametrize("setting, says", [
    ("logLevel=trace", "logLevel"), ("kube.burst=0", "burst"), ("replicas=-1", "replicas"),
    ("minPassIntervalSeconds=fast", "minPassIntervalSeconds"), ("image.tags=1.0", "'tags' not allowed"),
    ("replica=3", "'replica' not allowed"),
    ("metrics.serviceMonitor.enabled=true,metrics.service.enabled=false", "needs metrics.service.enabled")])
def test_the_chart_refuses_values_the_operator_would_refuse_and_typos(helm: Helm, setting: str, says: str) -> None:
    out = helm.run("template", RELEASE, str(CHART), "--set", setting, check=False)
    assert out.returncode != 0 and says in out.stderr, out.stderr


@pytest.fixture
def pool(kube: Kube, operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace)


def manifest_objects(helm: Helm, kube: Kube, namespace: str) -> dict[Key, dict]:
    return by_key(helm.run("get", "manifest", RELEASE, "-n", namespace, kubeconfig=kube.kubeconfig).stdout)


def exists(kube: Kube, key: Key) -> bool:
    kind, namespace, name = key
    args = ["get", kind, name, "-o", "name", "--ignore-not-found"] + (["-n", namespace] if namespace else [])
    return bool(kube.run(*args).stdout.strip())


def test_helm_install_gives_an_operator_that_works_with_only_the_charts_rbac(
        kube: Kube, namespace: str, pool: str, operator: Any, helm: Helm, tmp_path: Path) -> None:
    release_ns = f"cardpool-helm-{uuid.uuid4().hex[:5]}"
    settings = "replicas=1,kube.qps=100,kube.burst=200,workers=8"
    installed = False
    operator.stop("operator")
    try:
        # --take-ownership: the session installed the same CRDs and admission policies (the crds fixture), and
        # other tests cluster-wide RBAC of the same names; a cluster holds one cardpool
        helm.run("install", RELEASE, str(CHART), "-n", release_ns, "--create-namespace", "--take-ownership",
                 "--set", settings, kubeconfig=kube.kubeconfig)
        installed = True
        status = json.loads(helm.run("status", RELEASE, "-n", release_ns, "-o", "json",
                                     kubeconfig=kube.kubeconfig).stdout)
        assert status["info"]["status"] == "deployed"
        objects = manifest_objects(helm, kube, release_ns)
        assert all(exists(kube, key) for key in objects), [k for k in objects if not exists(kube, k)]
        # Helm keeps the release (chart, values, manifest) in a Secret, which the API server caps at 1 MiB; the
        # TrainingJob CRD, with the core/v1 pod template schema inside, is most of it
        stored = len(base64.b64decode(kube.core.read_namespaced_secret(
            f"sh.helm.release.v1.{RELEASE}.v1", release_ns).data["release"]))
        print(f"release Secret: {stored} bytes")
        assert stored < 768 * 1024, f"the release Secret holds {stored} bytes, near the 1 MiB limit"
        crds = sorted(name for kind, _, name in objects if kind == "CustomResourceDefinition")
        assert crds == CRDS
        kube.run("wait", "--for", "condition=Established", "--timeout=60s", *(f"crd/{c}" for c in crds))
        for crd in crds:  # the release owns them now
            annotations = kube.run("get", "crd", crd, "-o", "jsonpath={.metadata.annotations}").stdout
            assert json.loads(annotations)["meta.helm.sh/release-name"] == RELEASE

        # the chart's operator: its ServiceAccount's token, its Deployment's command and settings
        chart_env = {k: v for k, v in env(objects).items() if v is not None and k != "CARDPOOL_METRICS_PORT"}
        assert chart_env == {"CARDPOOL_KUBE_QPS": "100", "CARDPOOL_KUBE_BURST": "200", "CARDPOOL_WORKERS": "8"}
        port = operator.health_port + 4
        liveness = f"http://127.0.0.1:{port}/healthz"
        args = [f"--liveness={liveness}" if a.startswith("--liveness=") else a for a in container(objects)["args"]]
        assert args == operator_command(liveness)[2:]  # [python, -m] kopf run ...
        token = kube.run("create", "token", "cardpool-operator", "-n", release_ns, "--duration=1h").stdout
        config = yaml.safe_load(kube.kubeconfig.read_text())
        config["users"] = [{"name": "cardpool-operator", "user": {"token": token.strip()}}]
        config["contexts"][0]["context"]["user"] = "cardpool-operator"
        restricted = tmp_path / "operator.kubeconfig"
        restricted.write_text(yaml.safe_dump(config))
        operator.start("helm-operator", health_port=port, kubeconfig=restricted, namespace=release_ns,
                       env=chart_env)

        def lease_holder() -> str:
            holder = client.CoordinationV1Api(kube.api).read_namespaced_lease(
                "cardpool-operator", release_ns).spec.holder_identity
            if holder != "helm-operator":
                raise NotYet(f"held by {holder}")
            return holder

        wait_for(f"the chart's operator to take the lease in {release_ns}", lease_holder, timeout=30)
        run_a_job_to_its_ttl_unrefused(kube, namespace, pool, lambda: operator.log("helm-operator"))
        operator.stop("helm-operator")

        helm.run("uninstall", RELEASE, "-n", release_ns, "--wait", "--timeout=120s", kubeconfig=kube.kubeconfig)
        installed = False
        left = [key for key in objects if key[0] != "CustomResourceDefinition" and exists(kube, key)]
        assert not left, f"helm uninstall left {left}"
        kube.run("wait", "--for", "condition=Established", "--timeout=10s", *(f"crd/{c}" for c in crds))
        releases = json.loads(helm.run("list", "-A", "-o", "json", kubeconfig=kube.kubeconfig).stdout)
        assert not [r for r in releases if r["namespace"] == release_ns]
    finally:
        operator.stop("helm-operator")
        if installed:
            helm.run("uninstall", RELEASE, "-n", release_ns, "--wait", "--timeout=120s", kubeconfig=kube.kubeconfig,
                     check=False)
        try:
            kube.core.delete_namespace(release_ns)
        except ApiException as exc:
            if exc.status != 404:
                raise
        # what the session had before: the crds fixture's admission policies (the uninstall took them along),
        # its CRDs without the release's marks
        kube.run("apply", "--server-side", "--force-conflicts", "-k", str(REPO / "manifests" / "admission"))
        kube.run("annotate", "crd", *CRDS, "meta.helm.sh/release-name-", "meta.helm.sh/release-namespace-",
                 f"{next(iter(KEEP))}-")
        kube.run("label", "crd", *CRDS, *(f"{label}-" for label in RELEASE_LABELS))
        operator.start()
