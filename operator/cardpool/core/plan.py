"""What a job's plan asks the acting layer to do (cardpool.kube carries it out): the status to write, pods to
create and delete, events, checkpoint verdicts, and when to look again."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cardpool.api.trainingjob import TrainingJobStatus

from .events import Event


@dataclass(frozen=True, slots=True)
class RankSlot:
    """A worker to create: its rank and where the recorded placement puts it."""

    rank: int
    node: str
    group: str
    model: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a reported checkpoint was taken as the job's latest; set on the Checkpoint's status."""

    checkpoint: str
    accepted: bool
    reason: str
    message: str


@dataclass
class JobPlan:
    job: str
    status: TrainingJobStatus
    create: list[RankSlot] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    force_delete: list[str] = field(default_factory=list)
    """Pods stuck Terminating on a lost node, removed without waiting for its kubelet."""
    events: list[Event] = field(default_factory=list)
    delete_job: bool = False
    status_changed: bool = True
    verdicts: list[Verdict] = field(default_factory=list)
    recheck_at: datetime | None = None
    """The earliest moment a time-based rule could decide otherwise on the same inputs (None: never)."""
    settling: bool = False
    """Not decided: the job's last plan is still being carried out (see cardpool.controller)."""

    @property
    def acts(self) -> bool:
        """Whether carrying out the plan calls the API at all."""
        return bool(self.status_changed or self.create or self.delete or self.force_delete or self.events
                    or self.verdicts or self.delete_job)
