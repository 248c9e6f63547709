"""The process runner (localkube.runner) plays a kubelet for pods annotated localkube.cardpool.io/run=process,
and KWOK leaves their deletion to it. Once it stops, nothing would end such a pod: it hands them back, so a
pod deleted after the runner stopped is still removed (the teardown of a test that used it, under load, once
waited 60 s for a rank the operator deleted a moment after the runner stopped)."""

from __future__ import annotations

from pathlib import Path

from kubernetes.client.exceptions import ApiException

from localkube.runner import ANNOTATION, Runner
from localkube.testing import Kube, pod_manifest
from localkube.waiting import NotYet, wait_for


def test_a_pod_deleted_after_the_runner_stopped_is_still_removed(kube: Kube, namespace: str, tmp_path: Path) -> None:
    core = kube.core
    body = pod_manifest("sleeper", {"nvidia.com/gpu": "1"})
    body["metadata"]["annotations"] = {ANNOTATION: "process"}
    body["spec"]["terminationGracePeriodSeconds"] = 30
    body["spec"]["containers"][0]["command"] = ["python", "-c", "import time; time.sleep(600)"]
    core.create_namespaced_pod(namespace, body)
    configuration = kube.api.configuration
    with Runner(core, namespace, tmp_path, configuration.host, configuration.ssl_ca_cert) as runner:
        def started() -> bool:
            if "sleeper" not in {r.pod for r in runner.runs.values()}:
                pod = core.read_namespaced_pod("sleeper", namespace)
                raise NotYet(f"phase={pod.status.phase} node={pod.spec.node_name}; runner errors {runner.errors}")
            return True

        wait_for("the runner to start the sleeper's process", started, timeout=60)
    assert ANNOTATION not in (core.read_namespaced_pod("sleeper", namespace).metadata.annotations or {})
    core.delete_namespaced_pod("sleeper", namespace)

    def gone() -> bool:
        try:
            pod = core.read_namespaced_pod("sleeper", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        raise NotYet(f"deleting since {pod.metadata.deletion_timestamp}, finalizers {pod.metadata.finalizers}")

    wait_for("the pod deleted after the runner stopped to be removed", gone, timeout=60)
