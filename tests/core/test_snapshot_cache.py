"""The pool pass builds a node of its snapshot again only when what it is built from changed: with the cache
the snapshot is the one built from scratch, pass after pass, whatever changes in between."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cardpool.core.drain import members
from cardpool.core.observed import ObservedPod
from cardpool.core.pool import NodeCache, PlanMemo, build_snapshot, group_tallies

from .test_lifecycle import job, started
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
        classified = members(POOL, nodes)
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
    first, _ = build_snapshot(POOL, NODES, [], NOW, (), {}, members(POOL, NODES), (), cache)
    nodes = [replace(NODES[0], allocatable={RESOURCE: 6}), *NODES[1:]] if changed else NODES
    second, _ = build_snapshot(POOL, nodes, [], NOW, (), {}, members(POOL, nodes), (), cache)
    assert (second.nodes[0] is first.nodes[0]) is not changed
    assert all(a is b for a, b in zip(first.nodes[1:], second.nodes[1:], strict=True))


def test_the_group_figures_kept_by_the_memo_are_the_ones_counted_from_scratch_through_every_change() -> None:
    running = job({**started(phase="Running"), "placement": [{"group": "h800", "accelerator": "H800", "workers": 2,
                                                              "nodes": ["h800-2", "h800-3"]}]})
    memo = PlanMemo()
    for what, nodes, others, foreign in [*STEPS, STEPS[0]]:
        classified = members(POOL, nodes)
        snapshot, _ = build_snapshot(POOL, nodes, [running], NOW, others, foreign, classified, (), memo.nodes,
                                     memo.allocations)
        assert memo.tallies(POOL, snapshot, foreign) == group_tallies(POOL, snapshot, foreign), what
