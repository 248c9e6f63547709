"""`cardpool drain` and `undrain` as decisions on what the API returned: the node, and the pools that could
own it. Pure, so that every case is a row of a table test; main.py reads, writes and prints.

A drain asked again changes nothing (or only its reason), says so and exits 0: the drain the user wants is in
effect. A request nothing would act on is refused (exit 1) and says why: a drain request on a node no CardPool
selects would sit there unread (the operator drains only its pools' nodes), and an undrain with no drain
request to withdraw does nothing (the node is not drained, or the operator drained it itself for a fault and
returns it after its probation, or the return after an earlier undrain is already under way).
"""

from __future__ import annotations

from dataclasses import dataclass

from cardpool.api.cardpool import CardPoolSpec
from cardpool.api.keys import ANNOTATION_DRAIN, ANNOTATION_DRAIN_REQUEST
from cardpool.core.drain import REQUESTED, member_group
from cardpool.kube.observe import drain_record

DEFAULT_REASON = "requested with cardpool drain"


@dataclass(frozen=True)
class Outcome:
    message: str
    annotations: dict[str, str | None] | None = None
    """What to patch into the node's annotations (a None value removes one); None: nothing to write."""
    failed: bool = False


def _annotations(node: dict) -> dict[str, str]:
    return (node.get("metadata") or {}).get("annotations") or {}


def pools_selecting(node: dict, pools: list[dict]) -> list[str]:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return sorted(p["metadata"]["name"] for p in pools
                  if member_group(CardPoolSpec.model_validate(p["spec"]), labels) is not None)


def drain(node: dict, pools: list[dict], reason: str | None) -> Outcome:
    name = node["metadata"]["name"]
    requested = _annotations(node).get(ANNOTATION_DRAIN_REQUEST)
    if requested is not None:
        if reason is None or reason == requested:
            return Outcome(f"node {name}: drain already requested ({requested or 'no reason given'})")
        return Outcome(f"node {name}: drain already requested; reason now {reason!r} (was {requested!r})",
                       {ANNOTATION_DRAIN_REQUEST: reason})
    if not pools_selecting(node, pools):
        return Outcome(f"node {name} is in no CardPool: the operator drains only its pools' nodes, so nothing "
                       f"would act on the request (use kubectl drain for other nodes)", failed=True)
    return Outcome(f"node {name}: drain requested ({reason or DEFAULT_REASON}); the operator drains it and its "
                   f"jobs restart elsewhere", {ANNOTATION_DRAIN_REQUEST: reason or DEFAULT_REASON})


def undrain(node: dict) -> Outcome:
    name = node["metadata"]["name"]
    annotations = _annotations(node)
    if ANNOTATION_DRAIN_REQUEST in annotations:
        return Outcome(f"node {name}: drain request withdrawn; the operator returns the node",
                       {ANNOTATION_DRAIN_REQUEST: None})
    record = drain_record(annotations.get(ANNOTATION_DRAIN), name)
    if record is None:
        why = "the node is not drained"
    elif record.reason == REQUESTED:  # the request is gone, the operator's return of the node is under way
        why = "the operator is already returning the node"
    else:
        why = f"the operator drained it itself ({record.reason}) and returns it after its probation"
    return Outcome(f"node {name}: no drain request to withdraw; {why}", failed=True)
