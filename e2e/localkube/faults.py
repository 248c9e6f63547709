"""Fault injection for tests: the failures a large accelerator pool sees, played by KWOK or by status patches.

Each function changes the cluster and returns at once; the tests wait (with a deadline) for the effect.
"""

from __future__ import annotations

from kubernetes import client

from .cluster import KWOK_NODE_LABEL

NODE_NOT_READY = "node-not-ready.stage.kwok.x-k8s.io"
POD_FAILED = "pod-container-running-failed.stage.kwok.x-k8s.io"
POD_COMPLETE = "pod-complete.stage.kwok.x-k8s.io"
VANISHED = "vanished"


def make_node_not_ready(core: client.CoreV1Api, node: str, reason: str = "KernelDeadlock",
                        message: str = "injected by localkube") -> None:
    """KWOK reports the node's Ready condition False (its lease stays renewed, as with a sick kubelet);
    the node lifecycle controller then taints it node.kubernetes.io/not-ready:NoExecute."""
    core.patch_node(node, {"metadata": {
        "labels": {NODE_NOT_READY: "true"},
        "annotations": {f"{NODE_NOT_READY}/reason": reason, f"{NODE_NOT_READY}/message": message},
    }})


def make_node_ready(core: client.CoreV1Api, node: str) -> None:
    """Undo make_node_not_ready and vanish_node: KWOK manages the node again and re-initialises it Ready."""
    core.patch_node(node, {"metadata": {
        "labels": {NODE_NOT_READY: None, KWOK_NODE_LABEL[0]: KWOK_NODE_LABEL[1]},
        "annotations": {f"{NODE_NOT_READY}/reason": None, f"{NODE_NOT_READY}/message": None},
    }})


def vanish_node(core: client.CoreV1Api, node: str) -> None:
    """The machine disappears: KWOK stops managing it, so its lease is no longer renewed. After the node
    monitor grace period the node lifecycle controller sets Ready=Unknown and taints it unreachable; pods on
    it are left as a lost kubelet leaves them (deleted pods stay Terminating)."""
    core.patch_node(node, {"metadata": {"labels": {KWOK_NODE_LABEL[0]: VANISHED}}})


def drop_cards(core: client.CoreV1Api, node: str, resource: str, lost: int) -> int:
    """A device plugin reports `lost` cards unhealthy: allocatable drops below capacity. Returns the new
    allocatable count."""
    current = core.read_node_status(node)
    capacity = int(current.status.capacity[resource])
    remaining = max(capacity - lost, 0)
    core.patch_node_status(node, {"status": {"allocatable": {resource: str(remaining)}}})
    return remaining


def restore_cards(core: client.CoreV1Api, node: str, resource: str) -> None:
    current = core.read_node_status(node)
    core.patch_node_status(node, {"status": {"allocatable": {resource: current.status.capacity[resource]}}})


def fail_pod(core: client.CoreV1Api, namespace: str, pod: str, exit_code: int = 1, reason: str = "Error",
             message: str = "injected by localkube") -> None:
    """The pod's containers terminate with `exit_code` (e.g. 137 after SIGKILL/OOM) and the pod turns Failed."""
    core.patch_namespaced_pod(pod, namespace, {"metadata": {
        "labels": {POD_FAILED: "true"},
        "annotations": {f"{POD_FAILED}/exit-code": str(exit_code), f"{POD_FAILED}/reason": reason,
                        f"{POD_FAILED}/message": message, f"{POD_FAILED}/delay": "0s",
                        f"{POD_FAILED}/jitter-delay": "0s"},
    }})


def complete_pod(core: client.CoreV1Api, namespace: str, pod: str) -> None:
    """The pod's containers exit 0 and the pod turns Succeeded."""
    core.patch_namespaced_pod(pod, namespace, {"metadata": {"labels": {POD_COMPLETE: "true"}}})
