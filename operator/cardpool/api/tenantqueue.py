"""TenantQueue: a tenant's share of the cluster's cards (a Kueue user would say ClusterQueue with its cohort).

Queues form a tree (an organisation, its teams: spec.parent). Per accelerator model a queue has a guaranteed
number of cards, a borrowing limit (how far above its guarantee it may go while others leave cards idle) and a
cap; surplus goes to queues by weight. A TrainingJob names its queue (spec.queue), or its namespace maps to
one (spec.namespaces, as a Kueue LocalQueue would); jobs in no queue are not limited. Cluster-scoped."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import DNS_LABEL, DNS_SUBDOMAIN, ApiModel, ObjectMeta, cel, rule
from .cardpool import MODEL_NAME
from .conditions import Condition
from .keys import API_VERSION

MAX_CARDS = 10_000_000


class ModelQuota(ApiModel):
    """A queue's cards of one accelerator model."""

    model_config = {"json_schema_extra": cel(
        rule("!has(self.cap) || self.cap >= self.guaranteed",
             "quotas[].cap must be at least quotas[].guaranteed", field_path=".cap"),
    )}

    model: str = Field(pattern=MODEL_NAME, max_length=63)
    """Accelerator model, as the pools' node groups name it (e.g. H800, 910B)."""
    guaranteed: int = Field(0, ge=0, le=MAX_CARDS)
    """Cards the queue gets back, from queues that borrowed them, whenever one of its jobs waits for them."""
    borrowing_limit: int | None = Field(None, ge=0, le=MAX_CARDS)
    """Cards above the guarantee the queue may hold while others leave them idle; unset: no limit but the
    cap. Borrowed cards are reclaimed (with a graceful save) when their owner needs them."""
    cap: int | None = Field(None, ge=0, le=MAX_CARDS)
    """Most cards the queue may hold, borrowed or not; unset: no cap."""


class TenantQueueSpec(ApiModel):
    """A tenant's quota."""

    parent: str | None = Field(None, pattern=DNS_SUBDOMAIN, max_length=253)
    """The queue above this one (an organisation above its teams): its caps and borrowing limits bound its
    children's usage together."""
    weight: int = Field(1, ge=1, le=1000)
    """Share of surplus cards (beyond guarantees), relative to the other queues' weights."""
    namespaces: list[str] = Field(default_factory=list, max_length=256, json_schema_extra={
        "x-kubernetes-list-type": "set", "items": {"type": "string", "pattern": DNS_LABEL, "maxLength": 63}})
    """Namespaces whose jobs may use this queue (naming it in spec.queue); a job naming no queue uses the first
    queue by name that lists its namespace. A job naming a queue that does not list its namespace waits
    (QueueNotAllowed)."""
    quotas: list[ModelQuota] = Field(default_factory=list, max_length=32, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["model"]})
    """Per accelerator model; a model not listed has no guarantee and no limit here."""
    min_runtime_seconds: int = Field(600, ge=0, le=86400)
    """A job of this queue running for less than this is never stopped to give borrowed cards back."""
    max_reclaims_per_hour: int = Field(2, ge=0, le=100)
    """A job of this queue is stopped to give borrowed cards back at most this many times an hour (0: never
    stopped for reclaim; its queue should then not borrow much)."""


class ModelUsage(ApiModel):
    """One model's figures for the queue (its children's jobs included)."""

    model: str
    """Accelerator model."""
    guaranteed: int = Field(0, ge=0)
    """Cards guaranteed (spec.quotas[].guaranteed)."""
    used: int = Field(0, ge=0)
    """Cards its jobs hold now."""
    borrowed: int = Field(0, ge=0)
    """Cards held above the guarantee."""
    lent: int = Field(0, ge=0)
    """Cards of the guarantee other queues use while this one does not."""


class TenantQueueStatus(ApiModel):
    """Observed state of a TenantQueue."""

    observed_generation: int | None = Field(None, ge=0)
    """metadata.generation this status reflects."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    """Ready (the queue admits jobs), Stalled (its spec cannot be used: missing parent, a cycle, a namespace
    another queue maps)."""
    models: list[ModelUsage] = Field(default_factory=list, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["model"]})
    """Per accelerator model it has a quota for or uses."""
    used_cards: int = Field(0, ge=0)
    """Cards its jobs (and its children's) hold now, all models."""
    borrowed_cards: int = Field(0, ge=0)
    """Cards held above its guarantees, all models."""
    running_jobs: int = Field(0, ge=0)
    """Its jobs holding cards (Starting or Running)."""
    waiting_jobs: int = Field(0, ge=0)
    """Its jobs waiting to be admitted or placed."""


class TenantQueue(ApiModel):
    """A tenant's quota of cards."""

    model_config = {"extra": "ignore"}

    api_version: Literal["cardpool.io/v1alpha1"] = API_VERSION
    kind: Literal["TenantQueue"] = "TenantQueue"
    metadata: ObjectMeta
    spec: TenantQueueSpec
    status: TenantQueueStatus | None = None


ROOT_RULES = [
    rule("!has(self.spec.parent) || self.spec.parent != self.metadata.name",
         "spec.parent must name another queue, not the queue itself"),
]
