"""Node health as the pool's policy defines it: a pure classification with a reason.

The fault reasons double as failure reasons of the jobs whose workers ran there (and can be matched by
spec.failurePolicy.rules[].onReasons)."""

from __future__ import annotations

from dataclasses import dataclass

from cardpool.api.cardpool import HealthPolicy

from .observed import ObservedNode

NODE_STATE_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
"""The taints kube-controller-manager puts on a node that is not Ready (Ready False or Unknown)."""
FAULTS = ("NodeNotReady", "NodeUnknown", "NodeCondition", "NodeTaint", "CardFault", "NodeMissing", "DrainRequested")
LOST = ("NodeNotReady", "NodeUnknown", "NodeMissing")
"""Faults whose kubelet may never confirm a pod's end: its pods' deletion is not waited for."""
NODE_UNKNOWN = "NodeUnknown"
RECOVERING = "Recovering"
DISRUPTED = "Disrupted"


@dataclass(frozen=True, slots=True)
class NodeHealth:
    healthy: bool
    schedulable: bool
    reason: str
    """A fault (see FAULTS), or Healthy, Cordoned, NoCards (not reported yet), Draining (cardpool's drain),
    Probation, Recovering (Ready again, kube-controller-manager's not-ready/unreachable taint not lifted yet) or
    Disrupted (lost contact together with most of its pool: see core.drain.members)."""
    message: str = ""


def classify(node: ObservedNode, resource: str, cards_per_node: int, policy: HealthPolicy) -> NodeHealth:
    """`resource` and `cards_per_node`: the node group's card resource and expected cards."""
    if node.drain_requested is not None:
        return NodeHealth(False, False, "DrainRequested",
                          f"node {node.name}: drain requested ({node.drain_requested or 'no reason given'})")
    ready = node.conditions.get("Ready")
    if ready == "False":
        return NodeHealth(False, False, "NodeNotReady", f"node {node.name} is not Ready")
    if ready != "True":
        return NodeHealth(False, False, NODE_UNKNOWN, f"node {node.name} stopped reporting (Ready={ready})")
    for type_ in policy.fault_conditions:
        if node.conditions.get(type_) == "True":
            return NodeHealth(False, False, "NodeCondition", f"node {node.name} has condition {type_}=True")
    for key, effect, _value in node.taints:
        if key in policy.fault_taints:
            return NodeHealth(False, False, "NodeTaint", f"node {node.name} is tainted {key}:{effect}")
    for key, effect, _value in node.taints:
        if key in NODE_STATE_TAINTS and effect == "NoExecute":
            # Ready again, its not-ready/unreachable taint not lifted yet by kube-controller-manager (its next
            # monitor period): the kubelet reports, so its workers are not lost; no new ones until it is lifted
            return NodeHealth(True, False, RECOVERING, f"node {node.name} is Ready again; {key} not lifted yet")
    if resource not in node.capacity:  # a new node, or a restarting kubelet: its device plugin is not in yet
        return NodeHealth(True, False, "NoCards", f"node {node.name} does not report {resource} yet")
    capacity = node.capacity[resource]
    allocatable = node.allocatable.get(resource, 0)
    if allocatable < capacity:
        return NodeHealth(False, False, "CardFault",
                          f"node {node.name}: {capacity - allocatable} of {capacity} {resource} unhealthy")
    if node.drain is not None:
        if node.drain.healthy_since is not None:
            return NodeHealth(True, False, "Probation", f"node {node.name} is healthy again, on probation")
        return NodeHealth(True, False, "Draining", f"node {node.name} is drained ({node.drain.reason})")
    if node.unschedulable:
        return NodeHealth(True, False, "Cordoned", f"node {node.name} is cordoned")
    return NodeHealth(True, True, "Healthy")
