"""A control-plane disruption as a table of passes: which nodes are out of contact at each moment -> which are
held (Disrupted), which are faults, and what the pool's status remembers in between."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cardpool.core.drain import classify_pool, plan_drains
from cardpool.core.health import DISRUPTED, NODE_UNKNOWN
from cardpool.core.pool import reconcile_pool

from .test_drain import NOW, POOL, UNKNOWN, node

GRACE = POOL.health.disruption_grace_seconds
EIGHT = range(8)

# (name, passes: [(seconds after the first, nodes out of contact)], per pass: (held nodes, faulty nodes))
SCENARIOS = [
    ("most of the pool lost together is held, and held while it reports again one by one",
     [(0, {0, 1, 2, 3, 4, 5}), (15, {0, 1, 2}), (30, {0}), (45, set())],
     [({0, 1, 2, 3, 4, 5}, set()), ({0, 1, 2}, set()), ({0}, set()), (set(), set())]),
    ("a node still silent a grace after most of the pool came back is a fault",
     [(0, {0, 1, 2, 3, 4}), (10, {0}), (10 + GRACE - 1, {0}), (10 + GRACE, {0})],
     [({0, 1, 2, 3, 4}, set()), ({0}, set()), ({0}, set()), (set(), {0})]),
    ("a node lost after the disruption began to recede is a fault, not part of it",
     [(0, {0, 1, 2, 3, 4}), (10, {0}), (20, {0, 7})],
     [({0, 1, 2, 3, 4}, set()), ({0}, set()), ({0}, {7})]),
    ("a node back and lost again once the disruption ended is a fault",
     [(0, {0, 1, 2, 3, 4}), (10, set()), (20, {3})],
     [({0, 1, 2, 3, 4}, set()), (set(), set()), (set(), {3})]),
    ("half of the pool or less lost, with no disruption before, are faults",
     [(0, {0, 1, 2, 3})], [(set(), {0, 1, 2, 3})]),
    ("a second wave while most of the pool is still lost joins the disruption",
     [(0, {0, 1, 2, 3, 4}), (10, {0, 1, 2, 3, 4, 5, 6}), (20, {5, 6})],
     [({0, 1, 2, 3, 4}, set()), ({0, 1, 2, 3, 4, 5, 6}, set()), ({5, 6}, set())]),
]


@pytest.mark.parametrize(("passes", "expected"), [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS])
def test_disruption_scenarios(passes: list[tuple[int, set[int]]], expected: list[tuple[set[int], set[int]]]) -> None:
    record = None
    for (at, lost), (held, faulty) in zip(passes, expected, strict=True):
        nodes = [node(i, UNKNOWN) if i in lost else node(i) for i in EIGHT]
        members, record = classify_pool(POOL, nodes, NOW + timedelta(seconds=at), record)
        reasons = {int(m.node.name.split("-")[1]): m.health.reason for m in members}
        assert ({i for i, r in reasons.items() if r == DISRUPTED},
                {i for i, r in reasons.items() if r == NODE_UNKNOWN}) == (held, faulty), f"at {at} s"
        drains = plan_drains({"mixed": POOL}, nodes, NOW + timedelta(seconds=at), {"mixed": members})
        assert not {a.node for a in drains.actions} & {f"h800-{i}" for i in held}, "a held node is never drained"


def test_the_pool_status_remembers_the_disruption_and_tells_its_start_and_end_once() -> None:
    lost = [node(i, UNKNOWN) for i in range(5)] + [node(i) for i in range(5, 8)]
    first = reconcile_pool(POOL, 1, None, lost, [], NOW)
    assert first.status.disruption is not None and first.status.disruption.nodes == [f"h800-{i}" for i in range(5)]
    assert [e[1] for e in first.events] == ["Disruption"]
    assert not first.faulty_nodes  # no job restarts for it

    # another replica, after a crash, reads the record back from the status: the last node still out is held
    tail = [node(0, UNKNOWN)] + [node(i) for i in range(1, 8)]
    later = NOW + timedelta(seconds=20)
    second = reconcile_pool(POOL, 1, first.status, tail, [], later)
    assert second.status.disruption.nodes == ["h800-0"] and second.status.disruption.receding_since == later
    assert not second.events and not second.faulty_nodes
    assert second.recheck_at == later + timedelta(seconds=GRACE), "the pass looks again when the grace ends"

    third = reconcile_pool(POOL, 1, second.status, tail, [], later + timedelta(seconds=GRACE))
    assert third.status.disruption is None
    assert [e[1] for e in third.events] == ["DisruptionOver"]
    assert third.faulty_nodes == {"h800-0": NODE_UNKNOWN}


def test_without_the_record_the_same_tail_is_a_fault() -> None:
    """What the memory is for: the tail of a disruption alone looks like a fault."""
    tail = [node(0, UNKNOWN)] + [node(i) for i in range(1, 8)]
    assert reconcile_pool(POOL, 1, None, tail, [], NOW).faulty_nodes == {"h800-0": NODE_UNKNOWN}
