"""API objects (dicts, as kopf and the client deliver them) -> the core's observed types."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cardpool.api.keys import (
    ANNOTATION_DRAIN,
    ANNOTATION_DRAIN_REQUEST,
    ANNOTATION_PROGRESS,
    GROUP,
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_MANAGED_BY,
    LABEL_POOL,
    LABEL_RANK,
    MANAGED_BY,
)
from cardpool.api.trainingjob import TrainingJobSpec, TrainingJobStatus
from cardpool.core.attempts import pod_shape
from cardpool.core.drain import PodOnNode
from cardpool.core.observed import (
    DrainRecord,
    ObservedBudget,
    ObservedCheckpoint,
    ObservedJob,
    ObservedNode,
    ObservedPod,
    ObservedProgress,
)

log = logging.getLogger("cardpool.observe")

BASIC_RESOURCES = {"cpu", "memory", "pods", "ephemeral-storage"}


def _count(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def node(body: Mapping[str, Any]) -> ObservedNode:
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})

    def cards(resources: Mapping[str, Any] | None) -> dict[str, int]:
        return {k: _count(v) for k, v in (resources or {}).items() if k not in BASIC_RESOURCES and "/" in k}

    return ObservedNode(
        name=meta["name"], labels=dict(meta.get("labels") or {}),
        capacity=cards(status.get("capacity")), allocatable=cards(status.get("allocatable")),
        conditions={c["type"]: c["status"] for c in status.get("conditions") or []},
        taints=tuple((t["key"], t.get("effect", ""), t.get("value") or "") for t in spec.get("taints") or []),
        unschedulable=bool(spec.get("unschedulable")),
        drain=drain_record((meta.get("annotations") or {}).get(ANNOTATION_DRAIN), meta["name"]),
        drain_requested=(meta.get("annotations") or {}).get(ANNOTATION_DRAIN_REQUEST))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _stamp(value: object) -> datetime:
    """An RFC 3339 time written by someone else: a string, UTC when it names no zone."""
    if not isinstance(value, str):
        raise TypeError(f"not a time: {value!r}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def drain_record(text: str | None, node_name: str = "") -> DrainRecord | None:
    if not text:
        return None
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise TypeError(f"not an object: {raw!r}")
        return DrainRecord(reason=str(raw["reason"]), since=_stamp(raw["since"]), cordoned=bool(raw["cordoned"]),
                           healthy_since=_stamp(raw["healthySince"]) if raw.get("healthySince") else None,
                           others_evicted=bool(raw.get("othersEvicted")))
    except (ValueError, KeyError, TypeError) as exc:
        # a hand-edited record: a drain of unknown cause, so the node still goes through probation; the same
        # text always reads as the same record, so decisions made on it stay valid
        log.warning("node %s: unreadable %s annotation (%s); treating it as a drain of unknown cause", node_name,
                    ANNOTATION_DRAIN, exc)
        return DrainRecord(reason="Unknown", since=_EPOCH, cordoned=False)


def drain_annotation(record: DrainRecord) -> str:
    def stamp(t: datetime | None) -> str | None:
        return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if t else None

    return json.dumps({"reason": record.reason, "since": stamp(record.since), "cordoned": record.cordoned,
                       "healthySince": stamp(record.healthy_since), "othersEvicted": record.others_evicted},
                      separators=(",", ":"))


def progress(text: str | None) -> ObservedProgress | None:
    """rank 0's report ({"step", "totalSteps", "time"}); an unreadable one is ignored (the trainer's bug, and
    hang detection then acts as if nothing had been reported)."""
    if not text:
        return None
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            return None
        total = raw.get("totalSteps")
        return ObservedProgress(int(raw["step"]), int(total) if total else None, _stamp(raw["time"]))
    except (ValueError, KeyError, TypeError):
        return None


def budget(body: Mapping[str, Any]) -> ObservedBudget:
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    selector = spec.get("selector") or {}
    return ObservedBudget(
        namespace=meta["namespace"], match_labels=dict(selector.get("matchLabels") or {}),
        match_expressions=tuple((e["key"], e["operator"], tuple(e.get("values") or ()))
                                for e in selector.get("matchExpressions") or []),
        disruptions_allowed=int(status.get("disruptionsAllowed") or 0))


def pod_on_node(body: Mapping[str, Any]) -> PodOnNode:
    meta, status = body.get("metadata", {}), body.get("status", {})
    return PodOnNode(
        name=meta["name"], namespace=meta["namespace"],
        owner_kinds=tuple(o.get("kind", "") for o in meta.get("ownerReferences") or []),
        mirror="kubernetes.io/config.mirror" in (meta.get("annotations") or {}),
        cardpool=(meta.get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY,
        deleting=bool(meta.get("deletionTimestamp")), phase=status.get("phase") or "Pending")


def pod(body: Mapping[str, Any]) -> ObservedPod | None:
    """A worker pod of a job, or None for pods that do not carry cardpool's job labels."""
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})
    labels = meta.get("labels") or {}
    if LABEL_JOB not in labels or LABEL_RANK not in labels:
        return None
    node_name = spec.get("nodeName") or _affinity_node(spec)
    terminated = next((cs["state"]["terminated"] for cs in status.get("containerStatuses") or []
                       if (cs.get("state") or {}).get("terminated")), None)
    true = frozenset(c.get("type", "") for c in status.get("conditions") or [] if c.get("status") == "True")
    deleted = meta.get("deletionTimestamp")
    return ObservedPod(
        name=meta["name"], namespace=meta["namespace"], job=labels[LABEL_JOB],
        attempt=_count(labels.get(LABEL_ATTEMPT, 0)), rank=_count(labels[LABEL_RANK]), node=node_name,
        phase=status.get("phase") or "Pending", ready="Ready" in true, deleting=bool(deleted),
        deleting_since=(_time(deleted) - timedelta(seconds=meta.get("deletionGracePeriodSeconds") or 0))
        if deleted else None,
        finished_at=_time(terminated["finishedAt"]) if terminated and terminated.get("finishedAt") else None,
        conditions=true, progress=progress((meta.get("annotations") or {}).get(ANNOTATION_PROGRESS)),
        labels=tuple(sorted(labels.items())),
        exit_code=terminated.get("exitCode") if terminated else None,
        reason=terminated.get("reason") if terminated else None,
        cards=sum(_count(v) for c in spec.get("containers") or []
                  for k, v in ((c.get("resources") or {}).get("requests") or {}).items()
                  if k not in BASIC_RESOURCES and "/" in k),
        pool=labels.get(LABEL_POOL))


