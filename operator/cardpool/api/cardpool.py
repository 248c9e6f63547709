"""CardPool: a cluster-scoped pool of accelerator cards made of node groups, one accelerator model each."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from .base import DNS_LABEL, LABEL_KEY, LABEL_KEY_MAX, LABEL_VALUE, ApiModel, ObjectMeta, cel, rule
from .conditions import Condition
from .keys import API_VERSION
from .podtemplate import toleration_rules

RESOURCE_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
MODEL_NAME = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


class Vendor(StrEnum):
    NVIDIA = "nvidia"
    HUAWEI = "huawei"
    CAMBRICON = "cambricon"
    HYGON = "hygon"
    KUNLUNXIN = "kunlunxin"
    METAX = "metax"
    MTHREADS = "mthreads"
    ENFLAME = "enflame"
    ILUVATAR = "iluvatar"
    BIREN = "biren"
    AMD = "amd"
    HABANA = "habana"
    OTHER = "other"


class InterconnectKind(StrEnum):
    NVLINK = "nvlink"
    HCCS = "hccs"
    MLULINK = "mlulink"
    XGMI = "xgmi"
    INFINITY_FABRIC = "infinityfabric"
    PCIE = "pcie"
    OTHER = "other"


class Interconnect(ApiModel):
    """The fast card-to-card link inside an interconnect domain (an NVLink/HCCS island)."""

    kind: InterconnectKind = InterconnectKind.PCIE
    """Link technology: nvlink, hccs, mlulink, xgmi, infinityfabric, pcie or other."""
    domain_size: int | None = Field(None, ge=1, le=4096)
    """Cards that share one interconnect domain. Unset: one node's cards. A worker needing a whole domain gets
    one; may span nodes (e.g. 72 for an NVL72 rack) or split a node."""


class Accelerator(ApiModel):
    """The accelerator cards of a node group."""

    model_config = {"json_schema_extra": cel(rule(
        "!has(self.interconnect) || !has(self.interconnect.domainSize) || "
        "self.interconnect.domainSize % self.cardsPerNode == 0 || "
        "self.cardsPerNode % self.interconnect.domainSize == 0",
        "accelerator.interconnect.domainSize must divide cardsPerNode or be a multiple of it",
        field_path=".interconnect.domainSize"))}

    vendor: Vendor
    """Card vendor: nvidia, huawei, cambricon, hygon, kunlunxin, metax, mthreads, enflame, iluvatar, biren, amd,
    habana or other."""
    model: str = Field(pattern=MODEL_NAME, max_length=63)
    """Card model as jobs name it in spec.placement.accelerators, e.g. H800, A100, Ascend910B, MLU590."""
    resource: str = Field(pattern=RESOURCE_NAME, max_length=253)
    """Extended resource the device plugin advertises, e.g. nvidia.com/gpu, huawei.com/Ascend910,
    cambricon.com/mlu, hygon.com/dcu, kunlunxin.com/xpu, metax-tech.com/gpu, mthreads.com/gpu."""
    cards_per_node: int = Field(ge=1, le=64)
    """Cards on each node of the group."""
    memory_gib: int | None = Field(None, alias="memoryGiB", ge=1, le=4096)
    """Memory of one card in GiB."""
    relative_throughput: float = Field(1.0, gt=0, le=100)
    """Training throughput of one card relative to the reference card (1.0); splits work in Mixed jobs."""
    interconnect: Interconnect | None = None


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(ApiModel):
    """A taint of the group's nodes that cardpool's pods tolerate (as in a pod's tolerations)."""

    # core/v1 refuses such tolerations on the pods: refuse them here, where the pool is written
    model_config = {"json_schema_extra": cel(*toleration_rules("spec.nodeGroups[].tolerations[]"))}

    key: str | None = Field(None, pattern=LABEL_KEY, max_length=LABEL_KEY_MAX)
    """Taint key; empty with operator Exists tolerates every taint."""
    operator: TolerationOperator = TolerationOperator.EQUAL
    """Exists or Equal."""
    value: str | None = Field(None, max_length=63, json_schema_extra={"pattern": LABEL_VALUE})
    """Taint value for operator Equal; empty with operator Exists."""
    effect: TaintEffect | None = None
    """Taint effect to tolerate; unset tolerates all effects."""


class NodeGroup(ApiModel):
    """Nodes of one accelerator model, picked by a label selector."""

    name: str = Field(pattern=DNS_LABEL, max_length=63)
    """Group name, unique in the pool."""
    node_selector: dict[str, str] = Field(min_length=1, json_schema_extra={"minProperties": 1})
    """Labels a node must carry to belong to the group (all of them)."""
    accelerator: Accelerator
    topology_keys: list[str] = Field(default_factory=list, max_length=4,
                                     json_schema_extra={"x-kubernetes-list-type": "set",
                                                        "items": {"type": "string", "pattern": LABEL_KEY}})
    """Node label keys naming topology blocks, nearest tier first, e.g. [topology.cardpool.io/rack,
    topology.cardpool.io/spine]. Jobs are packed into as few blocks as possible."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=16)
    """Taints on the group's nodes that training pods tolerate."""


class HealthPolicy(ApiModel):
    """Which node signals count as faults, and how draining is bounded."""

    fault_conditions: list[str] = Field(default_factory=list, max_length=32,
                                        json_schema_extra={"x-kubernetes-list-type": "set"})
    """Node condition types that mark a node faulty when True (node-problem-detector style), besides
    Ready=False/Unknown which always does, e.g. [KernelDeadlock, GPUUnhealthy]."""
    fault_taints: list[str] = Field(default_factory=list, max_length=32,
                                    json_schema_extra={"x-kubernetes-list-type": "set"})
    """Taint keys that mark a node faulty, besides node.kubernetes.io/not-ready and unreachable."""
    probation_seconds: int = Field(600, ge=0, le=86400)
    """How long a repaired node must stay healthy before it is trusted with cards again."""
    max_drained_percent: int = Field(20, ge=1, le=100)
    """At most this share of a group's nodes (rounded down, but at least one) is drained at once, so a fault
    storm cannot empty the pool. Faulty nodes beyond the cap get no new workers, but are not cordoned and
    their other pods are not evicted."""
    stuck_terminating_seconds: int = Field(60, ge=10, le=3600)
    """Pods stuck Terminating on a lost node are force-removed after this long."""
    disruption_grace_seconds: int = Field(120, ge=0, le=3600)
    """When more than half of the pool lost contact at once (a control-plane or network disruption, not
    faults: see status.disruption), how long after most of it reports again the nodes still silent are held
    before they count as faults. Covers the kubelets' next status report and kube-controller-manager's next
    node monitor period."""


class MovableJobs(StrEnum):
    ELASTIC = "Elastic"
    ALL = "All"


class DefragmentationPolicy(ApiModel):
    """Migrations that carve out whole nodes and interconnect domains for gangs that cannot start."""

    model_config = {"json_schema_extra": cel(rule(
        "self.maxConcurrentMigrations <= self.maxMigrationsPerHour || self.maxMigrationsPerHour == 0",
        "defragmentation.maxConcurrentMigrations must not exceed maxMigrationsPerHour",
        field_path=".maxConcurrentMigrations"))}

    enabled: bool = False
    """Plan and carry out migrations."""
    dry_run: bool = False
    """Only report the migrations that would be made."""
    max_migrations_per_hour: int = Field(4, ge=0, le=1000)
    """Budget of job migrations per hour in this pool."""
    max_concurrent_migrations: int = Field(1, ge=1, le=100)
    """Migrations in flight at once."""
    movable_jobs: MovableJobs = MovableJobs.ELASTIC
    """Elastic: only jobs with min < max size may be moved; All: any job with a checkpoint. Jobs with
    spec.placement.allowMigration false are never moved."""
    compaction_threshold_percent: int = Field(40, ge=0, le=100)
    """Background compaction (moves that free a whole node while no gang waits) starts when a group's
    fragmentation has stayed above this percentage for compactionAfterSeconds."""
    compaction_after_seconds: int = Field(600, ge=0, le=86400)
    """How long fragmentation must stay above the threshold before compaction moves anything."""


class CardPoolSpec(ApiModel):
    """Desired state of a CardPool."""

    node_groups: list[NodeGroup] = Field(min_length=1, max_length=64, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})
    """Node groups of the pool, one accelerator model each. Group names are unique."""
    health: HealthPolicy = Field(default_factory=HealthPolicy)
    defragmentation: DefragmentationPolicy = Field(default_factory=DefragmentationPolicy)


