"""TrainingJob: one parallel training job, placed as a gang of workers on a CardPool."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema

from .base import DNS_SUBDOMAIN, ApiModel, ObjectMeta, cel, rule
from .cardpool import MODEL_NAME
from .conditions import Condition
from .keys import API_VERSION
from .podtemplate import RESOURCE_QUANTITY, PodTemplate

DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
MAX_NAME_LENGTH = 40  # pods are <job>-a<attempt>-<rank>, and pod hostnames must stay within 63 characters
CHECKPOINT_URI = r"^[a-z][a-z0-9+.-]*://\S+$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"

QuantityMap = Annotated[dict[str, int | str], WithJsonSchema({
    "type": "object", "additionalProperties": {"x-kubernetes-int-or-string": True, "pattern": RESOURCE_QUANTITY,
                                               "anyOf": [{"type": "integer"}, {"type": "string"}]}})]


class Framework(StrEnum):
    PYTORCH = "PyTorch"
    DEEPSPEED = "DeepSpeed"
    MEGATRON = "Megatron"
    MINDSPORE = "MindSpore"
    PADDLE = "Paddle"
    GENERIC = "Generic"


class WorkerSize(ApiModel):
    """How many workers the job runs: any multiple of unit in [min, max]. Elastic when min < max."""

    model_config = {"json_schema_extra": cel(
        rule("self.min <= self.max", "spec.workers.size.min must be less than or equal to max"),
        rule("self.min % self.unit == 0 && self.max % self.unit == 0",
             "spec.workers.size.min and max must be multiples of unit", field_path=".unit"),
        rule("!has(self.desired) || (self.desired >= self.min && self.desired <= self.max)",
             "spec.workers.size.desired must be between min and max", field_path=".desired"),
        rule("!has(self.desired) || self.desired % self.unit == 0",
             "spec.workers.size.desired must be a multiple of unit", field_path=".desired"),
    )}

    min: int = Field(ge=1, le=100000)
    """Fewest workers the job may run with; below it the job waits."""
    max: int = Field(ge=1, le=100000)
    """Most workers the job runs with."""
    unit: int = Field(1, ge=1, le=1024)
    """Sizes are multiples of this (e.g. the data-parallel group size)."""
    desired: int | None = Field(None, ge=1, le=100000)
    """Target size within [min, max], set by `kubectl scale --replicas`; unset means max."""
    grow_after_seconds: int = Field(300, ge=0, le=86400)
    """A job running below its target size restarts larger (after a graceful save) once room for a larger
    size has stayed free this long, and no other job waits for those cards."""


class EnvVar(ApiModel):
    """An environment variable."""

    name: str = Field(pattern=ENV_NAME, max_length=256)
    """Variable name."""
    value: str = ""
    """Value."""


class AcceleratorResources(ApiModel):
    """Container resources for one accelerator family (cards are added by cardpool)."""

    limits: QuantityMap | None = None
    """Resource limits, e.g. cpu, memory, vendor resources besides the cards."""
    requests: QuantityMap | None = None
    """Resource requests."""


class AcceleratorOverride(ApiModel):
    """What changes in the trainer container when a worker runs on one accelerator model."""

    accelerator: str = Field(pattern=MODEL_NAME, max_length=63)
    """Accelerator model this override applies to; one of spec.placement.accelerators."""
    image: str | None = Field(None, min_length=1, max_length=1024)
    """Trainer image for this family (each vendor has its own software stack)."""
    env: list[EnvVar] = Field(default_factory=list, max_length=128, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})
    """Extra environment for this family."""
    resources: AcceleratorResources | None = None


class Workers(ApiModel):
    """The job's workers: each one pod holding cardsPerWorker cards of one accelerator model."""

    model_config = {"json_schema_extra": cel(rule(
        "!has(self.globalBatchSize) || self.globalBatchSize >= self.size.max",
        "spec.workers.globalBatchSize must be at least spec.workers.size.max: each rank needs one sample or more",
        field_path=".globalBatchSize"))}

    cards_per_worker: int = Field(ge=1, le=64)
    """Cards each worker holds, all on one node."""
    size: WorkerSize
    template: PodTemplate
    overrides: list[AcceleratorOverride] = Field(default_factory=list, max_length=16, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["accelerator"]})
    """Per accelerator model changes to the trainer container: image, env, resources."""
    global_batch_size: int | None = Field(None, ge=1, le=1 << 30)
    """Samples per step over all ranks, at least size.max. cardpool then suggests each rank's share,
    proportional to its cards' relative throughput, in whole samples that add up to this
    (CARDPOOL_BATCH_SHARE)."""


