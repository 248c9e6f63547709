"""Invariants of the queue and placement over random pools and queues (hypothesis)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardpool.core.queue import queue_order, schedule
from cardpool.core.snapshot import Allocation, Group, JobRequest, Mode, Node, Packing, Snapshot, Worker

from .fleet import T0

GROUPS = [("g-h800", "H800", 1.0), ("g-a100", "A100", 0.4), ("g-910b", "Ascend910B", 0.6)]


@st.composite
def pools(draw) -> Snapshot:
    groups = draw(st.lists(st.sampled_from(GROUPS), min_size=1, max_size=3, unique=True))
    node_list: list[Node] = []
    allocations: list[Allocation] = []
    for gname, model, _ in groups:
        per_node = draw(st.sampled_from([4, 8]))
        for i in range(draw(st.integers(1, 12))):
            allocatable = draw(st.integers(0, per_node))
            node = Node(name=f"{gname}-{i}", group=gname, model=model, allocatable=allocatable, capacity=per_node,
                        topology=(f"{gname}-r{i // draw(st.sampled_from([2, 4]))}", f"{gname}-s{i // 8}"),
                        healthy=draw(st.integers(0, 4)) > 0,
                        schedulable=draw(st.integers(0, 5)) > 0,
                        used_by_others=draw(st.integers(0, 2)) if allocatable >= 2 else 0)
            node_list.append(node)
            room = max(allocatable - node.used_by_others, 0)
            if room and draw(st.booleans()):
                cards = draw(st.integers(1, room))
                allocations.append(Allocation(f"run-{gname}-{i}", (Worker(0, node.name, gname, model, cards),)))
    models = [m for _, m, _ in groups] + ["B200"]
    pending = []
    for j in range(draw(st.integers(0, 8))):
        low = draw(st.integers(1, 4))
        unit = draw(st.sampled_from([1, 2]))
        low = low + (-low % unit)
        high = low + unit * draw(st.integers(0, 3))
        prefs = tuple(draw(st.lists(st.sampled_from(models), min_size=1, max_size=3, unique=True)))
        pending.append(JobRequest(
            key=f"ns/job-{j}", cards_per_worker=draw(st.sampled_from([1, 2, 4, 8])), min_workers=low,
            max_workers=high, unit=unit, accelerators=prefs,
            desired_workers=draw(st.one_of(st.none(), st.sampled_from(list(range(low, high + 1, unit))))),
            mode=draw(st.sampled_from(list(Mode))), packing=draw(st.sampled_from(list(Packing))),
            priority=draw(st.integers(0, 2)), submitted=T0))
    return Snapshot(nodes=tuple(node_list), groups=tuple(Group(g, m, 8, r) for g, m, r in groups),
                    allocations=tuple(allocations), pending=tuple(pending))


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(pools())
def test_never_over_allocates_and_never_uses_unusable_nodes(snap: Snapshot) -> None:
    plan = schedule(snap)
    free = snap.free()
    for placement in plan.admitted:
        for node, cards in placement.cards_on().items():
            assert snap.node(node).usable, f"{placement.job} placed on unusable {node}"
            free[node] -= cards
    assert all(v >= 0 for v in free.values()), free


@PROPERTY
@given(pools())
def test_gangs_are_whole_sized_within_bounds_and_on_listed_models(snap: Snapshot) -> None:
    plan = schedule(snap)
    jobs = {j.key: j for j in snap.pending}
    decided = [p.job for p in plan.admitted] + [w.job for w in plan.waiting]
    assert sorted(decided) == sorted(jobs), "every pending job is admitted or waits, once"
    for placement in plan.admitted:
        job = jobs[placement.job]
        assert job.min_workers <= placement.size <= job.target
        assert placement.size % job.unit == 0
        assert [w.rank for w in placement.workers] == list(range(placement.size))
        assert all(w.cards == job.cards_per_worker for w in placement.workers)
        assert set(placement.models()) <= set(job.accelerators)
        if job.mode == Mode.HOMOGENEOUS:
            assert len(placement.models()) == 1
        for w in placement.workers:
            assert snap.node(w.node).model == w.model


@PROPERTY
@given(pools())
def test_backfill_leaves_the_reservation_intact(snap: Snapshot) -> None:
    plan = schedule(snap)
    if plan.reservation is None:
        return
    rank = {j.key: i for i, j in enumerate(queue_order(snap.pending))}
    head = rank[plan.reservation.job]
    free = snap.free()
    for placement in plan.admitted:  # jobs ahead of the head were placed before the reservation existed
        if rank[placement.job] < head:
            for node, cards in placement.cards_on().items():
                free[node] -= cards
    for node, reserved in plan.reservation.cards_on().items():
        behind = sum(p.cards_on().get(node, 0) for p in plan.admitted if rank[p.job] > head)
        assert behind <= max(free[node] - reserved, 0), f"{node}: backfill took reserved cards"


@PROPERTY
@given(pools(), st.randoms(use_true_random=False))
def test_the_same_snapshot_always_yields_the_same_plan(snap: Snapshot, rnd: random.Random) -> None:
    shuffled = Snapshot(nodes=tuple(rnd.sample(snap.nodes, len(snap.nodes))), groups=snap.groups,
                        allocations=tuple(rnd.sample(snap.allocations, len(snap.allocations))),
                        pending=tuple(rnd.sample(snap.pending, len(snap.pending))))
    first, again, reordered = schedule(snap), schedule(snap), schedule(shuffled)
    assert first == again
    assert first.admitted == reordered.admitted
    assert first.waiting == reordered.waiting
    assert first.reservation == reordered.reservation