class CountedFault(ApiModel):
    """A fault counted in its group's history whose drain is still on the node (so it is counted once)."""

    node: str
    """The node."""
    reason: str
    """The fault, e.g. NodeNotReady, CardFault."""
    since: datetime
    """When its drain began."""


class FaultHistory(ApiModel):
    """Faults of a group's nodes, the basis of the jobs' checkpoint advice: each drain of a faulty node
    counts one (drains a person asked for do not)."""

    count: int = Field(0, ge=0)
    """Faults since `since`."""
    since: datetime
    """When counting began."""
    open: list[CountedFault] = Field(default_factory=list)
    """Counted faults whose node is still drained."""


class GroupStatus(ApiModel):
    """Observed capacity of one node group."""

    name: str
    """Group name."""
    model: str = ""
    """Accelerator model."""
    nodes: int = Field(0, ge=0)
    """Nodes matching the group's selector."""
    cards: int = Field(0, ge=0)
    """Card capacity of those nodes."""
    healthy_cards: int = Field(0, ge=0)
    """Cards on healthy, schedulable nodes that the device plugin reports allocatable."""
    allocated_cards: int = Field(0, ge=0)
    """Cards held by cardpool's jobs."""
    other_cards: int = Field(0, ge=0)
    """Cards held by pods cardpool does not manage (inference servers, notebooks, other operators' jobs):
    not free for cardpool's jobs."""
    free_cards: int = Field(0, ge=0)
    """Healthy cards not allocated."""
    unhealthy_cards: int = Field(0, ge=0)
    """Cards lost to faults, drains or the device plugin."""
    draining_nodes: int = Field(0, ge=0)
    """Nodes drained by cardpool: draining, or on probation."""
    largest_free_block: int = Field(0, ge=0)
    """Most free cards on one node: the largest worker that could start now."""
    fragmentation_percent: int = Field(0, ge=0, le=100)
    """Share of free cards that cannot host a full-node worker."""
    fragmented_since: datetime | None = None
    """Since when fragmentation has been above spec.defragmentation.compactionThresholdPercent."""
    faults: FaultHistory | None = None
    """Node faults observed in the group."""