class PlacementMode(StrEnum):
    HOMOGENEOUS = "Homogeneous"
    MIXED = "Mixed"


class TopologyPacking(StrEnum):
    PREFERRED = "Preferred"
    REQUIRED = "Required"
    NONE = "None"


class Placement(ApiModel):
    """Where the workers may run."""

    model_config = {"json_schema_extra": cel(rule(
        "self.mode != 'Mixed' || size(self.accelerators) >= 2",
        "spec.placement.accelerators must list at least two models when mode is Mixed",
        field_path=".accelerators"))}

    accelerators: list[str] = Field(min_length=1, max_length=16, json_schema_extra={
        "x-kubernetes-list-type": "set", "items": {"type": "string", "pattern": MODEL_NAME, "maxLength": 63}})
    """Accelerator models the job can run on, most preferred first (e.g. [H800, A100])."""
    mode: PlacementMode = PlacementMode.HOMOGENEOUS
    """Homogeneous: every worker on the same model. Mixed: workers may span models, work split by throughput."""
    topology_packing: TopologyPacking = TopologyPacking.PREFERRED
    """Pack workers into as few topology blocks (rack, spine) as possible: Preferred, Required or None."""
    allow_migration: bool = True
    """Whether defragmentation may move this job (through a graceful checkpoint)."""


class Checkpointing(ApiModel):
    """Where the job checkpoints and how long a graceful save may take."""

    uri: str = Field(pattern=CHECKPOINT_URI, max_length=2048)
    """Checkpoint location, e.g. s3://bucket/run-1, file:///mnt/ckpt/run-1, pvc://claim/path."""
    graceful_save_seconds: int = Field(120, ge=0, le=3600)
    """Time a worker gets after SIGTERM to save and report a checkpoint before it is killed."""
    save_seconds: float | None = Field(None, ge=0, le=86400)
    """Expected seconds a save stops training, until the job's Checkpoints report their own (saveSeconds):
    with it the first attempt is already given the advised checkpoint interval (status.checkpointAdvice)."""


class FailureAction(StrEnum):
    RESTART = "Restart"
    RESTART_IGNORING_BUDGET = "RestartIgnoringBudget"
    FAIL = "Fail"


class ExitCodeOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"


class OnExitCodes(ApiModel):
    """Matches a worker whose trainer container exited with one of these codes (or any but these)."""

    model_config = {"json_schema_extra": cel(rule(
        "self.operator == 'NotIn' || !(0 in self.values)",
        "onExitCodes.values must not contain 0 with operator In: exit code 0 is success",
        field_path=".values"))}

    operator: ExitCodeOperator
    """In or NotIn."""
    values: list[int] = Field(min_length=1, max_length=64, json_schema_extra={
        "x-kubernetes-list-type": "set", "items": {"type": "integer", "minimum": 0, "maximum": 255}})
    """Exit codes, 0 to 255."""


class FailureRule(ApiModel):
    """What to do when a failure matches; rules are tried in order and the first match wins."""

    model_config = {"json_schema_extra": cel(rule(
        "has(self.onExitCodes) || has(self.onReasons) || has(self.onPodConditions) || has(self.onNodeFault)",
        "spec.failurePolicy.rules[] must set at least one of onExitCodes, onReasons, onPodConditions, onNodeFault"))}

    action: FailureAction
    """Restart (counts against maxRestarts), RestartIgnoringBudget, or Fail the job."""
    on_exit_codes: OnExitCodes | None = None
    """Match on the trainer's exit code."""
    on_reasons: list[str] | None = Field(None, min_length=1, max_length=16, json_schema_extra={
        "x-kubernetes-list-type": "set"})
    """Match on the failure's reason: the container's termination reason (OOMKilled, Error, ...) or a fault
    cardpool found: NodeNotReady, NodeUnknown, NodeCondition, NodeTaint, CardFault, NodeMissing, PodLost,
    Hang."""
    on_pod_conditions: list[str] | None = Field(None, min_length=1, max_length=16, json_schema_extra={
        "x-kubernetes-list-type": "set"})
    """Match on a True pod condition, e.g. DisruptionTarget."""
    on_node_fault: bool | None = None
    """Match when the worker's node was found faulty."""


