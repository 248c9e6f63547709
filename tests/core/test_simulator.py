"""The simulator drives the same core on a virtual clock; its figures are exact on hand-made workloads."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cardpool.core.snapshot import JobRequest
from cardpool.sim.engine import simulate
from cardpool.sim.policies import CardpoolPolicy, FirstFitPolicy, SumAdmissionPolicy
from cardpool.sim.workload import EPOCH, SimJob, busy_fleet, fleet, workload

from .fleet import nodes, snapshot


def sim_job(key: str, at: float, seconds: float, workers: int, cards: int = 8, model: str = "H800") -> SimJob:
    return SimJob(JobRequest(key=key, cards_per_worker=cards, min_workers=workers, max_workers=workers,
                             accelerators=(model,), submitted=EPOCH + timedelta(seconds=at)), at, seconds)


def test_utilisation_and_delay_are_exact_on_a_hand_made_workload() -> None:
    pool = snapshot(nodes("h800", 2))
    # a: both nodes 0-100 s; b: arrives at 50, waits for a, runs 100-150 on one node; c closes the window
    jobs = [sim_job("a", 0, 100, 2), sim_job("b", 50, 50, 1), sim_job("c", 200, 10, 1)]
    result = simulate(CardpoolPolicy(), pool.nodes, pool.groups, jobs, warmup=0)
    busy = 16 * 100 + 8 * 50  # card-seconds in the window [0, 200]
    assert result.utilisation == pytest.approx(busy / (16 * 200))
    assert result.mean_delay_s == pytest.approx((0 + 50 + 0) / 3)
    assert result.unfinished == 0


def test_a_stream_of_small_jobs_starves_a_gang_under_first_fit_but_not_under_cardpool() -> None:
    pool = snapshot(nodes("h800", 2))
    # one node busy until 60; the 2-node gang arrives at 1; a 1-node job arrives every 50 s, lasting 100 s
    jobs = [sim_job("first", 0, 60, 1), sim_job("gang", 1, 100, 2)]
    jobs += [sim_job(f"s{i}", 2 + 50 * i, 100, 1) for i in range(20)]
    gang_ff = _delay_of(FirstFitPolicy(), pool, jobs, "gang")
    gang_cp = _delay_of(CardpoolPolicy(), pool, jobs, "gang")
    assert gang_cp <= 60  # starts once "first" ends: the reservation keeps the freed node for it
    assert gang_ff > 900  # small jobs keep taking every node that frees up


def _delay_of(policy, pool, jobs, key: str) -> float:
    started = {}

    class Spy:
        name = policy.name

        def decide(self, snap, now, running=None):
            decision = policy.decide(snap, now, running)
            for p in decision.start:
                started[p.job] = now
            return decision

    simulate(Spy(), pool.nodes, pool.groups, jobs, warmup=0)
    arrival = next(j.arrival for j in jobs if j.request.key == key)
    return started[key] - arrival


def test_sum_admission_binds_pods_that_hold_cards_while_the_gang_is_incomplete() -> None:
    pool = snapshot(nodes("h800", 2), [], [JobRequest("a", 4, 3, 3, ("H800",), submitted=EPOCH)])
    # 16 free cards cover 3 x 4 in sum, but node by node they hold 2 + 2 = 4 workers: all 3 bind at once
    decision = SumAdmissionPolicy().decide(pool, 0.0)
    assert [p.size for p in decision.start] == [3]
    # with 6 free cards on each node the sum (12) admits 3 x 4, but only 2 workers can bind
    busy = snapshot(nodes("h800", 2, n0={"used_by_others": 2}, n1={"used_by_others": 2}), [],
                    [JobRequest("a", 4, 3, 3, ("H800",), submitted=EPOCH)])
    policy = SumAdmissionPolicy(timeout=100)
    decision = policy.decide(busy, 0.0)
    assert decision.start == [] and len(decision.holding["a"]) == 2
    assert policy.decide(busy, 200.0).holding == {}  # released after the timeout, back in the queue


def test_workloads_are_seeded_and_offer_the_requested_load() -> None:
    nodes_, _ = fleet(64)
    first, again = workload(3, nodes_, jobs=300), workload(3, nodes_, jobs=300)
    assert first == again
    window = max(j.arrival for j in first)
    offered = sum(j.cards * j.duration for j in first) / (sum(n.allocatable for n in nodes_) * window)
    assert 0.6 < offered < 1.1
    cards = {n.model: 0 for n in nodes_}
    for n in nodes_:
        cards[n.model] += n.allocatable
    for job in first:
        assert all(cards[m] >= job.cards for m in job.request.accelerators), "every job fits a listed model"


def test_busy_fleet_never_over_allocates() -> None:
    nodes_, _ = fleet(100)
    allocations = busy_fleet(nodes_, 300, seed=2)
    used: dict[str, int] = {}
    for alloc in allocations:
        for node, cards in alloc.cards_on().items():
            used[node] = used.get(node, 0) + cards
    assert all(used[n.name] <= n.allocatable for n in nodes_ if n.name in used)
