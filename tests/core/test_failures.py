"""spec.failurePolicy as a table: a failure + the rules -> the action and whether it counts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cardpool.api.trainingjob import FailureAction, FailurePolicy
from cardpool.core.failures import Failure, backoff, decide, first_failure, pod_failure
from cardpool.core.observed import ObservedPod

RULES = FailurePolicy.model_validate({"rules": [
    {"action": "Fail", "onExitCodes": {"operator": "In", "values": [2, 3]}},
    {"action": "RestartIgnoringBudget", "onReasons": ["OOMKilled"], "onExitCodes": {"operator": "In", "values": [137]}},
    {"action": "Fail", "onReasons": ["Hang"]},
    {"action": "Restart", "onNodeFault": True, "onReasons": ["CardFault"]},
]})


def failed(exit_code: int | None, reason: str = "Error", conditions: frozenset[str] = frozenset()) -> Failure:
    return pod_failure(ObservedPod("p", "ns", "job", 1, 0, "n", "Failed", exit_code=exit_code, reason=reason,
                                   conditions=conditions))


R, RIB, F = FailureAction.RESTART, FailureAction.RESTART_IGNORING_BUDGET, FailureAction.FAIL
TABLE = [
    # (name, failure, policy, expected action, matching rule)
    ("a permanent exit code fails", failed(2), RULES, F, 0),
    ("other exit codes restart and count", failed(1), RULES, R, None),
    ("both criteria of a rule must match", failed(137, "OOMKilled"), RULES, RIB, 1),
    ("137 without OOMKilled is not rule 1", failed(137), RULES, R, None),
    ("a fault reason matches onReasons", Failure("Hang", "no progress"), RULES, F, 2),
    ("a node fault rule", Failure("CardFault", "x", node_fault=True), RULES, R, 3),
    ("other node faults do not count by default", Failure("NodeNotReady", "x", node_fault=True), RULES, RIB, None),
    ("a lost pod does not count by default", Failure("PodLost", "x"), FailurePolicy(), RIB, None),
    ("a disruption (preemption, eviction) does not count by default",
     failed(143, conditions=frozenset({"DisruptionTarget"})), FailurePolicy(), RIB, None),
    ("a hang counts by default", Failure("Hang", "x"), FailurePolicy(), R, None),
    ("NotIn matches codes outside the list",
     failed(9), FailurePolicy.model_validate({"rules": [{"action": "Fail", "onExitCodes": {
         "operator": "NotIn", "values": [1]}}]}), F, 0),
]


@pytest.mark.parametrize(("failure", "policy", "action", "rule"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_failure_policy(failure: Failure, policy: FailurePolicy, action: FailureAction, rule: int | None) -> None:
    decision = decide(failure, policy)
    assert (decision.action, decision.rule) == (action, rule)
    assert decision.counted == (action == R)


def test_the_reason_says_what_happened() -> None:
    assert failed(137).reason == "ExitCode137"
    assert failed(137, "OOMKilled").reason == "OOMKilled"
    assert failed(143, conditions=frozenset({"DisruptionTarget"})).reason == "DisruptionTarget"


def test_the_rank_that_ended_first_is_the_root_cause() -> None:
    from datetime import UTC, datetime
    t = datetime(2026, 11, 25, tzinfo=UTC)
    pods = [ObservedPod("a", "ns", "j", 1, 0, "n", "Failed", exit_code=1, finished_at=t + timedelta(seconds=5)),
            ObservedPod("b", "ns", "j", 1, 3, "n", "Failed", exit_code=137, reason="OOMKilled", finished_at=t)]
    assert first_failure(pods).reason == "OOMKilled"


@pytest.mark.parametrize(("counted", "seconds"), [(1, 0), (2, 10), (3, 20), (4, 40), (8, 600), (30, 600)])
def test_backoff_doubles_from_the_second_counted_failure_in_a_row(counted: int, seconds: int) -> None:
    assert backoff(FailurePolicy(), counted) == timedelta(seconds=seconds)