class FailurePolicy(ApiModel):
    """How failures are handled: rules, a restart budget, hang detection."""

    max_restarts: int = Field(10, ge=0, le=1000)
    """Restarts counted against the budget before the job fails. Kept in status: deleting pods never resets it."""
    rules: list[FailureRule] = Field(default_factory=list, max_length=32)
    """Ordered rules; without a match, a failure restarts the job and counts."""
    progress_timeout_seconds: int | None = Field(None, ge=10, le=604800)
    """Restart the job when rank 0 reports no progress for this long (hang detection); unset disables it.
    The clock starts when all workers of the attempt run and restarts with each report; keep it well above
    the trainer's reporting interval (CARDPOOL_PROGRESS_INTERVAL_SECONDS, 30 s by default)."""
    backoff_seconds: int = Field(10, ge=0, le=3600)
    """Delay before the second counted restart in a row; it doubles with each further one, up to 10 minutes.
    The first restart after a failure, and restarts that do not count, are immediate; an attempt that ran 10
    minutes or more before it failed starts a new row (as the kubelet resets a container's backoff)."""


class TrainingJobSpec(ApiModel):
    """Desired state of a TrainingJob."""

    model_config = {"json_schema_extra": cel(
        rule("!has(self.workers.overrides) || self.workers.overrides.all(o, o.accelerator in "
             "self.placement.accelerators)",
             "spec.workers.overrides[].accelerator must be one of spec.placement.accelerators",
             field_path=".workers.overrides"),
        rule("size(self.workers.template.spec.containers) == 0 || "
             "has(self.workers.template.spec.containers[0].image) || self.placement.accelerators.all(m, "
             "has(self.workers.overrides) && self.workers.overrides.exists(o, o.accelerator == m && has(o.image)))",
             "spec.workers.template.spec.containers[0].image (the trainer's) must be set unless "
             "spec.workers.overrides[] gives an image for every accelerator of spec.placement.accelerators",
             field_path=".workers.template.spec.containers"),
        rule("!has(self.checkpoint) || !has(self.workers.template.spec.terminationGracePeriodSeconds) || "
             "self.workers.template.spec.terminationGracePeriodSeconds >= self.checkpoint.gracefulSaveSeconds",
             "spec.workers.template.spec.terminationGracePeriodSeconds must be at least "
             "spec.checkpoint.gracefulSaveSeconds, or a graceful save cannot finish",
             field_path=".workers.template.spec.terminationGracePeriodSeconds"),
        # cards held by a job are counted in its pool and by its size: changing either under a running job
        # would break that accounting
        rule("self.pool == oldSelf.pool", "spec.pool is immutable: delete and recreate the job to move it",
             field_path=".pool"),
        rule("self.workers.cardsPerWorker == oldSelf.workers.cardsPerWorker",
             "spec.workers.cardsPerWorker is immutable: delete and recreate the job to change it",
             field_path=".workers.cardsPerWorker"),
    )}

    pool: str = Field(pattern=DNS_SUBDOMAIN, max_length=253)
    """Name of the CardPool the job runs on."""
    framework: Framework = Framework.GENERIC
    """PyTorch, DeepSpeed, Megatron, MindSpore, Paddle or Generic: decides the framework env contract."""
    workers: Workers
    placement: Placement
    checkpoint: Checkpointing | None = None
    failure_policy: FailurePolicy = Field(default_factory=FailurePolicy)
    queue: str | None = Field(None, pattern=DNS_SUBDOMAIN, max_length=253)
    """The TenantQueue whose quota the job uses; unset: the queue its namespace maps to, if any (jobs in no
    queue are not limited by quotas)."""
    priority: int = Field(0, ge=-1000, le=1000)
    """Queue priority; higher first, then submission order."""
    suspend: bool = False
    """Stop the workers gracefully (checkpoint first) and keep the job; false resumes it."""
    startup_timeout_seconds: int = Field(600, ge=30, le=86400)
    """A gang not fully running within this time is rolled back and requeued."""
    ttl_seconds_after_finished: int | None = Field(None, ge=0, le=31536000)
    """Delete the job this long after it succeeded or failed; unset keeps it."""


