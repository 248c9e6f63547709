"""Tenant quotas as tables (core.quota): which claims a queue allows, in which order surplus goes, which
borrowers give cards back; and, over random trees and usages, that reclaim never sets up a loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardpool.core.queue import fair_order, queue_order, schedule
from cardpool.core.quota import Candidate, Limit, QueueAdmission, Quotas, TenantQueue, reclaim

from .fleet import job as request
from .fleet import nodes, running, snapshot

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
H = "H800"

# an organisation with two teams; the org caps its teams together at 48 H800 cards
ORG = Quotas([
    TenantQueue("org", {H: Limit(guaranteed=32, cap=48)}),
    TenantQueue("team-a", {H: Limit(guaranteed=16, borrowing_limit=16)}, parent="org", weight=1.0),
    TenantQueue("team-b", {H: Limit(guaranteed=16)}, parent="org", weight=3.0),
    TenantQueue("guest", {H: Limit(guaranteed=0, cap=8)}),
])


def usage(**held: int) -> dict:
    return ORG.rolled_up({q.replace("_", "-"): {H: n} for q, n in held.items()})


ALLOWS = [
    # (what, held per queue, queue, cards, refused by (queue, reason) or None)
    ("within its guarantee", {"team_a": 8}, "team-a", 8, None),
    ("borrowing idle cards of its sibling", {"team_a": 16, "team_b": 0}, "team-a", 16, None),
    ("its borrowing limit reached", {"team_a": 24}, "team-a", 16, ("team-a", "BorrowingLimitReached")),
    ("a queue without a borrowing limit borrows up to its ancestor's cap", {"team_b": 40}, "team-b", 8, None),
    ("the organisation's cap binds its teams together", {"team_a": 24, "team_b": 20}, "team-b", 8,
     ("org", "QuotaCapReached")),
    ("a queue's own cap", {"guest": 4}, "guest", 8, ("guest", "QuotaCapReached")),
    ("a model the queue does not list is not limited", {"guest": 8}, "guest", 16, None),
]


@pytest.mark.parametrize(("what", "held", "queue", "cards", "refused"), ALLOWS, ids=[a[0] for a in ALLOWS])
def test_a_queue_allows_a_claim_within_its_limits_and_its_ancestors(what, held, queue, cards, refused) -> None:
    model = "A100" if "does not list" in what else H  # guest lists H800 only
    verdict = ORG.allows(usage(**held), queue, model, cards)
    assert (verdict.queue, verdict.reason) == refused if refused else verdict is None, verdict
    if verdict is not None:  # the message gives the figures a user can act on
        assert str(cards) in verdict.message and verdict.queue in verdict.message


def test_surplus_goes_to_the_queue_with_the_smallest_share_by_weight() -> None:
    """team-b weighs 3: borrowing 12 over its guarantee is a share of 4, less than team-a's 8 borrowed; a
    queue below its guarantee has a negative share, so it comes before both."""
    held = usage(team_a=24, team_b=28)
    assert ORG.share(held, "team-a") == 8 and ORG.share(held, "team-b") == 4
    assert ORG.share(usage(team_a=8), "team-a") == -8
    waiting = [("ns/a1", "team-a"), ("ns/b1", "team-b"), ("ns/a2", "team-a"), ("ns/b2", "team-b")]
    admission = QueueAdmission(ORG, dict(waiting), {"team-a": {H: 24}, "team-b": {H: 28}})
    order = queue_order([request(key, 1, minute=i) for i, (key, _) in enumerate(waiting)])
    assert [j.key for j in fair_order(order, None, admission.tally())] == ["ns/b1", "ns/b2", "ns/a1", "ns/a2"]


@pytest.mark.parametrize(("queues", "error"), [
    ([TenantQueue("a", parent="nowhere")], "spec.parent 'nowhere' is not a queue"),
    ([TenantQueue("a", parent="b"), TenantQueue("b", parent="a")], "cycle"),
    ([TenantQueue("a", {H: Limit(guaranteed=8, cap=4)})], "cap 4 is below guaranteed 8"),
    ([TenantQueue("a", weight=0)], "spec.weight must be > 0"),
])
def test_a_bad_tree_is_refused_naming_the_field(queues: list, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Quotas(queues)


def job(key: str, queue: str, cards: int, shrinkable: int = 0, lost: float = 0.0, priority: int = 0,
        minutes: float = 60) -> Candidate:
    return Candidate(key, queue, H, cards, shrinkable, lost, priority, NOW - timedelta(minutes=minutes))


RECLAIMS = [
    # (what, held, claimant, needed, candidates, victims (key, cards, how) or None)
    ("an elastic borrower shrinks rather than a fixed one stops",
     {"team_a": 32}, "team-b", 8, [job("a/fixed", "team-a", 8), job("a/elastic", "team-a", 24, shrinkable=8)],
     [("a/elastic", 8, "Shrink")]),
    ("the borrower losing least work since its checkpoint stops first",
     {"team_a": 32}, "team-b", 8, [job("a/x", "team-a", 8, lost=900.0), job("a/y", "team-a", 8, lost=60.0)],
     [("a/y", 8, "Stop")]),
    ("then the lowest priority", {"team_a": 32}, "team-b", 8,
     [job("a/x", "team-a", 8, priority=5), job("a/y", "team-a", 8, priority=1)], [("a/y", 8, "Stop")]),
    ("a job within its minimum runtime is not a victim", {"team_a": 32}, "team-b", 8,
     [job("a/new", "team-a", 8, minutes=2), job("a/old", "team-a", 8, lost=5000.0)], [("a/old", 8, "Stop")]),
    ("a borrower keeps its guarantee: only what it borrowed comes back", {"team_a": 20}, "team-b", 8,
     [job("a/big", "team-a", 16), job("a/small", "team-a", 4)], None),
    ("a claim that would end above its guarantee reclaims nothing", {"team_a": 32, "team_b": 12}, "team-b", 8,
     [job("a/x", "team-a", 8)], None),
    ("jobs of queues within their guarantee are never victims", {"team_a": 16, "team_b": 0}, "team-b", 8,
     [job("a/x", "team-a", 8)], None),
]


@pytest.mark.parametrize(("what", "held", "claimant", "needed", "candidates", "victims"), RECLAIMS,
                         ids=[r[0] for r in RECLAIMS])
def test_reclaim_takes_back_only_what_borrowers_borrowed(what, held, claimant, needed, candidates, victims) -> None:
    got = reclaim(ORG, usage(**held), claimant, H, needed, candidates, NOW)
    assert (list(got.victims) if got else None) == victims


QUEUE_NAMES = ["team-a", "team-b", "guest"]
BORROWERS = st.tuples(st.sampled_from(["team-a", "team-a", "team-b", "guest"]), st.integers(1, 16),
                      st.integers(0, 8), st.floats(0, 1e4), st.integers(0, 3), st.floats(0, 120))


@settings(max_examples=500, deadline=None)
@given(held=st.fixed_dictionaries({"team-a": st.integers(16, 48), "team-b": st.integers(0, 15),
                                   "guest": st.integers(0, 8)}),
       claimant=st.sampled_from(["team-b", "team-b", "team-a"]), needed=st.integers(1, 16),
       jobs=st.lists(BORROWERS, min_size=1, max_size=8))
def test_reclaim_never_sets_up_a_loop(held: dict, claimant: str, needed: int, jobs: list) -> None:
    """After any reclaim, the claimant is within its guarantee (so no one may take its cards back) and every
    victim's queue still holds at least its guarantee; at least the cards needed come back, never from a job
    within its minimum runtime. (Usages lean to team-a borrowing and team-b below its guarantee, so most
    examples do reclaim.)"""
    usage_ = ORG.rolled_up({q: {H: n} for q, n in held.items()})
    candidates = [Candidate(f"{q}/{i}", q, H, cards, min(shrink, cards - 1) if cards > 1 else 0, lost, prio,
                            NOW - timedelta(minutes=minutes))
                  for i, (q, cards, shrink, lost, prio, minutes) in enumerate(jobs)]
    got = reclaim(ORG, usage_, claimant, H, needed, candidates, NOW)
    if got is None:
        return
    by_key = {c.key: c for c in candidates}
    assert got.cards >= needed
    after = {q: dict(m) for q, m in usage_.items()}
    after[claimant][H] = after[claimant].get(H, 0) + needed
    for key, give, _ in got.victims:
        victim = by_key[key]
        assert victim.queue != claimant and NOW - victim.started >= timedelta(minutes=10)
        after[victim.queue][H] -= give
    assert ORG.borrowed(after, claimant, H) == 0
    for key, _, _ in got.victims:
        q = by_key[key].queue
        assert after[q][H] >= ORG.queues[q].limits[H].guaranteed, (q, after[q])


# -- the pool's queue with tenant queues (core.queue.schedule with a QueueAdmission) ------------------------------

TEAMS = Quotas([
    TenantQueue("team-a", {H: Limit(guaranteed=16, borrowing_limit=16)}),
    TenantQueue("team-b", {H: Limit(guaranteed=16)}, weight=2.0),
    TenantQueue("capped", {H: Limit(guaranteed=0, cap=8), "A100": Limit(guaranteed=16)}),
])


def admit(pending: list, queue_of: dict, held: dict, free: int, busy: int) -> tuple[dict, dict]:
    """`free` idle H800 nodes, `busy` more held by a job without a queue, and one node per 8 cards `held` by each
    queue's running jobs; plus 2 idle A100 nodes."""
    owners = ["other"] * busy + [q for q, models in held.items() for _ in range(models.get(H, 0) // 8)]
    allocations = [running(f"{owner}/run-{k}", (f"h800-{free + k}", 8)) for k, owner in enumerate(owners)]
    queue_of = {**queue_of, **{a.job: a.job.split("/")[0] for a in allocations if not a.job.startswith("other")}}
    snap = snapshot(nodes("h800", free + len(owners)) + nodes("a100", 2), allocations, pending)
    plan = schedule(snap, admission=QueueAdmission(TEAMS, queue_of, held))
    return {p.job: p.cards for p in plan.admitted}, {w.job: w.reason for w in plan.waiting}


SCHEDULES = [
    # (what, pending, queue_of, held by queue, free nodes, busy nodes, admitted {job: cards}, waiting {job: reason})
    ("a queue borrows idle cards beyond its guarantee", [request("a/big", 4)], {"a/big": "team-a"}, {}, 8, 0,
     {"a/big": 32}, {}),
    ("its borrowing limit holds although cards are free", [request("a/big", 5)], {"a/big": "team-a"}, {}, 8, 0,
     {}, {"a/big": "BorrowingLimitReached"}),
    ("an elastic job is placed at the size its quota allows", [request("a/el", (1, 6))], {"a/el": "team-a"},
     {"team-a": {H: 16}}, 8, 0, {"a/el": 16}, {}),
    ("a job without a queue is not limited", [request("free", 6)], {}, {}, 8, 0, {"free": 48}, {}),
    ("the quota allows it but the cards are busy", [request("b/big", 6)], {"b/big": "team-b"}, {}, 4, 4,
     {}, {"b/big": "Reserved"}),
    ("a job its queue refuses holds no reservation: the next job gets it",
     [request("cap/big", 2, minute=0), request("b/big", 6, minute=1)], {"cap/big": "capped", "b/big": "team-b"},
     {}, 4, 4, {}, {"cap/big": "QuotaCapReached", "b/big": "Reserved"}),
    ("a job is placed only on the models its queue allows", [request("cap/x", 2, models=(H, "A100"))],
     {"cap/x": "capped"}, {}, 8, 0, {"cap/x": 16}, {}),
    ("within a priority the queue with less surplus for its weight goes first (b: 8 over, weight 2)",
     [request("a/1", 1, minute=0), request("b/1", 1, minute=1)], {"a/1": "team-a", "b/1": "team-b"},
     {"team-a": {H: 24}, "team-b": {H: 24}}, 1, 0, {"b/1": 8}, {"a/1": "Reserved"}),
    ("after each admission the shares move: a queue that reached its guarantee waits for one below its own",
     [request("a/1", 1, minute=0), request("a/2", 1, minute=1), request("a/3", 1, minute=2),
      request("b/1", 1, minute=3)], {f"a/{i}": "team-a" for i in (1, 2, 3)} | {"b/1": "team-b"}, {}, 3, 0,
     {"a/1": 8, "a/2": 8, "b/1": 8}, {"a/3": "Reserved"}),
    ("an elastic job the quota refuses at its largest size on its first model runs smaller there",
     [request("cap/el", (1, 2), models=(H, "A100"))], {"cap/el": "capped"}, {}, 8, 0, {"cap/el": 8}, {}),
    ("priority still comes first", [request("a/1", 1, minute=0, priority=1), request("b/1", 1, minute=1)],
     {"a/1": "team-a", "b/1": "team-b"}, {"team-a": {H: 24}, "team-b": {H: 24}}, 1, 0, {"a/1": 8},
     {"b/1": "Reserved"}),
]


@pytest.mark.parametrize(("what", "pending", "queue_of", "held", "free", "busy", "admitted", "waiting"), SCHEDULES,
                         ids=[s[0] for s in SCHEDULES])
def test_the_queue_admits_by_quota_and_placement_together(what, pending, queue_of, held, free, busy, admitted,
                                                         waiting) -> None:
    assert admit(pending, queue_of, held, free, busy) == (admitted, waiting)
