"""Worker pods carry the user's scheduling intent and cardpool's: each of the template's required node affinity
terms ANDed with cardpool's pin to the placed node, the template's nodeSelector, preferred terms and
tolerations kept, the node group's tolerations added. Checked by core.constraints, which reads a pod spec as
the scheduler does: the built pod admits the placed node and only it."""

from __future__ import annotations

import copy

import pytest

from cardpool.api.cardpool import Toleration
from cardpool.core.constraints import from_template
from cardpool.core.plan import RankSlot
from cardpool.kube import builders

from .test_builders import POOL, observed

NODE = "a100-1"
LABELS = {"zone": "a", "nvidia.com/gpu.family": "ampere"}
PIN = {"key": "metadata.name", "operator": "In", "values": [NODE]}


def expr(key: str, op: str, *values: str) -> dict:
    return {"key": key, "operator": op, "values": list(values)} if values else {"key": key, "operator": op}


def required(*terms: dict) -> dict:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


PREFERRED = [{"weight": 10, "preference": {"matchExpressions": [expr("zone", "In", "a")]}}]
ANTI = {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone", "labelSelector": {}}]}


@pytest.mark.parametrize(("name", "affinity", "terms"), [
    ("no affinity: the pin is the only term", None, [{"matchFields": [PIN]}]),
    ("one term: the pin ANDed into it", required({"matchExpressions": [expr("zone", "In", "a")]}),
     [{"matchExpressions": [expr("zone", "In", "a")], "matchFields": [PIN]}]),
    ("several terms: each ANDed with the pin, still ORed",
     required({"matchExpressions": [expr("zone", "In", "b")]}, {"matchExpressions": [expr("zone", "In", "a")]}),
     [{"matchExpressions": [expr("zone", "In", "b")], "matchFields": [PIN]},
      {"matchExpressions": [expr("zone", "In", "a")], "matchFields": [PIN]}]),
    ("the user's matchFields kept after the pin",
     required({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["a100-0"]}]}),
     [{"matchFields": [PIN, {"key": "metadata.name", "operator": "NotIn", "values": ["a100-0"]}]}]),
    ("an empty term stays empty (it selects no node; with the pin it would select this one)",
     required({}, {"matchExpressions": [expr("zone", "Exists")]}),
     [{}, {"matchExpressions": [expr("zone", "Exists")], "matchFields": [PIN]}]),
    ("only preferred terms: kept, the pin required", {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": PREFERRED}}, [{"matchFields": [PIN]}]),
])
def test_the_pin_is_merged_into_the_users_required_affinity(name: str, affinity: dict | None,
                                                            terms: list[dict]) -> None:
    spec: dict = {"containers": [{"name": "t"}]} | ({"affinity": copy.deepcopy(affinity)} if affinity else {})
    builders.pin_to_node(spec, NODE)
    node_affinity = spec["affinity"]["nodeAffinity"]
    assert node_affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == terms
    if affinity and "preferredDuringSchedulingIgnoredDuringExecution" in affinity["nodeAffinity"]:
        assert node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] == PREFERRED
    # as the scheduler reads it: the placed node, and no other
    merged = from_template({"spec": spec})
    admitted_before = affinity is None or from_template({"spec": {"affinity": affinity}}).admits(NODE, LABELS)
    assert merged.admits(NODE, LABELS) is admitted_before
    assert not merged.admits("a100-2", LABELS)


def test_a_worker_pod_carries_the_users_intent_and_cardpools() -> None:
    job = observed("job-pytorch-homogeneous.yaml", workers=(("a100", "A100"),) * 2)
    template = job.spec.workers.template["spec"]
    template["nodeSelector"] = {"zone": "a"}
    template["affinity"] = required({"matchExpressions": [expr("nvidia.com/gpu.family", "In", "ampere")]},
                                    {"matchExpressions": [expr("nvidia.com/gpu.family", "In", "hopper")]}) | {
        "podAntiAffinity": ANTI}
    template["tolerations"] = [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]
    pool = POOL.model_copy(deep=True)
    pool.node_groups[1].tolerations = [Toleration(key="nvidia.com/gpu", operator="Exists")]
    pod = builders.worker_pod(job, "pool", pool, RankSlot(1, NODE, "a100", "A100"))["spec"]
    assert pod["nodeSelector"] == {"zone": "a"} and pod["affinity"]["podAntiAffinity"] == ANTI
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert [t["matchFields"] for t in terms] == [[PIN], [PIN]]
    assert [t["matchExpressions"][0]["values"] for t in terms] == [["ampere"], ["hopper"]]
    tolerations = [(t.get("key"), t.get("operator"), t.get("effect")) for t in pod["tolerations"]]
    assert tolerations[:2] == [("dedicated", "Exists", "NoSchedule"), ("nvidia.com/gpu", "Exists", None)]
    assert ("node.kubernetes.io/not-ready", "Exists", "NoExecute") in tolerations[2:]
    assert job.spec.workers.template["spec"]["tolerations"] == [  # the job's own spec is not touched
        {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]