class Phase(StrEnum):
    QUEUED = "Queued"
    STARTING = "Starting"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class GroupPlacement(ApiModel):
    """Workers placed on one node group."""

    group: str
    """Node group name."""
    accelerator: str
    """Accelerator model of the group."""
    workers: int = Field(ge=0)
    """Workers on the group."""
    first_rank: int = Field(0, ge=0)
    """Rank of the group's first worker; its workers have consecutive ranks."""
    nodes: list[str] = Field(default_factory=list)
    """Nodes used, in rank order."""
    relative_throughput: float = Field(1.0, gt=0)
    """Relative throughput of the group's cards."""
    batch_share: int | None = Field(None, ge=0)
    """Samples of the global batch its ranks take together (when spec.workers.globalBatchSize is set)."""


class RestartCounts(ApiModel):
    """Restarts so far."""

    counted: int = Field(0, ge=0)
    """Restarts that count against spec.failurePolicy.maxRestarts."""
    uncounted: int = Field(0, ge=0)
    """Restarts that do not count: RestartIgnoringBudget rules, node faults, planned disruptions."""
    scaling: int = Field(0, ge=0)
    """Restarts to change size (elastic shrink or grow)."""


class CheckpointRecord(ApiModel):
    """The newest complete checkpoint."""

    step: int = Field(ge=0)
    """Training step."""
    uri: str
    """Location."""
    time: datetime
    """When it was reported complete."""
    world_size: int = Field(ge=1)
    """Cards the job had when it was saved."""
    attempt: int = Field(0, ge=0)
    """Attempt that saved it."""
    name: str | None = None
    """The Checkpoint object."""
    save_seconds: float | None = Field(None, ge=0)
    """Seconds the save stopped training, as reported (spec.saveSeconds of the Checkpoint)."""


class CheckpointAdvice(ApiModel):
    """How often the job should save: the Young/Daly interval sqrt(2 x MTBF x save time), for the MTBF of the
    nodes it runs on (from their groups' observed faults, CardPool status.groups[].faults) and its reported
    save time. Given to each new attempt as CARDPOOL_CHECKPOINT_INTERVAL_SECONDS."""

    interval_seconds: int = Field(ge=1)
    """Seconds of training between saves."""
    mtbf_seconds: int = Field(ge=1)
    """Expected seconds between faults of the job's nodes."""
    save_seconds: float = Field(ge=0)
    """The save time the advice is for (the latest checkpoint's)."""
    nodes: int = Field(ge=0)
    """Nodes the job's current attempt runs on."""
    faults: int = Field(ge=0)
    """Faults observed in the groups of those nodes behind the estimate (0: the published prior alone)."""


class Progress(ApiModel):
    """The latest progress report of rank 0."""

    attempt: int = Field(0, ge=0)
    """Attempt that reported it."""
    step: int = Field(ge=0)
    """Current step."""
    total_steps: int | None = Field(None, ge=1)
    """Planned steps, if known."""
    time: datetime
    """When it was reported."""


class FailureRecord(ApiModel):
    """The latest failure."""

    time: datetime
    """When it was observed."""
    attempt: int = Field(ge=0)
    """Attempt that failed."""
    reason: str
    """CamelCase cause, e.g. NodeNotReady, ExitCode137, Hang."""
    message: str = ""
    """Details."""


