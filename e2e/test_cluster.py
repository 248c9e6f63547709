"""The local cluster is a real Kubernetes: real API server, scheduler and controllers, KWOK-played nodes."""

from __future__ import annotations

import json
import subprocess

from localkube import fleet as fleets
from localkube.config import FLEETS
from localkube.testing import Kube, pod_manifest
from localkube.waiting import NotYet, wait_for


def test_binaries_report_the_pinned_version(kube: Kube) -> None:
    out = subprocess.run([*kube.kubectl, "version", "-o", "json"], check=True, capture_output=True, text=True)
    versions = json.loads(out.stdout)
    pinned = _pinned_kubernetes()
    assert versions["clientVersion"]["gitVersion"] == pinned
    assert versions["serverVersion"]["gitVersion"] == pinned


def test_small_fleet_nodes_carry_cards_per_vendor_resource(kube: Kube) -> None:
    fleet = fleets.Fleet.load(FLEETS / "small.yaml")
    nodes = {n.metadata.name: n for n in kube.core.list_node(label_selector=fleets.FLEET_LABEL).items}
    assert len(nodes) == fleet.node_count
    for group in fleet.groups:
        members = [n for n in nodes.values() if n.metadata.labels[fleets.GROUP_LABEL] == group.name]
        assert len(members) == group.nodes, group.name
        for node in members:
            assert node.status.capacity[group.resource] == str(group.cards_per_node)
            assert node.status.allocatable[group.resource] == str(group.cards_per_node)
            for key, value in group.labels.items():
                assert node.metadata.labels[key] == value
            assert node.metadata.labels[fleets.RACK_LABEL].startswith("rack-")
    # kubectl with the written kubeconfig lists the same nodes, with their card capacity
    out = subprocess.run([*kube.kubectl, "get", "nodes", "-o", "json"], check=True, capture_output=True, text=True)
    listed = {i["metadata"]["name"]: i["status"]["capacity"] for i in json.loads(out.stdout)["items"]}
    assert listed["ascend910b-000"]["huawei.com/Ascend910"] == "8"
    assert listed["h800-000"]["nvidia.com/gpu"] == "8"


def test_scheduler_binds_an_ascend_pod_and_kwok_runs_it(kube: Kube, namespace: str) -> None:
    core = kube.core
    core.create_namespaced_pod(namespace, pod_manifest("ascend", {"huawei.com/Ascend910": "8"}, group="ascend910b"))

    def running():
        pod = core.read_namespaced_pod("ascend", namespace)
        if pod.status.phase != "Running":
            raise NotYet(f"phase={pod.status.phase} node={pod.spec.node_name}")
        return pod

    pod = wait_for("pod ascend to be bound and Running", running, timeout=60)
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels[fleets.GROUP_LABEL] == "ascend910b"
    assert pod.status.pod_ip


def test_a_pod_larger_than_any_node_stays_pending_with_the_schedulers_reason(kube: Kube, namespace: str) -> None:
    core = kube.core
    core.create_namespaced_pod(namespace, pod_manifest("too-big", {"nvidia.com/gpu": "16"}))

    def unschedulable():
        pod = core.read_namespaced_pod("too-big", namespace)
        cond = next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"), None)
        if not cond or cond.status != "False":
            raise NotYet(f"PodScheduled={cond}")
        return pod, cond

    pod, cond = wait_for("the scheduler to mark pod too-big unschedulable", unschedulable, timeout=60)
    assert cond.reason == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in cond.message
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None


def _pinned_kubernetes() -> str:
    from localkube.config import REPO

    for line in (REPO / "e2e" / "k8s" / "go.mod").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["k8s.io/kubernetes"]:
            return parts[1]
    raise AssertionError("k8s.io/kubernetes is not required in e2e/k8s/go.mod")
