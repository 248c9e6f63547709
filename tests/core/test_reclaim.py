"""Lent cards taken back, as a table: queues, the jobs running and waiting -> who stops (and how), who waits for
whom. One pool pass each, the operator's own pass deciding (core.pool.reconcile_pool)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from cardpool.api.tenantqueue import TenantQueueSpec
from cardpool.api.trainingjob import Phase, TrainingJobStatus
from cardpool.core.observed import ObservedJob, ObservedNode, ObservedPod
from cardpool.core.pool import reconcile_pool
from cardpool.core.tenants import admission, tenants

from .test_lifecycle import job
from .test_pool_pass import NOW
from .test_pool_pass import POOL as DEFRAGMENTING

POOL = DEFRAGMENTING.model_copy(update={"defragmentation": DEFRAGMENTING.defragmentation.model_copy(
    update={"enabled": False})})

NODES = [ObservedNode(f"h800-{i}", {"nvidia.com/gpu.product": "NVIDIA-H800"}, {"nvidia.com/gpu": 8},
                      {"nvidia.com/gpu": 8}, {"Ready": "True"}) for i in range(8)]  # 64 H800 cards


def queues(**extra: dict) -> dict[str, TenantQueueSpec]:
    """Team a may borrow everything b does not use; b is guaranteed half of the pool."""
    base = {"a": {"namespaces": ["a"], "quotas": [{"model": "H800", "guaranteed": 32, "borrowingLimit": 32}]},
            "b": {"namespaces": ["b"], "quotas": [{"model": "H800", "guaranteed": 32}]}}
    for name, spec in extra.items():
        base[name] = {**base[name], **spec}
    return {name: TenantQueueSpec.model_validate(spec) for name, spec in base.items()}


def spec_of(workers: int, min_workers: int | None = None, priority: int = 0):
    spec = job().spec.model_copy(deep=True)
    spec.placement.accelerators = ["H800"]
    spec.workers.size.min, spec.workers.size.max = min_workers or workers, workers
    spec.priority = priority
    return spec


def running(name: str, first_node: int, workers: int, minutes: float = 60, saved_minutes_ago: float = 5,
            min_workers: int | None = None, reclaimed: int = 0, priority: int = 0) -> ObservedJob:
    """A job of team a running `workers` x 8 cards on h800-<first_node>.. for `minutes`."""
    nodes = [f"h800-{first_node + i}" for i in range(workers)]
    start = NOW - timedelta(minutes=minutes)
    history = [{"attempt": i + 1, "workers": workers, "accelerator": "H800", "startTime": start.isoformat(),
                "endTime": (NOW - timedelta(minutes=10 + i)).isoformat(), "endReason": "Reclaimed", "planned": True}
               for i in range(reclaimed)]
    attempt = reclaimed + 1
    history.append({"attempt": attempt, "workers": workers, "accelerator": "H800", "startTime": start.isoformat()})
    status = TrainingJobStatus.model_validate({
        "phase": "Running", "attempt": attempt, "attemptStartTime": start.isoformat(), "workers": workers,
        "placement": [{"group": "h800", "accelerator": "H800", "workers": workers, "nodes": nodes}],
        "history": history,
        "progress": {"step": 120, "attempt": attempt, "time": (NOW - timedelta(seconds=30)).isoformat()},
        "lastCheckpoint": {"step": 100, "uri": "s3://c/100", "worldSize": workers * 8, "attempt": attempt,
                           "time": (NOW - timedelta(minutes=saved_minutes_ago)).isoformat()}})
    pods = tuple(ObservedPod(f"{name}-a{attempt}-{r}", "a", name, attempt, r, node, "Running", cards=8)
                 for r, node in enumerate(nodes))
    return ObservedJob("a", name, f"uid-{name}", 1, start, spec_of(workers, min_workers, priority), status, pods)


def waiting(name: str, workers: int, namespace: str = "b", priority: int = 0) -> ObservedJob:
    return ObservedJob(namespace, name, f"uid-{name}", 1, NOW - timedelta(minutes=1), spec_of(workers, None, priority),
                       TrainingJobStatus(), ())


def decide(specs: dict, jobs: list[ObservedJob]) -> dict[str, tuple[str, str]]:
    """job name -> (phase, Ready reason) after one pass; and the messages under key name + ':message'."""
    plan = reconcile_pool(POOL, 1, None, NODES, jobs, NOW, admission=admission(tenants(specs), jobs))
    out = {}
    for p in plan.jobs:
        ready = next(c for c in p.status.conditions if c.type == "Ready")
        name = p.job.split("/")[1]
        out[name] = (p.status.phase, ready.reason)
        out[name + ":message"] = ready.message
    return out


SCENARIOS = [
    # (name, queues, jobs, expected (job -> (phase, reason)))
    ("a borrower keeps idle cards while their owner waits for nothing",
     queues(), [running("a1", 0, 4), running("a2", 4, 2)],
     {"a1": ("Running", "Running"), "a2": ("Running", "Running")}),
    ("a tenant below its guarantee takes lent cards back from the borrower that loses least work",
     queues(), [running("a1", 0, 4, saved_minutes_ago=30), running("a2", 4, 4, saved_minutes_ago=2),
                waiting("b1", 4)],
     {"a1": ("Running", "Running"), "a2": ("Restarting", "Reclaimed"), "b1": ("Queued", "WaitingForReclaim")}),
    ("an elastic borrower gives cards back before a fixed-size one, however much the fixed one would lose",
     queues(), [running("a1", 0, 4, saved_minutes_ago=1), running("elastic", 4, 4, saved_minutes_ago=50,
                                                                  min_workers=2),
                waiting("b1", 2)],
     {"a1": ("Running", "Running"), "elastic": ("Restarting", "Reclaimed"), "b1": ("Queued", "WaitingForReclaim")}),
    ("a job within its queue's minimum runtime is not a victim: the other one is",
     queues(), [running("young", 0, 4, minutes=5, saved_minutes_ago=1), running("old", 4, 4, saved_minutes_ago=30),
                waiting("b1", 4)],
     {"young": ("Running", "Running"), "old": ("Restarting", "Reclaimed"), "b1": ("Queued", "WaitingForReclaim")}),
    ("when every borrower is protected, the claimant waits for cards like any job",
     queues(), [running("young", 0, 4, minutes=5), running("young2", 4, 4, minutes=8), waiting("b1", 4)],
     {"young": ("Running", "Running"), "young2": ("Running", "Running"), "b1": ("Queued", "Reserved")}),
    ("a job stopped for reclaim twice in the last hour is not stopped again",
     queues(), [running("twice", 0, 4, reclaimed=2, saved_minutes_ago=1), running("a2", 4, 4, saved_minutes_ago=30),
                waiting("b1", 4)],
     {"twice": ("Running", "Running"), "a2": ("Restarting", "Reclaimed")}),
    ("a claim that would take its queue above its guarantee reclaims nothing",
     queues(), [running("a1", 0, 4), running("a2", 4, 4), waiting("b1", 5)],
     {"a1": ("Running", "Running"), "a2": ("Running", "Running")}),
    ("cards a queue holds within its own guarantee are not taken back, even for a queue below its own",
     queues(a={"quotas": [{"model": "H800", "guaranteed": 64}]}, b={"quotas": [{"model": "H800", "guaranteed": 16}]}),
     [running("a1", 0, 4), running("a2", 4, 4), waiting("b1", 1)],
     {"a1": ("Running", "Running"), "a2": ("Running", "Running"), "b1": ("Queued", "Reserved")}),
    ("a higher-priority borrower still gives back what it borrowed",
     queues(), [running("a1", 0, 4, priority=100, saved_minutes_ago=1), running("a2", 4, 4, priority=100,
                                                                               saved_minutes_ago=30),
                waiting("b1", 4)],
     {"a1": ("Restarting", "Reclaimed"), "a2": ("Running", "Running")}),
]


@pytest.mark.parametrize(("specs", "jobs", "expected"), [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS])
def test_reclaim_scenarios(specs: dict, jobs: list[ObservedJob], expected: dict) -> None:
    out = decide(specs, jobs)
    assert {name: out[name] for name in expected} == expected


def test_the_claimant_says_whom_it_waits_for_and_the_victim_why_it_stops() -> None:
    out = decide(queues(), [running("a1", 0, 4, saved_minutes_ago=30), running("a2", 4, 4, saved_minutes_ago=2),
                            waiting("b1", 4)])
    assert "taking back lent cards from a/a2" in out["b1:message"]
    assert out["a2:message"] == ("attempt 1 stops with a graceful save and waits in its queue: queue b takes back "
                                 "32 H800 cards lent to queue a for job b/b1 (stops)")


def test_cards_already_being_given_back_are_not_taken_twice() -> None:
    """The victim saves and ends (its pods still hold the cards): the claim takes no second victim."""
    victim = running("a2", 4, 4)
    last = victim.status.history[-1].model_copy(update={"end_time": NOW - timedelta(seconds=5),
                                                        "end_reason": "Reclaimed", "planned": True})
    stopping = replace(victim, status=victim.status.model_copy(update={
        "phase": Phase.RESTARTING, "placement": [], "workers": 0, "history": [last]}),
        pods=tuple(replace(p, deleting=True) for p in victim.pods))
    out = decide(queues(), [running("a1", 0, 4), stopping, waiting("b1", 4)])
    assert out["a1"] == ("Running", "Running")
    assert out["b1"] == ("Queued", "WaitingForReclaim") and "waiting for the cards lent" in out["b1:message"]


def test_once_the_cards_are_back_the_claimant_goes_before_the_victim() -> None:
    """The victim's save is in, its pods gone: both wait, and the claimant (within its guarantee) is placed
    first, though the victim has the higher priority and the older submission: no job takes the cards back."""
    victim = running("a2", 4, 4, priority=100)
    last = victim.status.history[-1].model_copy(update={"end_time": NOW - timedelta(minutes=1),
                                                        "end_reason": "Reclaimed", "planned": True})
    back = replace(victim, status=victim.status.model_copy(update={
        "phase": Phase.RESTARTING, "placement": [], "workers": 0, "history": [last],
        "last_checkpoint": victim.status.last_checkpoint.model_copy(update={"time": NOW - timedelta(seconds=30)})}),
        pods=())
    out = decide(queues(), [running("a1", 0, 4), back, waiting("b1", 4)])
    assert out["b1"][0] == "Starting"
    assert out["a2"][0] == "Restarting" and out["a2"][1] != "GangPlaced"


def test_defragmentation_and_reclaim_never_both_make_room_in_one_pass() -> None:
    jobs = [running("a1", 0, 4, saved_minutes_ago=1), running("elastic", 4, 4, saved_minutes_ago=50, min_workers=2),
            waiting("b1", 2)]
    plan = reconcile_pool(DEFRAGMENTING, 1, None, NODES, jobs, NOW, admission=admission(tenants(queues()), jobs))
    reasons = {p.job: next(c for c in p.status.conditions if c.type == "Ready").reason for p in plan.jobs}
    assert reasons["a/elastic"] == "Migrating" and reasons["a/a1"] == "Running"


def test_an_elastic_borrower_grows_only_as_far_as_its_queue_may_borrow() -> None:
    """Half of the pool idle, team a may borrow 8 more cards: its elastic job grows by one worker, not four."""
    specs = queues(a={"quotas": [{"model": "H800", "guaranteed": 32, "borrowingLimit": 8}]})
    small = running("elastic", 0, 4, min_workers=2)
    small = replace(small, spec=spec_of(8, 2), status=small.status.model_copy(update={
        "larger_size_since": NOW - timedelta(hours=1)}))
    plan = reconcile_pool(POOL, 1, None, NODES, [small], NOW, admission=admission(tenants(specs), [small]))
    growing = plan.jobs[0]
    assert growing.status.phase == Phase.RESTARTING
    assert growing.status.history[-1].end_reason == "GrowTo5"


def three_queues() -> dict[str, TenantQueueSpec]:
    """a and c borrow everything; b is guaranteed half of the pool."""
    borrow = [{"model": "H800", "guaranteed": 0, "borrowingLimit": 64}]
    return {"a": TenantQueueSpec.model_validate({"namespaces": ["a"], "quotas": borrow}),
            "b": TenantQueueSpec.model_validate({"namespaces": ["b"], "quotas": [
                {"model": "H800", "guaranteed": 32}]}),
            "c": TenantQueueSpec.model_validate({"namespaces": ["c"], "quotas": borrow})}


def test_two_claims_of_one_queue_take_back_no_more_than_its_guarantee() -> None:
    c1 = replace(running("c1", 4, 4, saved_minutes_ago=1), namespace="c")
    jobs = [running("a1", 0, 4, saved_minutes_ago=30), c1, waiting("b1", 4), waiting("b2", 4)]
    out = decide(three_queues(), jobs)
    stopped = [n for n in ("a1", "c1") if out[n] == ("Restarting", "Reclaimed")]
    assert stopped == ["c1"], out  # the one whose save is newest; b2 waits for its turn


def test_free_cards_in_pieces_too_small_for_a_worker_do_not_count_towards_a_claim() -> None:
    """The borrower runs 8 workers of 4 cards, one per node: 32 cards are free, none of them a whole 8-card node."""
    scattered = running("a1", 0, 8)
    spec = scattered.spec.model_copy(deep=True)
    spec.workers.cards_per_worker = 4
    scattered = replace(scattered, spec=spec, pods=tuple(replace(p, cards=4) for p in scattered.pods))
    out = decide(three_queues(), [scattered, waiting("b1", 1)])
    assert out["a1"] == ("Restarting", "Reclaimed") and out["b1"] == ("Queued", "WaitingForReclaim"), out


def test_a_big_gang_is_not_starved_by_a_stream_of_another_tenants_small_jobs() -> None:
    """Team a runs six one-node jobs on the eight nodes and keeps submitting more; b's four-node gang, within
    b's guarantee, goes first: it takes lent cards back, and none of a's new small jobs takes the two free nodes."""
    specs = queues(a={"quotas": [{"model": "H800", "guaranteed": 16, "borrowingLimit": 48}]})
    jobs = [running(f"a{i}", i, 1, saved_minutes_ago=5 + i) for i in range(6)]
    jobs += [waiting(f"small{i}", 1, namespace="a") for i in range(4)] + [waiting("gang", 4)]
    out = decide(specs, jobs)
    assert out["gang"] == ("Queued", "WaitingForReclaim"), out["gang:message"]
    assert not [n for n in out if n.startswith("small") and ":" not in n and out[n][0] != "Queued"]
    assert sum(out[f"a{i}"] == ("Restarting", "Reclaimed") for i in range(6)) == 2
