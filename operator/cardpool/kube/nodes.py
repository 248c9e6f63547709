"""Carry out a drain plan on the nodes: cordon and taint, evict the other pods, keep the drain record, undo it
all after probation. Every write names the node's resourceVersion, so a change made meanwhile (the node
controller's taints, an admin's cordon) is never overwritten: the write fails with 409 and the next pass
decides again. Safe to repeat."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cardpool.api.keys import ANNOTATION_DRAIN, TAINT_DRAIN
from cardpool.core.drain import NodeAction, NodeEvent, eviction_decisions
from cardpool.core.observed import DrainRecord

from . import effects, observe
from .client import Kube

log = logging.getLogger("cardpool.nodes")


def apply_action(kube: Kube, action: NodeAction, decided_on: DrainRecord | None, events: list[NodeEvent],
                 now: datetime) -> bool:
    """One node's drain action, then its events (only if the node was changed: a stale view or a failed write
    is decided again by the next pass, which says so then). Returns whether the node was changed."""
    try:
        changed = _apply(kube, action, decided_on)
    except ApiException as exc:
        if exc.status in (404, 409):  # gone, or changed since observed (the node controller's taints)
            return False
        raise
    if changed:
        for event in events:
            post_node_event(kube, event.node, event.pool, event.type, event.reason, event.message, now)
    return changed


def finish_eviction(kube: Kube, node: str, record: DrainRecord) -> bool:
    """Evict a drained node's other pods; once none is left, the drain record says so. True when done."""
    try:
        if evict_others(kube, node):
            _update_record(kube, node, record, replace(record, others_evicted=True))
            return True
    except ApiException as exc:
        if exc.status not in (404, 409):
            raise
    return False


def _update_record(kube: Kube, node: str, seen: DrainRecord, record: DrainRecord) -> None:
    """Replace the drain record, only if it is still the one seen."""
    current = kube.call(kube.core.read_node, node)
    if observe.drain_record((current.metadata.annotations or {}).get(ANNOTATION_DRAIN), node) != seen:
        return
    kube.call(kube.core.patch_node, node, {"metadata": {
        "resourceVersion": current.metadata.resource_version,
        "annotations": {ANNOTATION_DRAIN: observe.drain_annotation(record)}}})


def _apply(kube: Kube, action: NodeAction, decided_on: DrainRecord | None) -> bool:
    """`decided_on`: the drain record the decision saw; if the node now holds another one, the decision was
    made on a stale view and the next pass decides again. Returns whether the node was changed."""
    current = kube.call(kube.core.read_node, action.node)
    if observe.drain_record((current.metadata.annotations or {}).get(ANNOTATION_DRAIN), action.node) != decided_on:
        return False
    taints = [t.to_dict() for t in current.spec.taints or []]
    mine = [t for t in taints if t["key"] == TAINT_DRAIN]
    others = [_wire(t) for t in taints if t["key"] != TAINT_DRAIN]
    meta: dict[str, Any] = {"resourceVersion": current.metadata.resource_version}
    if action.kind == "Return":
        annotation = observe.drain_record((current.metadata.annotations or {}).get(ANNOTATION_DRAIN))
        spec: dict[str, Any] = {"taints": others or None}
        if annotation is not None and annotation.cordoned:
            spec["unschedulable"] = None
        body = {"metadata": {**meta, "annotations": {ANNOTATION_DRAIN: None}}, "spec": spec}
        log.info("returning node %s: %s", action.node, action.message)
    else:
        assert action.record is not None
        body = {"metadata": {**meta, "annotations": {ANNOTATION_DRAIN: observe.drain_annotation(action.record)}}}
        if action.kind == "Drain" or not mine:  # the taint is put back if someone removed it
            body["spec"] = {"taints": [*others, {"key": TAINT_DRAIN, "value": action.record.reason,
                                                 "effect": "NoSchedule"}]}
            if action.kind == "Drain" and action.record.cordoned:
                body["spec"]["unschedulable"] = True
        log.info("%s node %s: %s", "draining" if action.kind == "Drain" else "updating the drain of", action.node,
                 action.message)
    kube.call(kube.core.patch_node, action.node, body)
    return True


def _wire(taint: dict) -> dict:
    out = {"key": taint["key"], "effect": taint["effect"]}
    if taint.get("value") is not None:
        out["value"] = taint["value"]
    if taint.get("time_added") is not None:
        out["timeAdded"] = taint["time_added"].isoformat().replace("+00:00", "Z")
    return out


def evict_others(kube: Kube, node: str) -> bool:
    """Evict the node's pods that a drain removes; True when none is left to evict. A PodDisruptionBudget that
    forbids an eviction now (429) is honoured: the pod stays and the next pass asks again."""
    pods = kube.call(kube.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}").items
    done = True
    for decision in eviction_decisions([observe.pod_on_node(kube.api.sanitize_for_serialization(p)) for p in pods]):
        if not decision.evict:
            continue
        pod = decision.pod
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod.name, namespace=pod.namespace))
        try:
            # one try, not kube.call: a 429 here is a PodDisruptionBudget's refusal, not an overloaded server,
            # and retrying would wait it out inside the pass
            kube.attempt(kube.core.create_namespaced_pod_eviction, pod.name, pod.namespace, body)
            log.info("evicted pod %s/%s from node %s", pod.namespace, pod.name, node)
        except ApiException as exc:
            if exc.status == 404:
                continue
            if exc.status == 429:
                log.info("eviction of %s/%s waits for its PodDisruptionBudget", pod.namespace, pod.name)
            else:
                raise
        done = False  # evicted pods are gone only once the next look shows it
    return done


def post_node_event(kube: Kube, node: str, pool: str, type_: str, reason: str, message: str, now: datetime) -> None:
    """An event on the node, or on the pool when `pool` is set."""
    if pool:
        effects.post_pool_event(kube, pool, type_, reason, message, now)
        return
    involved = {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node}  # kubelet's node uid
    effects.post(kube, "default", involved, type_, reason, message, now)
