"""Conditions in the Kubernetes convention, compatible with kstatus (what Flux and cli-utils read).

kstatus reads `Reconciling` (True: still in progress) and `Stalled` (True: failed, needs a human), and
treats a resource as current only when status.observedGeneration equals metadata.generation. cardpool adds
`Ready` (the resource does what was asked) and, for jobs, `Suspended`.

Helpers are pure: they take `now` and return a new list; lastTransitionTime changes only when a condition's
status flips.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from .base import ApiModel


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """One aspect of the resource's state at a point in time."""

    type: str = Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                              r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$", max_length=316)
    """Condition type: Ready, Reconciling, Stalled, Suspended."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    """One CamelCase word saying why the condition is in its status."""
    message: str = Field("", max_length=32768)
    """Human-readable details."""
    last_transition_time: datetime
    """When the status last changed."""
    observed_generation: int | None = Field(None, ge=0)
    """The metadata.generation the condition was computed from."""


def set_condition(
    conditions: list[Condition],
    type: str,
    status: ConditionStatus | bool,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Return `conditions` with `type` set; lastTransitionTime moves to `now` only if the status changed."""
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    previous = find_condition(conditions, type)
    if previous is not None and previous.status == status and previous.reason == reason and (
            previous.message == message and previous.observed_generation == observed_generation):
        return list(conditions)  # unchanged (the common case: no new Condition built and validated)
    since = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(type=type, status=status, reason=reason, message=message, last_transition_time=since,
                        observed_generation=observed_generation)
    if previous == updated:
        return list(conditions)
    return [c for c in conditions if c.type != type] + [updated] if previous is None else [
        updated if c.type == type else c for c in conditions]


def remove_condition(conditions: list[Condition], type: str) -> list[Condition]:
    return [c for c in conditions if c.type != type]


def find_condition(conditions: list[Condition], type: str) -> Condition | None:
    return next((c for c in conditions if c.type == type), None)


def is_true(conditions: list[Condition], type: str) -> bool:
    found = find_condition(conditions, type)
    return found is not None and found.status == ConditionStatus.TRUE
