"""Helpers for tests against the local cluster: the handle tests get, manifests, readings, failure dumps."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from . import fleet as fleets


@dataclass(frozen=True)
class Kube:
    """What a test needs to talk to the cluster."""

    kubeconfig: Path
    api: client.ApiClient
    bindir: Path

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def kubectl(self) -> list[str]:
        return [str(self.bindir / "kubectl"), "--kubeconfig", str(self.kubeconfig)]

    def run(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        """Run kubectl; with `check`, a non-zero exit fails with kubectl's own error output."""
        result = subprocess.run([*self.kubectl, *args], capture_output=True, text=True, input=stdin, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result


def dump(kube: Kube, namespace: str) -> str:
    """The objects a failed test left behind: pods with their status, events, and node health."""
    core = kube.core
    lines = [f"==== dump of namespace {namespace} ===="]
    for pod in core.list_namespaced_pod(namespace).items:
        statuses = [(c.name, c.state.to_dict() if c.state else None) for c in pod.status.container_statuses or []]
        conditions = [(c.type, c.status, c.reason, c.message) for c in pod.status.conditions or []]
        lines.append(f"pod {pod.metadata.name}: phase={pod.status.phase} node={pod.spec.node_name} "
                     f"conditions={conditions} containers={statuses}")
    for ev in core.list_namespaced_event(namespace).items:
        lines.append(f"event {ev.involved_object.kind}/{ev.involved_object.name}: {ev.type} {ev.reason}: "
                     f"{ev.message}")
    for node in core.list_node().items:
        ready = next((c.status for c in node.status.conditions or [] if c.type == "Ready"), "?")
        taints = [f"{t.key}:{t.effect}" for t in node.spec.taints or []]
        if ready != "True" or taints or node.spec.unschedulable:
            lines.append(f"node {node.metadata.name}: Ready={ready} taints={taints} "
                         f"unschedulable={node.spec.unschedulable}")
    return "\n".join(lines)


def pod_manifest(name: str, requests: dict[str, str], node: str | None = None, group: str | None = None) -> dict:
    """A one-container pod requesting `requests`, optionally required onto one node or one fleet group."""
    terms = []
    if node:
        terms.append({"key": "kubernetes.io/hostname", "operator": "In", "values": [node]})
    if group:
        terms.append({"key": fleets.GROUP_LABEL, "operator": "In", "values": [group]})
    spec: dict = {
        "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": requests, "limits": requests}}],
        "terminationGracePeriodSeconds": 0,
    }
    if terms:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": terms}]}}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def node_condition(node: client.V1Node, type_: str) -> str | None:
    return next((c.status for c in node.status.conditions or [] if c.type == type_), None)


def taint_effects(node: client.V1Node) -> dict[str, str]:
    return {t.key: t.effect for t in node.spec.taints or []}