def _affinity_node(spec: Mapping[str, Any]) -> str | None:
    terms = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    for term in terms:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return field["values"][0]
    return None


def _time(value: str | None) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else datetime.now(UTC)


def checkpoint(body: Mapping[str, Any]) -> ObservedCheckpoint:
    meta, spec = body["metadata"], body["spec"]
    accepted = next((c.get("status") for c in (body.get("status") or {}).get("conditions") or []
                     if c.get("type") == "Accepted"), None)
    owner = next((o.get("uid") or "" for o in meta.get("ownerReferences") or []
                  if o.get("kind") == "TrainingJob" and (o.get("apiVersion") or "").split("/")[0] == GROUP
                  and o.get("name") == spec["job"]), "")
    return ObservedCheckpoint(name=meta["name"], job=spec["job"], attempt=spec["attempt"], step=spec["step"],
                              uri=spec["uri"], world_size=spec["worldSize"], complete=bool(spec.get("complete")),
                              created=_time(meta.get("creationTimestamp")), verdict=accepted, owner_uid=owner,
                              save_seconds=spec.get("saveSeconds"))


def job(body: Mapping[str, Any], pods: tuple[ObservedPod, ...] = (),
        checkpoints: tuple[ObservedCheckpoint, ...] = ()) -> ObservedJob:
    meta = body["metadata"]
    spec = TrainingJobSpec.model_validate(body["spec"])
    return ObservedJob(
        namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid", ""),
        generation=meta.get("generation") or 0, created=_time(meta.get("creationTimestamp")),
        spec=spec, shape=pod_shape(spec),
        status=TrainingJobStatus.model_validate(body.get("status") or {}),
        pods=tuple(sorted(pods, key=lambda p: (p.attempt, p.rank))),
        resource_version=meta.get("resourceVersion", ""), checkpoints=tuple(checkpoints))


