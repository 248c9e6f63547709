"""Observed Kubernetes objects in the plain form the core decides on (built by cardpool.kube.observe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from cardpool.api.trainingjob import TrainingJobSpec, TrainingJobStatus


@dataclass(frozen=True, slots=True)
class DrainRecord:
    """cardpool's memory of a drain, kept on the node (annotation cardpool.io/drain) so any replica, after
    any crash, sees the same drain."""

    reason: str
    """The fault that started the drain, e.g. NodeNotReady, CardFault."""
    since: datetime
    cordoned: bool
    """Whether cardpool cordoned the node (a node already cordoned by someone else stays cordoned)."""
    healthy_since: datetime | None = None
    """Start of the probation: since when the node has been healthy again."""
    others_evicted: bool = False
    """Whether the node's other pods have been evicted."""


@dataclass(frozen=True, slots=True)
class ObservedNode:
    name: str
    labels: dict[str, str]
    capacity: dict[str, int]
    """Extended (card) resources only, as integers."""
    allocatable: dict[str, int]
    conditions: dict[str, str]
    """type -> "True" / "False" / "Unknown"."""
    taints: tuple[tuple[str, str, str], ...] = ()
    """(key, effect, value)."""
    unschedulable: bool = False
    drain: DrainRecord | None = None
    drain_requested: str | None = None
    """A person asked for a drain (`cardpool drain`), with this reason."""


@dataclass(frozen=True, slots=True)
class ObservedProgress:
    step: int
    total_steps: int | None
    time: datetime


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
    deleting_since: datetime | None = None
    """When its deletion was requested (deletionTimestamp minus the grace period)."""
    finished_at: datetime | None = None
    """When its trainer container terminated."""
    conditions: frozenset[str] = frozenset()
    """Pod condition types that are True, e.g. DisruptionTarget."""
    progress: ObservedProgress | None = None
    """The latest progress report it carries (rank 0)."""
    labels: tuple[tuple[str, str], ...] = ()


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
    owner_uid: str = ""
    """UID of the TrainingJob named spec.job in its ownerReferences ("" when none names it)."""
    save_seconds: float | None = None
    """Seconds the save stopped training, as the trainer reported it (spec.saveSeconds)."""


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
    shape: str = ""
    """Hash of the spec fields that shape its pods (core.attempts.pod_shape), computed once per version."""

    @cached_property
    def key(self) -> str:  # read for every job many times a pass
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ObservedBudget:
    """A PodDisruptionBudget: which pods it covers and how many of them may go now."""

    namespace: str
    match_labels: dict[str, str]
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...]
    """(key, operator, values)."""
    disruptions_allowed: int

    def selects(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for key, op, values in self.match_expressions:
            present = key in labels
            if (op == "In" and not (present and labels[key] in values)) or (
                    op == "NotIn" and present and labels[key] in values) or (
                    op == "Exists" and not present) or (op == "DoesNotExist" and present):
                return False
        return True


@dataclass(frozen=True, slots=True)
class PodRefusal:
    """The API server refused the job's worker pod as the job's spec now stands (in a dry run or a create)."""

    reason: str
    """InvalidPodTemplate: the pod itself is invalid (422, 400), until the spec changes. PodsRefused: an
    admission check refused it (403: a PodSecurity level, a missing PriorityClass, a quota), checked again
    after a backoff."""
    message: str
    """The API server's own words, naming the field."""
