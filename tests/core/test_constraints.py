"""The template's scheduling constraints as kube-scheduler's NodeAffinity filter reads them: each row is a pod
spec fragment, a node, and whether the scheduler lets the pod onto it (k8s.io/component-helpers
scheduling/corev1/nodeaffinity and apimachinery labels.Requirement, v0.36; for tolerations, core/v1
Toleration.ToleratesTaint and the TaintToleration filter). Then the pool pass: placement avoids the nodes a
template does not admit, and a job no node admits waits Stalled with NoNodeMatchesTemplate saying why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from cardpool.api.cardpool import CardPoolSpec
from cardpool.api.cardpool import Toleration as GroupToleration
from cardpool.api.trainingjob import Phase, TrainingJobSpec, TrainingJobStatus
from cardpool.core.constraints import ANY, Taint, Toleration, blocking, from_template, tolerations
from cardpool.core.observed import ObservedJob, ObservedNode
from cardpool.core.pool import reconcile_pool

from ..examples import EXAMPLES

NODE = "h800-3"
LABELS = {"zone": "a", "nvidia.com/gpu.family": "hopper", "nvidia.com/gpu.memory": "81559", "tier": "",
          "odd": "12abc", "huge": "99999999999999999999"}


def expr(key: str, op: str, *values: str) -> dict:
    return {"key": key, "operator": op, "values": list(values)} if values else {"key": key, "operator": op}


def name(op: str, *values: str) -> dict:
    return {"key": "metadata.name", "operator": op, "values": list(values)}


def required(*terms: dict) -> dict:
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}}


def term(*exprs: dict, fields: tuple[dict, ...] = ()) -> dict:
    out: dict = {"matchExpressions": list(exprs)} if exprs else {}
    return out | ({"matchFields": list(fields)} if fields else {})


@dataclass(frozen=True)
class Case:
    name: str
    spec: dict
    admits: bool
    labels: dict | None = None


CASES = [
    # ---- nodeSelector: every key present with exactly that value
    Case("no constraint admits any node", {}, True),
    Case("nodeSelector matches", {"nodeSelector": {"zone": "a"}}, True),
    Case("nodeSelector on another value", {"nodeSelector": {"zone": "b"}}, False),
    Case("nodeSelector on an absent key", {"nodeSelector": {"rack": "r1"}}, False),
    Case("nodeSelector keys are ANDed", {"nodeSelector": {"zone": "a", "nvidia.com/gpu.family": "ampere"}}, False),
    Case("nodeSelector with an empty value needs the key present, empty", {"nodeSelector": {"tier": ""}}, True),
    Case("nodeSelector with an empty value on an absent key", {"nodeSelector": {"rack": ""}}, False),
    Case("an empty nodeSelector narrows nothing", {"nodeSelector": {}}, True),
    # ---- matchExpressions operators
    Case("In", required(term(expr("zone", "In", "b", "a"))), True),
    Case("In: the value is not listed", required(term(expr("zone", "In", "b"))), False),
    Case("In: an absent key never matches", required(term(expr("rack", "In", "r1"))), False),
    Case("NotIn: the value is not listed", required(term(expr("zone", "NotIn", "b"))), True),
    Case("NotIn: the value is listed", required(term(expr("zone", "NotIn", "a"))), False),
    Case("NotIn: an absent key matches", required(term(expr("rack", "NotIn", "r1"))), True),
    Case("Exists", required(term(expr("tier", "Exists"))), True),
    Case("Exists: absent", required(term(expr("rack", "Exists"))), False),
    Case("DoesNotExist", required(term(expr("rack", "DoesNotExist"))), True),
    Case("DoesNotExist: present", required(term(expr("zone", "DoesNotExist"))), False),
    # ---- Gt / Lt: integers on both sides, else no match
    Case("Gt", required(term(expr("nvidia.com/gpu.memory", "Gt", "80000"))), True),
    Case("Gt is strict", required(term(expr("nvidia.com/gpu.memory", "Gt", "81559"))), False),
    Case("Lt", required(term(expr("nvidia.com/gpu.memory", "Lt", "90000"))), True),
    Case("Lt is strict", required(term(expr("nvidia.com/gpu.memory", "Lt", "81559"))), False),
    Case("Gt compares as integers, not strings", required(term(expr("nvidia.com/gpu.memory", "Gt", "9"))), True),
    Case("Gt on an absent key", required(term(expr("rack", "Gt", "1"))), False),
    Case("Gt on a label that is not an integer", required(term(expr("odd", "Gt", "1"))), False),
    Case("Lt on a label that is not an integer", required(term(expr("zone", "Lt", "1000"))), False),
    Case("Gt on a label beyond int64", required(term(expr("huge", "Gt", "1"))), False),
    Case("Gt with leading zeros is still the number", required(term(expr("nvidia.com/gpu.memory", "Gt", "080000"))),
         True),
    Case("Gt with a value that is not an integer: the term selects nothing, even with NotIn beside it",
         required(term(expr("nvidia.com/gpu.memory", "Gt", "80k"), expr("zone", "NotIn", "b"))), False),
    Case("Gt with a fraction", required(term(expr("nvidia.com/gpu.memory", "Gt", "1.5"))), False),
    Case("Gt with spaces (Go's ParseInt takes none)", required(term(expr("nvidia.com/gpu.memory", "Gt", " 1"))),
         False),
    Case("Gt with an underscore (Go's base-10 ParseInt takes none)",
         required(term(expr("nvidia.com/gpu.memory", "Gt", "1_000"))), False),
    Case("Gt with a negative value: not a label value, the term cannot parse",
         required(term(expr("nvidia.com/gpu.memory", "Gt", "-1"))), False),
    Case("Gt with two values", required(term(expr("nvidia.com/gpu.memory", "Gt", "1", "2"))), False),
    Case("Gt with a value beyond int64", required(term(expr("nvidia.com/gpu.memory", "Lt", "99999999999999999999"))),
         False),
    # ---- terms ORed, expressions ANDed, nodeSelector ANDed with the affinity
    Case("expressions of a term are ANDed",
         required(term(expr("zone", "In", "a"), expr("nvidia.com/gpu.family", "In", "ampere"))), False),
    Case("terms are ORed", required(term(expr("zone", "In", "b")), term(expr("zone", "In", "a"))), True),
    Case("nodeSelector and affinity are ANDed: the selector fails",
         {"nodeSelector": {"zone": "b"}, **required(term(expr("zone", "In", "a")))}, False),
    Case("nodeSelector and affinity are ANDed: the affinity fails",
         {"nodeSelector": {"zone": "a"}, **required(term(expr("zone", "In", "b")))}, False),
    Case("nodeSelector and affinity both hold",
         {"nodeSelector": {"zone": "a"}, **required(term(expr("tier", "Exists")))}, True),
    Case("a term that cannot parse fails alone: another term still matches",
         required(term(expr("zone", "Gt", "x")), term(expr("zone", "In", "a"))), True),
    Case("an unknown operator: the term selects nothing", required(term(expr("zone", "Equals", "a"))), False),
    Case("In without values: the term selects nothing", required(term(expr("zone", "In"))), False),
    Case("Exists with values: the term selects nothing", required(term(expr("zone", "Exists", "a"))), False),
    Case("a key that is not a label key: the term selects nothing", required(term(expr("a/b/c", "DoesNotExist"))),
         False),
    Case("a value that is not a label value: the term selects nothing",
         required(term(expr("zone", "NotIn", "no spaces"))), False),
    # ---- empty terms
    Case("an empty term selects no node", required({}), False),
    Case("a term with empty lists selects no node", required({"matchExpressions": [], "matchFields": []}), False),
    Case("an empty term beside a matching one", required({}, term(expr("zone", "In", "a"))), True),
    Case("no terms at all select no node", required(), False),
    Case("a required affinity without nodeSelectorTerms selects no node",
         {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}}, False),
    Case("preferred terms narrow nothing", {"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": term(
            expr("zone", "In", "b"))}]}}}, True),
    Case("pod anti-affinity is not about nodes' labels", {"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone"}]}}}, True),
    # ---- matchFields: metadata.name, the node's only field
    Case("matchFields In the node's name", required(term(fields=(name("In", NODE),))), True),
    Case("matchFields In another name", required(term(fields=(name("In", "h800-4"),))), False),
    Case("matchFields NotIn the node's name", required(term(fields=(name("NotIn", NODE),))), False),
    Case("matchFields NotIn another name", required(term(fields=(name("NotIn", "h800-4"),))), True),
    Case("matchFields In with two names: the term cannot parse", required(term(fields=(name("In", NODE, "x"),))),
         False),
    Case("matchFields Exists: the term cannot parse",
         required(term(fields=({"key": "metadata.name", "operator": "Exists"},))), False),
    Case("matchFields on an unknown field reads it as empty",
         required(term(fields=({"key": "metadata.uid", "operator": "NotIn", "values": ["x"]},))), True),
    Case("matchFields and matchExpressions of a term are ANDed",
         required(term(expr("zone", "In", "b"), fields=(name("In", NODE),))), False),
    Case("matchFields and matchExpressions both hold",
         required(term(expr("zone", "In", "a"), fields=(name("In", NODE),))), True),
    # ---- labels of the node
    Case("a node without labels fails a selector", {"nodeSelector": {"zone": "a"}}, False, labels={}),
    Case("a node without labels passes DoesNotExist", required(term(expr("zone", "DoesNotExist"))), True,
         labels={}),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_scheduler_would_give_the_same_answer(case: Case) -> None:
    constraint = from_template({"spec": {"containers": [{"name": "t"}], **case.spec}})
    labels = LABELS if case.labels is None else case.labels
    assert constraint.admits(NODE, labels) is case.admits
    assert constraint.eligible([(NODE, labels, ())]) == (frozenset({NODE}) if case.admits else frozenset())


def test_a_template_without_constraints_is_any_and_narrows_nothing() -> None:
    for spec in ({}, {"nodeSelector": {}}, {"affinity": {"podAffinity": {}}}, {"affinity": None},
                 {"nodeSelector": ["zone=a"]}):
        assert from_template({"spec": spec}) == ANY and not ANY.narrows


def test_equal_templates_give_one_hashable_constraint() -> None:
    a = from_template({"spec": {"nodeSelector": {"zone": "a", "tier": "gold"}, **required(term(expr("x", "In",
                                                                                                  "1")))}})
    b = from_template({"spec": {"nodeSelector": {"tier": "gold", "zone": "a"}, **required(term(expr("x", "In",
                                                                                                  "1")))}})
    assert a == b and hash(a) == hash(b) and a.narrows


@pytest.mark.parametrize(("spec", "text"), [
    ({"nodeSelector": {"zone": "mars"}}, "spec.workers.template.spec.nodeSelector {zone: mars}"),
    (required(term(expr("zone", "In", "a", "b"), expr("gpu", "Exists")), term(expr("mem", "Gt", "40")),
              term(fields=(name("In", "n1"),))),
     "spec.workers.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution "
     "(zone In [a, b] and gpu Exists) or (mem Gt 40) or (metadata.name In [n1])"),
    ({"nodeSelector": {"zone": "a"}, **required(term(expr("mem", "Gt", "40k")))},
     "spec.workers.template.spec.nodeSelector {zone: a} and spec.workers.template.spec.affinity.nodeAffinity."
     "requiredDuringSchedulingIgnoredDuringExecution (mem Gt 40k: Gt value '40k' is not an integer)"),
    (required({}), "spec.workers.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                   " (an empty term)"),
])
def test_a_constraint_says_what_the_template_asks(spec: dict, text: str) -> None:
    assert str(from_template({"spec": spec})) == text


# ---- tolerations against taints (core/v1 Toleration.ToleratesTaint)
DEDICATED = Taint("dedicated", "research", "NoSchedule")


@pytest.mark.parametrize(("toleration", "taint", "tolerated"), [
    ({"key": "dedicated", "operator": "Equal", "value": "research", "effect": "NoSchedule"}, DEDICATED, True),
    ({"key": "dedicated", "value": "research"}, DEDICATED, True),  # operator unset is Equal; effect unset: any
    ({"key": "dedicated", "operator": "Equal", "value": "infra"}, DEDICATED, False),
    ({"key": "dedicated", "operator": "Equal"}, DEDICATED, False),  # Equal with no value wants an empty value
    ({"key": "dedicated", "operator": "Equal"}, Taint("dedicated", "", "NoSchedule"), True),
    ({"key": "dedicated", "operator": "Exists"}, DEDICATED, True),  # any value
    ({"operator": "Exists"}, DEDICATED, True),  # an empty key with Exists tolerates every taint
    ({"operator": "Exists", "effect": "NoExecute"}, DEDICATED, False),
    ({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}, DEDICATED, True),
    ({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, DEDICATED, False),
    ({"key": "team", "operator": "Exists"}, DEDICATED, False),
    ({"key": "dedicated", "operator": "Gt", "value": "1"}, DEDICATED, False),  # no operator the API does not know
], ids=lambda v: str(v) if isinstance(v, Taint) else None)
def test_a_toleration_tolerates_a_taint_as_core_v1_says(toleration: dict, taint: Taint, tolerated: bool) -> None:
    assert tolerations([toleration])[0].tolerates(taint) is tolerated


GPU = Taint("nvidia.com/gpu", "", "NoSchedule")


@pytest.mark.parametrize(("name", "taints", "group", "left"), [
    ("a taint no one tolerates blocks", [DEDICATED], [], [DEDICATED]),
    ("the node group's toleration takes it", [DEDICATED], [{"key": "dedicated", "operator": "Exists"}], []),
    ("the group tolerates one of two", [DEDICATED, GPU], [{"key": "nvidia.com/gpu", "operator": "Exists"}],
     [DEDICATED]),
    ("NoExecute blocks too", [Taint("dedicated", "research", "NoExecute")], [],
     [Taint("dedicated", "research", "NoExecute")]),
    ("PreferNoSchedule only ranks nodes", [Taint("dedicated", "research", "PreferNoSchedule")], [], []),
    ("node-state taints are core.health's: not-ready", [Taint("node.kubernetes.io/not-ready", "", "NoSchedule")],
     [], []),
    ("node-state taints: a cordon", [Taint("node.kubernetes.io/unschedulable", "", "NoSchedule")], [], []),
    ("node-state taints: a cloud node not yet initialised",
     [Taint("node.cloudprovider.kubernetes.io/uninitialized", "true", "NoSchedule")], [], []),
    ("node-state taints: cardpool's own drain", [Taint("cardpool.io/drain", "CardFault", "NoSchedule")], [], []),
])
def test_the_taints_a_template_must_tolerate(name: str, taints: list[Taint], group: list[dict],
                                             left: list[Taint]) -> None:
    assert blocking(taints, tolerations(group)) == tuple(left)


@pytest.mark.parametrize(("name", "spec", "taints", "admits"), [
    ("an untainted node needs no toleration", {}, (), True),
    ("a blocking taint keeps a template without tolerations off", {}, (DEDICATED,), False),
    ("the template tolerates it", {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}, (DEDICATED,),
     True),
    ("the template tolerates one taint of two", {"tolerations": [{"key": "dedicated", "operator": "Exists"}]},
     (DEDICATED, GPU), False),
    ("tolerations do not get past a nodeSelector",
     {"nodeSelector": {"zone": "b"}, "tolerations": [{"operator": "Exists"}]}, (DEDICATED,), False),
    ("a nodeSelector and a toleration both hold",
     {"nodeSelector": {"zone": "a"}, "tolerations": [{"operator": "Exists"}]}, (DEDICATED, GPU), True),
])
def test_labels_and_taints_are_both_filters(name: str, spec: dict, taints: tuple[Taint, ...], admits: bool) -> None:
    assert from_template({"spec": spec}).admits(NODE, LABELS, taints) is admits


def test_tolerations_alone_do_not_narrow_but_make_the_constraint_differ() -> None:
    constraint = from_template({"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}})
    assert constraint != ANY and not constraint.narrows
    assert constraint.tolerations == (Toleration("dedicated", "Exists"),)


# ---- through the pool pass: request() carries the constraint, build_snapshot the nodes' labels
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
POOL = CardPoolSpec.model_validate(yaml.safe_load((EXAMPLES / "pool-mixed-vendor.yaml").read_text())["spec"])


def fleet(a100_taints: tuple[tuple[str, str, str], ...] = ()) -> list[ObservedNode]:
    """4 H800 and 4 A100 nodes, two of each in zone a, two in b; the A100s tainted (key, effect, value)."""
    return [ObservedNode(f"{group}-{i}", {"nvidia.com/gpu.product": product, "nvidia.com/gpu.family": family,
                                          "zone": "a" if i < 2 else "b"},
                         {"nvidia.com/gpu": 8}, {"nvidia.com/gpu": 8}, {"Ready": "True"},
                         taints=a100_taints if group == "a100" else ())
            for group, product, family in (("h800", "NVIDIA-H800", "hopper"),
                                           ("a100", "NVIDIA-A100-SXM4-80GB", "ampere"))
            for i in range(4)]


FLEET = fleet()


def pytorch_job(name: str = "job", workers: int = 4, minute: int = 5, **pod_spec: object) -> ObservedJob:
    """The 8-card-per-worker example on [H800, A100] (never mixed), `workers` of them, its template asking for
    `pod_spec` too."""
    body = yaml.safe_load((EXAMPLES / "job-pytorch-homogeneous.yaml").read_text())["spec"]
    body["workers"]["size"] = {"min": workers, "max": workers}
    body["workers"]["template"]["spec"].update(pod_spec)
    return ObservedJob("ns", name, f"uid-{name}", 1, NOW - timedelta(minutes=minute),
                       TrainingJobSpec.model_validate(body), TrainingJobStatus())


def stalled(plan) -> tuple[str, str, str]:
    conditions = {c.type: c for c in plan.status.conditions}
    return conditions["Stalled"].status, conditions["Stalled"].reason, conditions["Ready"].message


def test_a_template_no_node_satisfies_stalls_the_job_with_the_reason() -> None:
    plan = reconcile_pool(POOL, 1, None, FLEET, [pytorch_job(nodeSelector={"zone": "mars"})], NOW).jobs[0]
    assert plan.status.phase == Phase.QUEUED and not plan.create
    assert stalled(plan) == ("True", "NoNodeMatchesTemplate", "spec.workers.template.spec.nodeSelector {zone: mars} "
                                                              "matches none of the pool's 8 H800/A100 nodes")


def test_a_template_that_narrows_places_the_gang_on_admitted_nodes_only() -> None:
    job = pytorch_job(nodeSelector={"nvidia.com/gpu.family": "ampere"})
    plan = reconcile_pool(POOL, 1, None, FLEET, [job], NOW).jobs[0]
    assert plan.status.phase == Phase.STARTING
    assert sorted(s.node for s in plan.create) == ["a100-0", "a100-1", "a100-2", "a100-3"]


ZONE_B_HOPPER_OR_ZONE_A_AMPERE = required(term(expr("zone", "In", "b"), expr("nvidia.com/gpu.family", "In", "hopper")),
                                          term(expr("zone", "In", "a"), expr("nvidia.com/gpu.family", "In", "ampere")))
NOT_IN_ZONE_A = required(term(expr("zone", "NotIn", "a")))


@pytest.mark.parametrize(("name", "nodes", "jobs", "placed", "waiting"), [
    ("terms ORed: the H800 term admits 2 nodes, a 2-worker job takes them", FLEET,
     [pytorch_job(workers=2, **ZONE_B_HOPPER_OR_ZONE_A_AMPERE)], {"job": ["h800-2", "h800-3"]}, {}),
    ("terms ORed: a 4-worker job (never mixed) fits neither model's admitted nodes", FLEET,
     [pytorch_job(workers=4, **ZONE_B_HOPPER_OR_ZONE_A_AMPERE)], {}, {"job": "Unplaceable"}),
    ("NotIn keeps the gang off zone a", FLEET, [pytorch_job(workers=2, **NOT_IN_ZONE_A)],
     {"job": ["h800-2", "h800-3"]}, {}),
    ("the H800s taken by another job: the gang goes to the admitted A100s, not to zone a", FLEET,
     [pytorch_job("big", workers=4, minute=9), pytorch_job(workers=2, minute=1, **NOT_IN_ZONE_A)],
     {"big": ["h800-0", "h800-1", "h800-2", "h800-3"], "job": ["a100-2", "a100-3"]}, {}),
    ("a nodeSelector no node satisfies beside a job that runs", FLEET,
     [pytorch_job("other", workers=2, minute=9), pytorch_job(workers=1, nodeSelector={"zone": "mars"})],
     {"other": ["h800-0", "h800-1"]}, {"job": "NoNodeMatchesTemplate"}),
    ("tainted A100s: an A100-only template that does not tolerate them", fleet((("dedicated", "NoSchedule",
                                                                                "research"),)),
     [pytorch_job(workers=1, nodeSelector={"nvidia.com/gpu.family": "ampere"})], {},
     {"job": "NoNodeMatchesTemplate"}),
    ("tainted A100s: the template tolerates them", fleet((("dedicated", "NoSchedule", "research"),)),
     [pytorch_job(workers=1, nodeSelector={"nvidia.com/gpu.family": "ampere"},
                  tolerations=[{"key": "dedicated", "operator": "Equal", "value": "research"}])],
     {"job": ["a100-0"]}, {}),
    ("tainted A100s: a template without constraint lands on the untainted H800s",
     fleet((("dedicated", "NoSchedule", "research"),)), [pytorch_job(workers=4)],
     {"job": ["h800-0", "h800-1", "h800-2", "h800-3"]}, {}),
    ("tainted A100s: with the H800s full, the job waits its turn (it could still run on them)",
     fleet((("dedicated", "NoSchedule", "research"),)),
     [pytorch_job("big", workers=4, minute=9), pytorch_job(workers=1, minute=1)],
     {"big": ["h800-0", "h800-1", "h800-2", "h800-3"]}, {"job": "Reserved"}),
    ("a not-ready:NoSchedule taint is the node's state, not the job's: placement keeps it",
     fleet((("node.kubernetes.io/not-ready", "NoSchedule", ""),)),
     [pytorch_job(workers=1, nodeSelector={"nvidia.com/gpu.family": "ampere"})], {"job": ["a100-0"]}, {}),
])
def test_the_pool_pass_places_only_on_nodes_the_template_admits(name: str, nodes: list[ObservedNode],
                                                                 jobs: list[ObservedJob], placed: dict[str, list[str]],
                                                                 waiting: dict[str, str]) -> None:
    pass_ = reconcile_pool(POOL, 1, None, nodes, jobs, NOW)
    assert {p.job.removeprefix("ns/"): sorted(s.node for s in p.create) for p in pass_.jobs if p.create} == placed
    assert {w.job.removeprefix("ns/"): w.reason for w in pass_.queue.waiting} == waiting
    for plan in pass_.jobs:
        if (reason := waiting.get(plan.job.removeprefix("ns/"))) in ("NoNodeMatchesTemplate", "Unplaceable"):
            assert stalled(plan)[:2] == ("True", reason)


def test_a_pool_whose_group_tolerates_the_taint_needs_no_toleration_in_the_template() -> None:
    spec = POOL.model_copy(deep=True)
    spec.node_groups[1].tolerations = [GroupToleration(key="dedicated", operator="Exists")]
    plan = reconcile_pool(spec, 1, None, fleet((("dedicated", "NoSchedule", "research"),)),
                          [pytorch_job(workers=1, nodeSelector={"nvidia.com/gpu.family": "ampere"})], NOW).jobs[0]
    assert [s.node for s in plan.create] == ["a100-0"]


def test_a_taint_no_toleration_covers_is_named() -> None:
    plan = reconcile_pool(POOL, 1, None, fleet((("dedicated", "NoSchedule", "research"), ("gpu", "NoExecute", ""))),
                          [pytorch_job(workers=1, nodeSelector={"nvidia.com/gpu.family": "ampere"},
                                       tolerations=[{"key": "gpu", "operator": "Exists"}])], NOW).jobs[0]
    assert stalled(plan) == ("True", "NoNodeMatchesTemplate",
                             "each of the 4 of the pool's 8 H800/A100 nodes that spec.workers.template.spec."
                             "nodeSelector {nvidia.com/gpu.family: ampere} selects has a taint that neither "
                             "spec.workers.template.spec.tolerations nor its node group's tolerations tolerate: "
                             "dedicated=research:NoSchedule")
