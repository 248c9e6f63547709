"""Observed Kubernetes objects in the plain form the core decides on (built by cardpool.kube.observe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cardpool.api.trainingjob import TrainingJobSpec, TrainingJobStatus


@dataclass(frozen=True, slots=True)
class ObservedNode:
    name: str
    labels: dict[str, str]
    capacity: dict[str, int]
    """Extended (card) resources only, as integers."""
    allocatable: dict[str, int]
    conditions: dict[str, str]
    """type -> "True" / "False" / "Unknown"."""
    taints: tuple[tuple[str, str], ...] = ()
    """(key, effect)."""
    unschedulable: bool = False


@dataclass(frozen=True, slots=True)
class ObservedPod:
    name: str
    namespace: str
    job: str
    attempt: int
    rank: int
    node: str | None
    """The node it is bound to, else the node its affinity names."""
    phase: str
    ready: bool = False
    deleting: bool = False
    exit_code: int | None = None
    reason: str | None = None
    cards: int = 0
    """Accelerator cards the pod requests (extended resources)."""
    pool: str | None = None


@dataclass(frozen=True, slots=True)
class ObservedCheckpoint:
    name: str
    job: str
    attempt: int
    step: int
    uri: str
    world_size: int
    complete: bool
    created: datetime
    verdict: str | None = None
    """The status of its Accepted condition once the operator has judged it ("True"/"False")."""


@dataclass(frozen=True)
class ObservedJob:
    namespace: str
    name: str
    uid: str
    generation: int
    created: datetime
    spec: TrainingJobSpec
    status: TrainingJobStatus
    pods: tuple[ObservedPod, ...] = field(default=())
    resource_version: str = ""
    """Of the observed object; a status write names it, so a decision made on a stale view fails."""
    checkpoints: tuple[ObservedCheckpoint, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"