# Pods cardpool does not manage that may hold cards: bound, not ended. Filtered by the API server, so the
# operator neither receives nor keeps the cluster's other pods (a `!=` label selector also matches pods
# without the label).
FOREIGN_POD_SELECTORS = (f"{LABEL_MANAGED_BY}!={MANAGED_BY}",
                         "status.phase!=Succeeded,status.phase!=Failed,spec.nodeName!=")


@dataclass(frozen=True, slots=True)
class ForeignPod:
    """Cards held by a pod cardpool does not manage (an inference server, a notebook, another operator's job)."""

    node: str
    cards: tuple[tuple[str, int], ...]
    """(extended resource, count) pairs, sorted by resource."""


def _is_card(resource: str) -> bool:
    # Kubernetes' own rule for extended resources: qualified names outside the kubernetes.io domain
    return ("/" in resource and resource not in BASIC_RESOURCES and not resource.startswith("hugepages-")
            and "kubernetes.io/" not in resource)


def _requests(container: Mapping[str, Any]) -> dict[str, int]:
    requests = (container.get("resources") or {}).get("requests") or {}
    return {k: _count(v) for k, v in requests.items() if _is_card(k)}


def _effective_requests(spec: Mapping[str, Any]) -> dict[str, int]:
    """The scheduler's view of what a pod holds: the larger of its containers' sum and the peak during init
    (init containers run one at a time, each beside the sidecars started before it), plus the pod overhead."""
    sidecars: dict[str, int] = {}
    peak: dict[str, int] = {}
    for container in spec.get("initContainers") or []:
        need = _requests(container)
        if container.get("restartPolicy") == "Always":  # a sidecar keeps running beside everything after it
            for k, v in need.items():
                sidecars[k] = sidecars.get(k, 0) + v
            need = {}
        for k in need.keys() | sidecars.keys():
            peak[k] = max(peak.get(k, 0), need.get(k, 0) + sidecars.get(k, 0))
    total = dict(sidecars)
    for container in spec.get("containers") or []:
        for k, v in _requests(container).items():
            total[k] = total.get(k, 0) + v
    overhead = {k: _count(v) for k, v in (spec.get("overhead") or {}).items() if _is_card(k)}
    return {k: max(total.get(k, 0), peak.get(k, 0)) + overhead.get(k, 0)
            for k in total.keys() | peak.keys() | overhead.keys()}


def foreign_pod(body: Mapping[str, Any]) -> ForeignPod | None:
    """The cards a pod holds on its node, or None when it holds none: not bound, ended, requesting no
    extended resource, or cardpool's own (those count as its jobs' cards, never twice)."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    node_name = spec.get("nodeName")
    if not node_name or status.get("phase") in ("Succeeded", "Failed"):
        return None
    if (meta.get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY:
        return None
    cards = tuple(sorted((k, v) for k, v in _effective_requests(spec).items() if v > 0))
    return ForeignPod(node_name, cards) if cards else None


def foreign_usage(pods: Iterable[ForeignPod]) -> dict[str, dict[str, int]]:
    """node -> extended resource -> cards held by pods cardpool does not manage."""
    usage: dict[str, dict[str, int]] = {}
    for p in pods:
        held = usage.setdefault(p.node, {})
        for resource, count in p.cards:
            held[resource] = held.get(resource, 0) + count
    return usage
