"""The pool pass builds a node of its snapshot again only when what it is built from changed: with the cache
the snapshot is the one built from scratch, pass after pass, whatever changes in between. Its memo decides a
finished job once and leaves it out until the job changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

import cardpool.core.pool as pool_pass
from cardpool.core.drain import members
from cardpool.core.lifecycle import plan_job
from cardpool.core.observed import ObservedPod
from cardpool.core.pool import NodeCache, PlanMemo, build_snapshot, group_tallies, reconcile_pool

from .test_lifecycle import SPEC, job, started
from .test_pool_pass import NODES, NOW, POOL

RESOURCE = "nvidia.com/gpu"


def other_pod(node: str, cards: int) -> ObservedPod:
    return ObservedPod(f"other-{node}", "ns", "other", 1, 0, node, "Running", cards=cards)


STEPS = [  # (what changes before the pass, the nodes, cardpool pods of other pools, cards of foreign pods)
    ("nothing", NODES, (), {}),
    ("a node's allocatable cards drop", [replace(NODES[0], allocatable={RESOURCE: 7}), *NODES[1:]], (), {}),
    ("a node goes NotReady", [NODES[0], replace(NODES[1], conditions={"Ready": "False"}), *NODES[2:]], (), {}),
    ("another pool's pod takes cards", NODES, (other_pod("h800-2", 4),), {}),
    ("a foreign pod takes cards", NODES, (), {"h800-3": {RESOURCE: 2}}),
    ("a node is tainted", [*NODES[:3], replace(NODES[3], taints=(("dedicated", "NoSchedule", "infer"),))], (), {}),
    ("a node leaves", NODES[:3], (), {}),
    ("it comes back", NODES, (), {}),
]


def test_a_cached_snapshot_is_the_one_built_from_scratch_through_every_change() -> None:
    """With a job running on h800-2 and h800-3, the same job object every pass: its cached allocation follows
    the node that leaves and comes back."""
    running = job({**started(phase="Running"), "placement": [{"group": "h800", "accelerator": "H800", "workers": 2,
                                                              "nodes": ["h800-2", "h800-3"]}]})
    cache = NodeCache()
    held: dict = {}
    for what, nodes, others, foreign in STEPS:
        classified = members(POOL, nodes, NOW)
        cached, faulty = build_snapshot(POOL, nodes, [running], NOW, others, foreign, classified, (), cache, held)
        fresh, fresh_faulty = build_snapshot(POOL, nodes, [running], NOW, others, foreign, classified)
        assert (cached, faulty) == (fresh, fresh_faulty), what
        assert set(cache.by_name) == {n.name for n in nodes}, what
        assert [w.node for w in cached.allocations[0].workers] == [n for n in ("h800-2", "h800-3")
                                                                   if n in cache.by_name], what
        # the very same members again (the pass as a whole is reused), then with other cards held by others
        for again_foreign in (foreign, {**foreign, "h800-0": {RESOURCE: 1}}):
            again = build_snapshot(POOL, nodes, [running], NOW, others, again_foreign, classified, (), cache, held)
            assert again == build_snapshot(POOL, nodes, [running], NOW, others, again_foreign, classified), what


@pytest.mark.parametrize("changed", [False, True])
def test_unchanged_nodes_are_not_built_again(changed: bool) -> None:
    cache = NodeCache()
    first, _ = build_snapshot(POOL, NODES, [], NOW, (), {}, members(POOL, NODES, NOW), (), cache)
    nodes = [replace(NODES[0], allocatable={RESOURCE: 6}), *NODES[1:]] if changed else NODES
    second, _ = build_snapshot(POOL, nodes, [], NOW, (), {}, members(POOL, nodes, NOW), (), cache)
    assert (second.nodes[0] is first.nodes[0]) is not changed
    assert all(a is b for a, b in zip(first.nodes[1:], second.nodes[1:], strict=True))


def test_the_group_figures_kept_by_the_memo_are_the_ones_counted_from_scratch_through_every_change() -> None:
    running = job({**started(phase="Running"), "placement": [{"group": "h800", "accelerator": "H800", "workers": 2,
                                                              "nodes": ["h800-2", "h800-3"]}]})
    memo = PlanMemo()
    for what, nodes, others, foreign in [*STEPS, STEPS[0]]:
        classified = members(POOL, nodes, NOW)
        snapshot, _ = build_snapshot(POOL, nodes, [running], NOW, others, foreign, classified, (), memo.nodes,
                                     memo.allocations)
        assert memo.tallies(POOL, snapshot, foreign) == group_tallies(POOL, snapshot, foreign), what


def _finished(name: str, ttl: int | None = None):
    """A job that succeeded a minute ago, its pods gone and its status as its last plan wrote it."""
    spec = SPEC.model_copy(update={"ttl_seconds_after_finished": ttl})
    ended = replace(job(started(phase="Succeeded"), spec=spec), name=name)
    ended.status.completion_time = NOW - timedelta(minutes=1)
    return replace(ended, status=plan_job(ended, NOW).status)


def test_a_finished_job_is_decided_once_and_left_out_until_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its plan reads nothing but the job: faults, other jobs and the fault rates changing do not decide it
    again (they forget every other job's plan); its spec changing does; one with a TTL is decided until it
    goes. Each pass's plans are the ones a pass without the memo makes."""
    decided: list[str] = []
    real = pool_pass.plan_job

    def counted(observed, *args, **kwargs):
        decided.append(observed.name)
        return real(observed, *args, **kwargs)

    monkeypatch.setattr(pool_pass, "plan_job", counted)
    done, kept = _finished("done"), _finished("kept", ttl=3600)
    running = replace(job({**started(phase="Running"), "placement": [
        {"group": "h800", "accelerator": "H800", "workers": 2, "nodes": ["h800-2", "h800-3"]}]},
        pods=[(1, 0, "Running"), (1, 1, "Running")]), name="running")
    memo = PlanMemo()
    lost = [NODES[0], NODES[1], replace(NODES[2], conditions={"Ready": "False"}), NODES[3]]

    def new_spec(j):
        return replace(j, spec=j.spec.model_copy(update={"priority": 5}), generation=2)

    passes = [  # (what, nodes, what happens to the finished job first, how often each is decided: done, kept)
        ("first", NODES, None, (1, 1)),
        ("nothing changed", NODES, None, (0, 0)),
        ("a node under the running job goes NotReady: every other plan is forgotten", lost, None, (0, 1)),
        ("its spec changes", lost, new_spec, (1, 0)),
        ("its status is written (observedGeneration)", lost, None, (1, 0)),
        ("nothing changed again", lost, None, (0, 0)),
    ]
    for what, nodes, change, counts in passes:
        done = change(done) if change else done
        jobs = [done, kept, running]
        decided.clear()
        plan = reconcile_pool(POOL, 1, None, nodes, jobs, NOW, memo=memo)
        assert (decided.count("done"), decided.count("kept")) == counts, what
        fresh = reconcile_pool(POOL, 1, None, nodes, jobs, NOW)
        assert [(p.job, p.status, p.acts) for p in plan.jobs] == [(p.job, p.status, p.acts) for p in fresh.jobs]
        if plan.jobs[0].status_changed:  # the operator writes it; the watch shows it
            done = replace(done, status=plan.jobs[0].status)
    expired = reconcile_pool(POOL, 1, None, lost, jobs, NOW + timedelta(hours=1), memo=memo)
    assert [p.delete_job for p in expired.jobs] == [False, True, False]
