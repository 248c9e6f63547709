"""The operator image (`make image`) installed as a user installs it and run as the Deployment's pod (issue 16).

`kubectl apply --server-side -k` an overlay of manifests/ that sets the image, as `kustomize edit set image`
writes it; then one of the Deployment's pods (KWOK only plays them: no kubelet runs containers here) runs as a
real container of the built image, as a kubelet would run it (localkube.container: the pod's args, env, user,
read-only root, limits, /tmp emptyDir, and its ServiceAccount's token bound to the pod, with the CA, at
/var/run/secrets/kubernetes.io/serviceaccount; the host's network). The session's operator stands aside
meanwhile, so the container's is the only one acting.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from jobs import TIMEOUT, TORCH, make_pool, submit, wait_phase
from localkube.config import REPO
from localkube.container import Image, PodContainer, build_image, image_config
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for

PUBLISHED = "ghcr.io/cardpool/operator"  # the image manifests/operator/deployment.yaml names
SYSTEM = "cardpool-system"
SELECTOR = "app.kubernetes.io/name=cardpool,app.kubernetes.io/component=operator"
LEASE = "cardpool-operator"


@pytest.fixture(scope="module")
def image() -> Image:
    return build_image()


@pytest.fixture
def pool(kube: Kube, operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace)


def install(kube: Kube, image: Image, overlay: Path) -> client.V1Pod:
    """Install manifests/ with the image set, as a user would; one of the Deployment's pods with that image."""
    overlay.mkdir()
    name, tag = image.name.rsplit(":", 1)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(REPO / "manifests", overlay)],
        "images": [{"name": PUBLISHED, "newName": name, "newTag": tag}]}))
    kube.run("apply", "--server-side", "--force-conflicts", "-k", str(overlay))

    def pod() -> client.V1Pod:
        pods = kube.core.list_namespaced_pod(SYSTEM, label_selector=SELECTOR).items
        ours = [p for p in pods if p.spec.containers[0].image == image.name and not p.metadata.deletion_timestamp]
        if not ours:
            raise NotYet(f"pods: {[(p.metadata.name, p.spec.containers[0].image) for p in pods]}")
        return min(ours, key=lambda p: p.metadata.name)

    return wait_for(f"a pod of Deployment {SYSTEM}/cardpool-operator with image {image.name}", pod, timeout=TIMEOUT)


def holder(kube: Kube) -> str | None:
    return client.CoordinationV1Api(kube.api).read_namespaced_lease(LEASE, SYSTEM).spec.holder_identity


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name]


def test_the_image_runs_as_the_installed_operator_with_only_its_rbac(
        kube: Kube, image: Image, namespace: str, pool: str, operator: Any, tmp_path: Path) -> None:
    pod = install(kube, image, tmp_path / "overlay")
    spec = pod.spec.containers[0]
    config = image_config(image.name)
    # the image on its own runs what the Deployment runs, as the Deployment's user
    assert config["Cmd"] == spec.args and not config.get("Entrypoint"), config
    assert config["User"] == f"{pod.spec.security_context.run_as_user}:{pod.spec.security_context.run_as_group}"

    operator.stop("operator")
    try:
        with PodContainer(kube, pod, tmp_path / "pod") as container:
            def leading() -> str:
                if not container.running():
                    raise AssertionError(f"the container exited:\n{container.logs()[-4000:]}")
                if holder(kube) != pod.metadata.name:
                    raise NotYet(f"lease {SYSTEM}/{LEASE} held by {holder(kube)!r}")
                return pod.metadata.name

            wait_for(f"the container to take lease {SYSTEM}/{LEASE}", leading, timeout=TIMEOUT,
                     fatal=(AssertionError,))
            job = submit(kube, namespace, pool, TORCH)
            wait_phase(kube, namespace, job, "Running")

            probe = spec.liveness_probe.http_get
            port = container.ports[probe.port] if isinstance(probe.port, str) else probe.port
            status, body = get(f"http://127.0.0.1:{port}{probe.path}")
            assert status == 200, body
            _, metrics = get(f"http://127.0.0.1:{container.ports['metrics']}/metrics")
            assert ({"pool": pool, "phase": "Running"}, 1.0) in samples(metrics, "cardpool_jobs"), metrics
            requests = samples(metrics, "cardpool_api_requests_total")
            codes = {labels["code"] for labels, _ in requests}
            assert requests and "403" not in codes, requests

            # its user, and a root it cannot write
            probe_fs = container.exec("python3", "-c", "import os; print(os.getuid(), os.getgid()); open('/x', 'w')")
            assert probe_fs.stdout.split() == ["65532", "65532"] and "Read-only file system" in probe_fs.stderr, (
                probe_fs.stdout + probe_fs.stderr)

            assert container.stop() == 0, container.logs()[-4000:]  # SIGTERM: kopf's cleanup, then exit 0
            log = container.logs()
            assert "forbidden" not in log.lower() and "(403)" not in log and "Traceback" not in log, log[-6000:]
            assert holder(kube) is None, "the stopped operator did not hand its lease back"
    finally:
        operator.start()
