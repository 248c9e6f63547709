"""API objects (dicts, as kopf and the client deliver them) -> the core's observed types."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cardpool.api.keys import LABEL_ATTEMPT, LABEL_JOB, LABEL_POOL, LABEL_RANK
from cardpool.api.trainingjob import TrainingJobSpec, TrainingJobStatus
from cardpool.core.observed import ObservedCheckpoint, ObservedJob, ObservedNode, ObservedPod

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
        taints=tuple((t["key"], t.get("effect", "")) for t in spec.get("taints") or []),
        unschedulable=bool(spec.get("unschedulable")))


def pod(body: Mapping[str, Any]) -> ObservedPod | None:
    """A worker pod of a job, or None for pods that do not carry cardpool's job labels."""
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})
    labels = meta.get("labels") or {}
    if LABEL_JOB not in labels or LABEL_RANK not in labels:
        return None
    node_name = spec.get("nodeName") or _affinity_node(spec)
    terminated = next((cs["state"]["terminated"] for cs in status.get("containerStatuses") or []
                       if (cs.get("state") or {}).get("terminated")), None)
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return ObservedPod(
        name=meta["name"], namespace=meta["namespace"], job=labels[LABEL_JOB],
        attempt=_count(labels.get(LABEL_ATTEMPT, 0)), rank=_count(labels[LABEL_RANK]), node=node_name,
        phase=status.get("phase") or "Pending", ready=ready, deleting=bool(meta.get("deletionTimestamp")),
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
    return ObservedCheckpoint(name=meta["name"], job=spec["job"], attempt=spec["attempt"], step=spec["step"],
                              uri=spec["uri"], world_size=spec["worldSize"], complete=bool(spec.get("complete")),
                              created=_time(meta.get("creationTimestamp")), verdict=accepted)


def job(body: Mapping[str, Any], pods: tuple[ObservedPod, ...] = (),
        checkpoints: tuple[ObservedCheckpoint, ...] = ()) -> ObservedJob:
    meta = body["metadata"]
    return ObservedJob(
        namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid", ""),
        generation=meta.get("generation") or 0, created=_time(meta.get("creationTimestamp")),
        spec=TrainingJobSpec.model_validate(body["spec"]),
        status=TrainingJobStatus.model_validate(body.get("status") or {}),
        pods=tuple(sorted(pods, key=lambda p: (p.attempt, p.rank))),
        resource_version=meta.get("resourceVersion", ""), checkpoints=tuple(checkpoints))