class AttemptRecord(ApiModel):
    """One attempt of the job: its size, where it resumed from, and why it ended."""

    attempt: int = Field(ge=1)
    """Attempt number."""
    workers: int = Field(ge=0)
    """Workers it ran with."""
    accelerator: str = ""
    """Accelerator model(s), e.g. H800 or H800+Ascend910B."""
    resumed_from_step: int | None = Field(None, ge=0)
    """Checkpoint step it resumed from; unset when it started fresh."""
    start_time: datetime
    """When its pods were created."""
    running_time: datetime | None = None
    """When all its workers were running (hang detection counts from here)."""
    end_time: datetime | None = None
    """When it ended; unset while it runs."""
    end_reason: str | None = None
    """Why it ended, e.g. NodeNotReady, ExitCode137, Hang, GrowTo4, Succeeded."""
    planned: bool = False
    """Ended by cardpool on purpose (to grow): the next attempt waits for the graceful save it asked for."""
    checkpoint_interval_seconds: int | None = Field(None, ge=1)
    """The checkpoint interval it was given (CARDPOOL_CHECKPOINT_INTERVAL_SECONDS); unset when no save time
    was reported yet."""


class TrainingJobStatus(ApiModel):
    """Observed state of a TrainingJob."""

    observed_generation: int | None = Field(None, ge=0)
    """metadata.generation this status reflects."""
    phase: Phase | None = None
    """Queued, Starting, Running, Restarting, Suspended, Succeeded or Failed."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    """Ready, Reconciling, Stalled, Suspended (kstatus compatible)."""
    attempt: int = Field(0, ge=0)
    """Restart generation: pods of attempt N are named <job>-a<N>-<rank>."""
    workers: int = Field(0, ge=0)
    """Workers of the current attempt (the scale subresource's replicas)."""
    desired_workers: int = Field(0, ge=0)
    """Size the job is working toward."""
    size: str = ""
    """current/desired workers, for kubectl get."""
    world_size: int = Field(0, ge=0)
    """Cards of the current attempt (workers x cardsPerWorker)."""
    selector: str = ""
    """Label selector of the job's pods (for the scale subresource)."""
    accelerator: str = ""
    """Accelerator model(s) in use, e.g. H800 or H800+Ascend910B."""
    placement: list[GroupPlacement] = Field(default_factory=list)
    """Workers per node group."""
    restarts: RestartCounts = Field(default_factory=RestartCounts)
    last_checkpoint: CheckpointRecord | None = None
    checkpoint_advice: CheckpointAdvice | None = None
    """How often to save, refreshed as faults and saves are seen (when it moves by more than a tenth)."""
    progress: Progress | None = None
    last_failure: FailureRecord | None = None
    attempt_start_time: datetime | None = None
    """When the current attempt's pods were created."""
    template_hash: str | None = None
    """Hash of the spec fields that shaped the current attempt's pods (template, overrides, framework,
    checkpointing, batch size): a live attempt whose hash differs from the spec's restarts to take the change."""
    not_before: datetime | None = None
    """The job is not placed again before this time (backoff after repeated failures or a gang that did not
    start)."""
    larger_size_since: datetime | None = None
    """Since when room for a larger size has been free (growth waits spec.workers.size.growAfterSeconds)."""
    history: list[AttemptRecord] = Field(default_factory=list, max_length=20)
    """The latest attempts, oldest first (at most 20)."""
    failure_streak: int = Field(0, ge=0)
    """Counted failures in a row of attempts that each ran (all workers running) less than 10 minutes: the
    restart backoff doubles with it (spec.failurePolicy.backoffSeconds)."""
    start_timeouts: int = Field(0, ge=0)
    """Gangs of this job rolled back for not starting within spec.startupTimeoutSeconds."""
    start_time: datetime | None = None
    """When the first attempt started running."""
    completion_time: datetime | None = None
    """When the job succeeded or failed."""


class TrainingJob(ApiModel):
    """A parallel training job placed as a gang on a CardPool."""

    model_config = {"extra": "ignore"}

    api_version: Literal["cardpool.io/v1alpha1"] = API_VERSION
    kind: Literal["TrainingJob"] = "TrainingJob"
    metadata: ObjectMeta
    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None


ROOT_RULES = [
    rule(f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
         f"metadata.name must be at most {MAX_NAME_LENGTH} characters: pod names and hostnames are derived from it"),
    # the name is the job's headless Service and the pods' subdomain: a DNS-1035 label, no dots
    rule(f"self.metadata.name.matches('{DNS_1035_LABEL}')",
         "metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, no "
         "dots): it names the job's headless Service"),
]
