"""TenantQueue objects -> the queue tree, each job's queue, admission by quota in the pool pass, each queue's
status. Tables where the cases read like a spec."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cardpool.api.tenantqueue import TenantQueueSpec
from cardpool.api.trainingjob import Phase
from cardpool.core.observed import ObservedNode
from cardpool.core.pool import reconcile_pool
from cardpool.core.tenants import admission, queue_statuses, tenants

from .test_lifecycle import job, started
from .test_pool_pass import NOW, POOL

NODES = [ObservedNode(f"h800-{i}", {"nvidia.com/gpu.product": "NVIDIA-H800"}, {"nvidia.com/gpu": 8},
                      {"nvidia.com/gpu": 8}, {"Ready": "True"}) for i in range(8)]  # 64 H800 cards


def queue(parent: str | None = None, namespaces: tuple[str, ...] = ("ns",), guaranteed: int = 0,
          borrowing: int | None = None, cap: int | None = None, weight: int = 1) -> TenantQueueSpec:
    quota = {"model": "H800", "guaranteed": guaranteed, "borrowingLimit": borrowing, "cap": cap}
    return TenantQueueSpec.model_validate({"parent": parent, "namespaces": list(namespaces), "weight": weight,
                                           "quotas": [{k: v for k, v in quota.items() if v is not None}]})


TREES = [
    # (name, queues, unusable queue -> a phrase its message has)
    ("an organisation and its teams", {"org": queue(), "a": queue("org"), "b": queue("org")}, {}),
    ("a missing parent", {"a": queue("nobody")}, {"a": "spec.parent: no TenantQueue named nobody"}),
    ("a cycle makes every queue on it unusable", {"a": queue("b"), "b": queue("a")},
     {"a": "make a cycle", "b": "make a cycle"}),
    ("a queue under an unusable one cannot be used either", {"a": queue("nobody"), "b": queue("a")},
     {"a": "no TenantQueue named nobody", "b": "its ancestor a cannot be used"}),
]


@pytest.mark.parametrize(("specs", "unusable"), [t[1:] for t in TREES], ids=[t[0] for t in TREES])
def test_the_queue_tree(specs: dict, unusable: dict) -> None:
    found = tenants(specs)
    assert set(found.unusable) == set(unusable)
    for name, phrase in unusable.items():
        assert phrase in found.unusable[name]
    assert set(found.quotas.queues) == set(specs) - set(unusable)


def named(name: str, namespace: str = "ns", queue_name: str | None = None, status: dict | None = None,
          workers: int = 4):
    spec = job().spec.model_copy(deep=True)
    spec.queue = queue_name
    spec.placement.accelerators = ["H800"]
    spec.workers.size.min = spec.workers.size.max = workers
    if spec.workers.size.desired is not None:
        spec.workers.size.desired = workers
    return replace(job(status, spec=spec), name=name, namespace=namespace)


def test_a_job_names_its_queue_or_its_namespace_maps_to_one() -> None:
    """A namespace two queues admit maps to the first by name; a job may name the other."""
    found = tenants({"a": queue(namespaces=("team-a",)), "b": queue(namespaces=("elsewhere", "team-a"))})
    jobs = [named("by-name", "elsewhere", "b"), named("by-namespace", "team-a"), named("free", "nowhere"),
            named("name-wins", "team-a", "b")]
    assert admission(found, jobs).queue_of == {"elsewhere/by-name": "b", "team-a/by-namespace": "a",
                                               "team-a/name-wins": "b"}


def test_a_job_may_not_use_a_queue_that_does_not_admit_its_namespace() -> None:
    specs = {"a": queue(namespaces=("team-a",)), "b": queue(namespaces=("team-b",))}
    jobs = [named("sneaky", "team-a", "b", workers=1)]
    plan = reconcile_pool(POOL, 1, None, NODES, jobs, NOW, admission=admission(tenants(specs), jobs))
    ready = next(c for c in plan.jobs[0].status.conditions if c.type == "Ready")
    assert (plan.jobs[0].status.phase, ready.reason) == (Phase.QUEUED, "QueueNotAllowed")
    assert ready.message == "spec.queue: queue b does not admit jobs of namespace team-a (its spec.namespaces)"


def pass_with(specs: dict, jobs: list) -> dict:
    """One pool pass with the queues: job name -> (phase, Ready reason, Ready message)."""
    plan = reconcile_pool(POOL, 1, None, NODES, jobs, NOW, admission=admission(tenants(specs), jobs))
    out = {}
    for p in plan.jobs:
        ready = next(c for c in p.status.conditions if c.type == "Ready")
        out[p.job.split("/")[1]] = (p.status.phase, ready.reason, ready.message)
    return out


def test_a_queue_borrows_up_to_its_limit_and_the_next_job_waits_saying_so_with_figures() -> None:
    specs = {"a": queue(guaranteed=16, borrowing=16), "b": queue(guaranteed=48)}
    held = {**started(phase="Running"), "placement": [{"group": "h800", "accelerator": "H800", "workers": 2,
                                                       "nodes": ["h800-0", "h800-1"]}]}
    jobs = [named("running", queue_name="a", status=held, workers=2), named("second", queue_name="a", workers=2),
            named("third", queue_name="a", workers=1)]
    out = pass_with(specs, jobs)
    assert out["second"][0] == Phase.STARTING  # 16 held + 16 = guarantee 16 + borrowing 16
    phase, reason, message = out["third"]
    assert (phase, reason) == (Phase.QUEUED, "BorrowingLimitReached")
    assert message == "queue a holds 32 H800 cards (guaranteed 16, may borrow 16); this job needs 8"


def test_a_cap_on_the_organisation_bounds_its_teams_together() -> None:
    specs = {"org": queue(cap=40), "a": queue("org"), "b": queue("org")}
    out = pass_with(specs, [named("a1", queue_name="a", workers=4), named("b1", queue_name="b", workers=2)])
    assert out["a1"][0] == Phase.STARTING
    assert out["b1"][1] == "QuotaCapReached" and "queue org holds 32 of its cap of 40 H800 cards" in out["b1"][2]


@pytest.mark.parametrize(("specs", "reason", "phrase"), [
    ({}, "QueueNotFound", "spec.queue: no TenantQueue named a"),
    ({"a": queue("nobody")}, "QueueUnusable", "queue a cannot be used: spec.parent: no TenantQueue named nobody"),
], ids=["a queue that does not exist", "a queue that cannot be used"])
def test_a_job_of_a_missing_or_unusable_queue_waits_saying_which_field(specs: dict, reason: str,
                                                                        phrase: str) -> None:
    specs = {**specs, "other": queue()}  # at least one queue: the pass runs with tenants
    out = pass_with(specs, [named("j", queue_name="a", workers=1), named("free", workers=1)])
    assert out["j"][:2] == (Phase.QUEUED, reason) and phrase in out["j"][2]
    assert out["free"][0] == Phase.STARTING, "a job in no queue is not limited"


def test_surplus_goes_first_to_the_queue_holding_least_for_its_weight() -> None:
    specs = {"a": queue(), "b": queue(weight=3)}
    jobs = [named(f"a{i}", queue_name="a", workers=1) for i in range(4)] + [
        named(f"b{i}", queue_name="b", workers=1) for i in range(8)]
    out = pass_with(specs, jobs)
    started_ = sorted(n for n, (phase, _, _) in out.items() if phase == Phase.STARTING)
    assert len(started_) == 8  # 8 nodes of 8 cards, one worker of 8 cards each
    assert sum(n.startswith("b") for n in started_) == 6, started_  # weight 3 to 1: 6 and 2


def test_queue_status_counts_used_borrowed_lent_and_waiting_and_says_when_a_spec_cannot_be_used() -> None:
    specs = {"a": queue(guaranteed=8, borrowing=32), "b": queue(guaranteed=32), "bad": queue("nobody")}
    found = tenants(specs)
    held = {**started(phase="Running"), "placement": [{"group": "h800", "accelerator": "H800", "workers": 3,
                                                       "nodes": ["h800-0", "h800-1", "h800-2"]}]}
    jobs = [named("running", queue_name="a", status=held, workers=3), named("waiting", queue_name="b", workers=1)]
    statuses = queue_statuses({n: (s, 2, None) for n, s in specs.items()}, found, jobs, NOW)
    a, b, bad = statuses["a"], statuses["b"], statuses["bad"]
    assert (a.used_cards, a.borrowed_cards, a.running_jobs, a.waiting_jobs) == (24, 16, 1, 0)
    assert (b.models[0].used, b.models[0].lent, b.waiting_jobs) == (0, 16, 1)
    conditions = {c.type: (c.status, c.reason) for c in bad.conditions}
    assert conditions == {"Ready": ("False", "InvalidSpec"), "Stalled": ("True", "InvalidSpec")}
    assert {c.type: c.status for c in a.conditions} == {"Ready": "True", "Stalled": "False"}
    assert a.observed_generation == 2


def test_a_job_its_quota_allows_but_the_pool_cannot_place_says_how_much_room_there_is() -> None:
    """"The quota says it fits, placement says no" (Kueue #1309): the message says both, with figures."""
    specs = {"a": queue(guaranteed=64), "b": queue(guaranteed=64)}
    held = {**started(phase="Running"), "placement": [{"group": "h800", "accelerator": "H800", "workers": 6,
                                                       "nodes": [f"h800-{i}" for i in range(6)]}]}
    jobs = [named("big", queue_name="b", status=held, workers=6), named("wants", queue_name="a", workers=4)]
    phase, reason, message = pass_with(specs, jobs)["wants"]
    assert (phase, reason) == (Phase.QUEUED, "Reserved")
    assert message.endswith("free now: room for 2 on H800 (workers of 8 cards)"), message


def test_a_queues_jobs_go_before_borrowers_only_as_far_as_its_guarantee_reaches() -> None:
    """b is guaranteed one node and has eight one-node jobs; a's job of four nodes has the higher priority:
    b's first job goes first (within its guarantee), then a's, then b's others as far as the cards go."""
    specs = {"a": queue(namespaces=("a",)), "b": queue(namespaces=("b",), guaranteed=8)}
    high = named("high", "a", workers=4)
    high = replace(high, spec=high.spec.model_copy(update={"priority": 100}))
    jobs = [named(f"b{i}", "b", workers=1) for i in range(8)] + [high]
    out = pass_with(specs, jobs)
    assert out["high"][0] == Phase.STARTING
    assert sum(out[f"b{i}"][0] == Phase.STARTING for i in range(8)) == 4
