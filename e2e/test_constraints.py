"""The user's scheduling intent in the pod template, on the real local cluster (issue 14, class 3).

A template's nodeSelector, required node affinity and tolerations narrow the nodes placement may use: the
gang goes only where they let it, and its pods carry the user's affinity ANDed with cardpool's pin to the
chosen node, so kube-scheduler binds them there. A template no node of the job's models satisfies leaves the
job Stalled with NoNodeMatchesTemplate and a message naming the constraint, within seconds and with no pod,
instead of rolling back starts on GangStartTimeout without saying why."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from jobs import TORCH, get_job, make_pool, pods_of, stalled, submit, wait_phase
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for

VERDICT_S = 10  # the bound: a terminal condition within 10 s
TEMPLATE = "spec.workers.template.spec"
AMPERE = {"nvidia.com/gpu.family": "ampere"}  # the small fleet's 4 A100 nodes; the job prefers H800
RESEARCH = {"key": "cardpool.io/e2e-dedicated", "value": "research", "effect": "NoSchedule"}


@pytest.fixture
def pool(kube: Kube, quiet_operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace)


def bound_nodes(kube: Kube, namespace: str, job: str, workers: int) -> dict[str, dict[str, str]]:
    """Wait until the job's `workers` pods are bound; node name -> the node's labels."""
    def check() -> dict[str, dict[str, str]]:
        pods = pods_of(kube, namespace, job)
        nodes = [p.spec.node_name for p in pods if p.spec.node_name]
        if len(nodes) != workers:
            raise NotYet(f"{len(nodes)} of {workers} pods bound ({len(pods)} pods)")
        return {n: kube.core.read_node(n).metadata.labels for n in nodes}
    return wait_for(f"the {workers} pods of {namespace}/{job} to be bound", check, timeout=60)


def required(*expressions: dict) -> dict:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": list(expressions)}]}}}


@pytest.mark.parametrize(("name", "changes"), [
    pytest.param("by-affinity", {f"{TEMPLATE}.affinity": required(
        {"key": "nvidia.com/gpu.family", "operator": "In", "values": ["ampere"]},
        {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["80000"]})}, id="required-affinity"),
    pytest.param("by-selector", {f"{TEMPLATE}.nodeSelector": AMPERE}, id="node-selector"),
])
def test_a_template_that_narrows_to_one_group_places_only_there(kube: Kube, namespace: str, pool: str, name: str,
                                                               changes: dict) -> None:
    """The example prefers H800 (6 free nodes): narrowed to the A100s, the 4 workers all land on A100s."""
    job = submit(kube, namespace, pool, TORCH, **{"metadata.name": name}, **changes)
    status = wait_phase(kube, namespace, job, "Running")
    assert [(g["group"], len(g["nodes"])) for g in status["placement"]] == [("a100", 4)]
    nodes = bound_nodes(kube, namespace, job, 4)
    assert all(labels.get("nvidia.com/gpu.family") == "ampere" for labels in nodes.values()), nodes
    for pod in pods_of(kube, namespace, job):
        terms = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution \
            .node_selector_terms
        # cardpool's pin ANDed into the user's term, not in place of it
        assert [f.values for t in terms for f in t.match_fields] == [[pod.spec.node_name]]
        if "affinity" in name:
            assert [e.key for e in terms[0].match_expressions] == ["nvidia.com/gpu.family", "nvidia.com/gpu.memory"]
        else:
            assert pod.spec.node_selector == AMPERE


def test_a_node_selector_no_node_satisfies_stalls_the_job_with_the_reason_and_no_pod(
        kube: Kube, namespace: str, pool: str) -> None:
    job = submit(kube, namespace, pool, TORCH, **{f"{TEMPLATE}.nodeSelector": {"topology.kubernetes.io/zone": "mars"}})
    message = stalled(kube, namespace, job, "NoNodeMatchesTemplate", VERDICT_S)
    assert message == (f"{TEMPLATE}.nodeSelector {{topology.kubernetes.io/zone: mars}} matches none of the pool's "
                       f"10 H800/A100 nodes"), message
    status = get_job(kube, namespace, job)["status"]
    assert status["phase"] == "Queued" and status.get("attempt", 0) == 0 and not pods_of(kube, namespace, job)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NoNodeMatchesTemplate")


@pytest.fixture
def tainted_a100s(kube: Kube) -> Iterator[list[str]]:
    """The A100 nodes tainted cardpool.io/e2e-dedicated=research:NoSchedule, which the pool does not tolerate;
    the taint is removed afterwards."""
    nodes = [n.metadata.name for n in kube.core.list_node(label_selector="nvidia.com/gpu.family=ampere").items]
    assert nodes

    def set_taints(add: bool) -> None:
        for node in nodes:
            current = [t.to_dict() for t in kube.core.read_node(node).spec.taints or []]
            kept = [{k: v for k, v in t.items() if v is not None and k != "time_added"} for t in current
                    if t["key"] != RESEARCH["key"]]
            try:
                kube.core.patch_node(node, {"spec": {"taints": kept + ([RESEARCH] if add else [])}})
            except ApiException as exc:
                if exc.status != 404:
                    raise

    set_taints(True)
    try:
        yield nodes
    finally:
        set_taints(False)


def test_a_taint_the_template_does_not_tolerate_stalls_and_its_toleration_lets_the_gang_in(
        kube: Kube, namespace: str, pool: str, tainted_a100s: list[str]) -> None:
    job = submit(kube, namespace, pool, TORCH, **{"metadata.name": "untolerated", f"{TEMPLATE}.nodeSelector": AMPERE})
    message = stalled(kube, namespace, job, "NoNodeMatchesTemplate", VERDICT_S)
    assert "cardpool.io/e2e-dedicated=research:NoSchedule" in message and f"{TEMPLATE}.tolerations" in message, \
        message
    assert not pods_of(kube, namespace, job)
    kube.run("delete", "trainingjob.cardpool.io", job, "-n", namespace)
    job = submit(kube, namespace, pool, TORCH, **{"metadata.name": "tolerated", f"{TEMPLATE}.nodeSelector": AMPERE,
                                                  f"{TEMPLATE}.tolerations": [{**RESEARCH, "operator": "Equal"}]})
    wait_phase(kube, namespace, job, "Running")
    assert sorted(bound_nodes(kube, namespace, job, 4)) == sorted(tainted_a100s)