class Migration(ApiModel):
    """A job moved by defragmentation."""

    job: str
    """namespace/name of the moved job."""
    made_room_for: str = ""
    """namespace/name of the gang it made room for; empty for background compaction."""
    time: datetime
    """When the move started (the job was asked to save and stop)."""
    from_nodes: list[str] = Field(default_factory=list)
    """Nodes it left."""
    to_nodes: list[str] = Field(default_factory=list)
    """Nodes the plan found for it (the queue places it again; it may land elsewhere if the pool changed)."""
    lost_card_seconds: int = Field(0, ge=0)
    """Cards x seconds since its last checkpoint when it was moved: what the move could lose."""


class DefragmentationStatus(ApiModel):
    """What defragmentation is doing in this pool."""

    target: str | None = None
    """The gang the moves in flight make room for (namespace/name, or compaction/<group>)."""
    since: datetime | None = None
    """When those moves started."""
    fragmentation_before_percent: int | None = Field(None, ge=0, le=100)
    """The pool's fragmentation when they started."""
    fragmentation_after_percent: int | None = Field(None, ge=0, le=100)
    """The pool's fragmentation once the target started (the latest defragmentation)."""
    planned: list[str] = Field(default_factory=list)
    """Dry run: the moves that would be made now, as "<job> -> <nodes>"."""
    waiting: str = ""
    """Why a plan found is not being carried out (budget), if so."""
    migrations: list[Migration] = Field(default_factory=list, max_length=50)
    """Moves of the last hour (and at least the latest), oldest first."""


class HeldNode(ApiModel):
    """A faulty node whose drain waits for room under the group's drain cap."""

    node: str
    """The node's name."""
    reason: str
    """The fault, e.g. NodeNotReady, CardFault."""
    since: datetime
    """When the operator first held it."""


class Disruption(ApiModel):
    """More than half of the pool's nodes lost contact (Ready Unknown) at once: the control plane or the
    network failed, not the machines. Its nodes are held (no new workers, no restart, no drain) while it lasts
    and for spec.health.disruptionGraceSeconds after most of the pool reports again."""

    since: datetime
    """When the operator first saw it."""
    nodes: list[str] = Field(default_factory=list, max_length=20000, json_schema_extra={
        "x-kubernetes-list-type": "set"})
    """The pool's nodes still out of contact."""
    receding_since: datetime | None = None
    """When half of the pool or less was still out of contact: the rest are held until the grace after it."""


class CardPoolStatus(ApiModel):
    """Observed state of a CardPool."""

    observed_generation: int | None = Field(None, ge=0)
    """metadata.generation this status reflects."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    """Ready, Reconciling, Stalled."""
    groups: list[GroupStatus] = Field(default_factory=list, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})
    """Per group capacity."""
    group_count: int = Field(0, ge=0)
    """Number of node groups."""
    cards: int = Field(0, ge=0)
    """Card capacity of the pool."""
    free_cards: int = Field(0, ge=0)
    """Healthy unallocated cards."""
    unhealthy_cards: int = Field(0, ge=0)
    """Cards lost to faults and drains."""
    fragmentation_percent: int = Field(0, ge=0, le=100)
    """Share of the pool's free cards that cannot host a full-node worker."""
    defragmentation: DefragmentationStatus | None = None
    held_nodes: list[HeldNode] = Field(default_factory=list, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["node"]})
    """Faulty nodes not drained because their group is at spec.health.maxDrainedPercent. Written before the
    DrainCapReached event, so each hold is reported once, whichever replica runs and however often it restarts."""
    disruption: Disruption | None = None
    """A control-plane or network disruption in progress, remembered here so that its nodes stay held while
    they report again one by one, whichever replica runs the passes."""


class CardPool(ApiModel):
    """A pool of accelerator cards over heterogeneous node groups."""

    model_config = {"extra": "ignore"}

    api_version: Literal["cardpool.io/v1alpha1"] = API_VERSION
    kind: Literal["CardPool"] = "CardPool"
    metadata: ObjectMeta
    spec: CardPoolSpec
    status: CardPoolStatus | None = None
