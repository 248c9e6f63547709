"""Node health as the pool's policy defines it: a pure classification with a reason."""

from __future__ import annotations

from dataclasses import dataclass

from cardpool.api.cardpool import HealthPolicy

ALWAYS_FAULT_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


@dataclass(frozen=True, slots=True)
class NodeHealth:
    healthy: bool
    schedulable: bool
    reason: str
    """CamelCase: Healthy, NotReady, ReadyUnknown, Condition<Type>, Taint, Cordoned."""


def classify(conditions: dict[str, str], taints: tuple[tuple[str, str], ...], unschedulable: bool,
             policy: HealthPolicy) -> NodeHealth:
    ready = conditions.get("Ready")
    if ready == "False":
        return NodeHealth(False, False, "NotReady")
    if ready != "True":
        return NodeHealth(False, False, "ReadyUnknown")
    for type_ in policy.fault_conditions:
        if conditions.get(type_) == "True":
            return NodeHealth(False, False, f"Condition{type_}")
    fault_taints = set(ALWAYS_FAULT_TAINTS) | set(policy.fault_taints)
    for key, effect in taints:
        if key in fault_taints and (effect == "NoExecute" or key in policy.fault_taints):
            return NodeHealth(False, False, "Taint")
    if unschedulable:
        return NodeHealth(True, False, "Cordoned")
    return NodeHealth(True, True, "Healthy")
