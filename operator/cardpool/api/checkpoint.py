"""Checkpoint: written by a job's rank 0 (through cardpool.runtime) when it saved; owned by the job."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from .base import DNS_SUBDOMAIN, ApiModel, ObjectMeta, cel, rule
from .conditions import Condition
from .keys import API_VERSION
from .trainingjob import CHECKPOINT_URI


class CheckpointSpec(ApiModel):
    """A saved training state. The operator trusts only complete ones and copies the newest into the job."""

    model_config = {"json_schema_extra": cel(
        rule("!oldSelf.complete || self == oldSelf",
             "spec is immutable once spec.complete is true", reason="FieldValueForbidden"),
    )}

    job: str = Field(pattern=DNS_SUBDOMAIN, max_length=253)
    """Name of the TrainingJob (same namespace) that saved it."""
    attempt: int = Field(ge=0)
    """Attempt of the job that saved it."""
    step: int = Field(ge=0, le=2**53)
    """Training step saved."""
    uri: str = Field(pattern=CHECKPOINT_URI, max_length=2048)
    """Where it is stored."""
    world_size: int = Field(ge=1, le=10_000_000)
    """Cards the job had when it saved (a resumed job with another size reshards)."""
    complete: bool = False
    """True once every rank's shard is durable; only complete checkpoints are used."""
    saved_at: datetime | None = None
    """When the save finished."""
    save_seconds: float | None = Field(None, ge=0, le=86400)
    """Seconds the save stopped training (an asynchronous save: only its blocking part). With it the operator
    advises how often the job should save (status.checkpointAdvice)."""


class CheckpointStatus(ApiModel):
    """What the operator made of the checkpoint."""

    observed_generation: int | None = Field(None, ge=0)
    """metadata.generation this status reflects."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    """Accepted: True when recorded as the job's latest checkpoint, False with a reason when ignored."""


class Checkpoint(ApiModel):
    """A training checkpoint reported by a job."""

    model_config = {"extra": "ignore"}

    api_version: Literal["cardpool.io/v1alpha1"] = API_VERSION
    kind: Literal["Checkpoint"] = "Checkpoint"
    metadata: ObjectMeta
    spec: CheckpointSpec
    status: CheckpointStatus | None = None
