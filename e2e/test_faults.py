"""Each fault-injection helper has a visible effect on the real cluster, and can be undone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from localkube import faults
from localkube.testing import Kube, node_condition, pod_manifest, taint_effects
from localkube.waiting import NotYet, wait_for

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
# node monitor grace (40 s) + monitor period (5 s) + slack for a busy 2-core machine
LIFECYCLE_DEADLINE = 120


def wait_node(core: client.CoreV1Api, name: str, what: str, predicate, timeout: float = LIFECYCLE_DEADLINE):
    def check():
        node = core.read_node(name)
        if not predicate(node):
            raise NotYet(f"Ready={node_condition(node, 'Ready')} taints={taint_effects(node)}")
        return node

    return wait_for(f"node {name}: {what}", check, timeout=timeout)


def wait_pod(core: client.CoreV1Api, namespace: str, name: str, what: str, predicate, timeout: float = 60):
    def check():
        pod = core.read_namespaced_pod(name, namespace)
        if not predicate(pod):
            raise NotYet(f"phase={pod.status.phase} node={pod.spec.node_name} "
                         f"conditions={[(c.type, c.status, c.reason) for c in pod.status.conditions or []]}")
        return pod

    return wait_for(f"pod {namespace}/{name}: {what}", check, timeout=timeout)


def healthy(node: client.V1Node) -> bool:
    taints = taint_effects(node)
    return node_condition(node, "Ready") == "True" and NOT_READY_TAINT not in taints and UNREACHABLE_TAINT not in taints


@pytest.fixture
def victim(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A node of the small fleet that the test may break; restored and healthy again afterwards."""
    name = request.param
    core = kube.core
    wait_node(core, name, "healthy before the test", healthy)
    yield name
    faults.make_node_ready(core, name)
    node = core.read_node_status(name)
    for resource, capacity in node.status.capacity.items():
        if node.status.allocatable.get(resource) != capacity and "/" in resource:
            faults.restore_cards(core, name, resource)
    wait_node(core, name, "healthy again after the test", healthy)


@pytest.mark.parametrize("victim", ["mlu590-000"], indirect=True)
def test_not_ready_node_is_tainted_by_the_node_lifecycle_controller(kube: Kube, victim: str) -> None:
    core = kube.core
    faults.make_node_not_ready(core, victim, reason="KernelDeadlock")
    node = wait_node(core, victim, "Ready=False", lambda n: node_condition(n, "Ready") == "False")
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.reason == "KernelDeadlock"
    node = wait_node(core, victim, f"tainted {NOT_READY_TAINT}:NoExecute",
                     lambda n: taint_effects(n).get(NOT_READY_TAINT) == "NoExecute")
    assert node.spec.taints


@pytest.mark.parametrize("victim", ["dcu-k100-000"], indirect=True)
def test_vanished_node_goes_unknown_and_is_tainted_unreachable(kube: Kube, victim: str) -> None:
    core = kube.core
    faults.vanish_node(core, victim)
    wait_node(core, victim, "Ready=Unknown after its lease expired", lambda n: node_condition(n, "Ready") == "Unknown")
    # NoSchedule at once; the NoExecute taint follows through the controller's rate-limited tainting queue,
    # which a loaded 2-core machine can hold back beyond any short deadline
    wait_node(core, victim, f"tainted {UNREACHABLE_TAINT}", lambda n: UNREACHABLE_TAINT in taint_effects(n))


@pytest.mark.parametrize("victim", ["h800-005"], indirect=True)
def test_dropped_cards_lower_allocatable_and_the_scheduler_respects_it(kube: Kube, victim: str, namespace: str):
    core = kube.core
    assert faults.drop_cards(core, victim, "nvidia.com/gpu", lost=2) == 6
    assert core.read_node_status(victim).status.allocatable["nvidia.com/gpu"] == "6"
    assert core.read_node_status(victim).status.capacity["nvidia.com/gpu"] == "8"

    core.create_namespaced_pod(namespace, pod_manifest("full-node", {"nvidia.com/gpu": "8"}, node=victim))
    pod = wait_pod(core, namespace, "full-node", "unschedulable for lack of cards",
                   lambda p: any(c.type == "PodScheduled" and c.reason == "Unschedulable"
                                 for c in p.status.conditions or []))
    message = next(c.message for c in pod.status.conditions if c.type == "PodScheduled")
    assert "Insufficient nvidia.com/gpu" in message

    faults.restore_cards(core, victim, "nvidia.com/gpu")
    pod = wait_pod(core, namespace, "full-node", "bound and Running once the cards are back",
                   lambda p: p.status.phase == "Running")
    assert pod.spec.node_name == victim


@pytest.mark.parametrize(("exit_code", "reason"), [(137, "OOMKilled"), (1, "Error")])
def test_failed_pod_terminates_with_the_given_exit_code(kube: Kube, namespace: str, exit_code: int, reason: str):
    core = kube.core
    core.create_namespaced_pod(namespace, pod_manifest("worker", {"kunlunxin.com/xpu": "1"}))
    wait_pod(core, namespace, "worker", "Running", lambda p: p.status.phase == "Running")
    faults.fail_pod(core, namespace, "worker", exit_code=exit_code, reason=reason)
    pod = wait_pod(core, namespace, "worker", "Failed", lambda p: p.status.phase == "Failed")
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == exit_code
    assert terminated.reason == reason


def test_completed_pod_succeeds_with_exit_code_zero(kube: Kube, namespace: str) -> None:
    core = kube.core
    core.create_namespaced_pod(namespace, pod_manifest("worker", {"metax-tech.com/gpu": "2"}))
    wait_pod(core, namespace, "worker", "Running", lambda p: p.status.phase == "Running")
    faults.complete_pod(core, namespace, "worker")
    pod = wait_pod(core, namespace, "worker", "Succeeded", lambda p: p.status.phase == "Succeeded")
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
