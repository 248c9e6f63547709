"""The pool's conditions, as kstatus (Flux, cli-utils) and the Argo CD check read them: a group no node matches
needs a person, so the pool is Stalled (kstatus Failed, Argo CD Degraded), not InProgress forever."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cardpool.api.cardpool import CardPoolSpec
from cardpool.api.conditions import find_condition
from cardpool.core.pool import reconcile_pool

from .test_pool_pass import NODES, NOW, POOL

H800_ONLY = CardPoolSpec.model_validate({**POOL.model_dump(by_alias=True, exclude_none=True), "nodeGroups": [
    g.model_dump(by_alias=True, exclude_none=True) for g in POOL.node_groups if g.name == "h800"]})
EMPTY = "a100, ascend910b, mlu590, dcu-k100, xpu-p800, metax-c500"  # the example pool's groups without nodes


@pytest.mark.parametrize(("spec", "nodes", "ready", "stalled", "reason", "message"), [
    (H800_ONLY, NODES, "True", "False", "NodesObserved", "4 nodes, 32 free cards"),
    (POOL, NODES, "False", "True", "GroupWithoutNodes", f"no node matches the selector of group(s) {EMPTY}"),
    (H800_ONLY, [], "False", "True", "GroupWithoutNodes", "no node matches the selector of group(s) h800"),
], ids=["every-group-has-nodes", "six-groups-without-nodes", "no-node-at-all"])
def test_pool_conditions(spec: CardPoolSpec, nodes: list, ready: str, stalled: str, reason: str,
                         message: str) -> None:
    status = reconcile_pool(spec, 3, None, nodes, [], NOW).status
    got = {t: find_condition(status.conditions, t) for t in ("Ready", "Reconciling", "Stalled")}
    assert (got["Ready"].status, got["Ready"].reason, got["Ready"].message) == (ready, reason, message)
    assert got["Reconciling"].status == "False"  # the pass has observed this generation: nothing in progress
    assert got["Stalled"].status == stalled
    if stalled == "True":  # the same reason and message as Ready, so any reader shows why
        assert (got["Stalled"].reason, got["Stalled"].message) == (reason, message)
    assert {c.observed_generation for c in status.conditions} == {3} and status.observed_generation == 3


def test_stalled_clears_once_a_node_matches_and_transition_times_move_only_on_a_flip() -> None:
    stalled = reconcile_pool(H800_ONLY, 1, None, [], [], NOW).status
    again = reconcile_pool(H800_ONLY, 1, stalled, [], [], NOW + timedelta(minutes=1)).status
    assert find_condition(again.conditions, "Stalled").last_transition_time == NOW
    fixed = reconcile_pool(H800_ONLY, 2, again, NODES, [], NOW + timedelta(minutes=2)).status
    assert [(c.type, c.status, c.last_transition_time - NOW) for c in fixed.conditions
            if c.type in ("Ready", "Stalled")] == [("Ready", "True", timedelta(minutes=2)),
                                                    ("Stalled", "False", timedelta(minutes=2))]
