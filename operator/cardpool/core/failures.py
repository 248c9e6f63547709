"""What ended an attempt, and what spec.failurePolicy says to do about it. Pure.

A failure has a reason (the container's termination reason when it says more than "Error", else
ExitCode<N>; a node fault's reason; PodLost; Hang). Rules are tried in order; a rule matches when every
criterion it sets matches (onExitCodes, onReasons, onPodConditions, onNodeFault). Without a matching rule,
faults of the infrastructure (node faults, lost pods, pods with a DisruptionTarget condition: preemption,
eviction) restart without counting, and everything else restarts and counts against maxRestarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cardpool.api.trainingjob import ExitCodeOperator, FailureAction, FailurePolicy, FailureRule

from .observed import ObservedPod

BACKOFF_MAX_S = 600
BACKOFF_RESET_S = 600
"""An attempt that ran this long before failing starts a new row of failures (the kubelet's reset is 10 min)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    message: str
    exit_code: int | None = None
    container_reason: str | None = None
    pod_conditions: frozenset[str] = frozenset()
    node_fault: bool = False

    @property
    def infrastructure(self) -> bool:
        return self.node_fault or self.reason == "PodLost" or "DisruptionTarget" in self.pod_conditions


@dataclass(frozen=True, slots=True)
class Decision:
    action: FailureAction
    rule: int | None
    """Index of the matching rule in spec.failurePolicy.rules; None for the default."""

    @property
    def counted(self) -> bool:
        return self.action == FailureAction.RESTART

    def describe(self) -> str:
        return f"rule {self.rule} says {self.action}" if self.rule is not None else f"default: {self.action}"


def pod_failure(pod: ObservedPod) -> Failure:
    if pod.reason and pod.reason not in ("Error", "Completed"):
        reason = pod.reason
    elif "DisruptionTarget" in pod.conditions:
        reason = "DisruptionTarget"
    else:
        reason = f"ExitCode{pod.exit_code}" if pod.exit_code is not None else "Failed"
    return Failure(reason, f"rank {pod.rank} failed on {pod.node} (exit code {pod.exit_code}, {pod.reason})",
                   pod.exit_code, pod.reason, pod.conditions)


def first_failure(failed: list[ObservedPod]) -> Failure:
    """The root cause is most likely the rank that ended first (the others lose their peers after it)."""
    first = min(failed, key=lambda p: (p.finished_at or _EPOCH, p.rank))
    return pod_failure(first)


def _matches(rule: FailureRule, f: Failure) -> bool:
    if rule.on_exit_codes is not None:
        if f.exit_code is None:
            return False
        inside = f.exit_code in rule.on_exit_codes.values
        if inside != (rule.on_exit_codes.operator == ExitCodeOperator.IN):
            return False
    if rule.on_reasons is not None and not ({f.reason, f.container_reason} & set(rule.on_reasons)):
        return False
    if rule.on_pod_conditions is not None and not (f.pod_conditions & set(rule.on_pod_conditions)):
        return False
    return rule.on_node_fault is None or rule.on_node_fault == f.node_fault


def decide(failure: Failure, policy: FailurePolicy) -> Decision:
    for i, rule in enumerate(policy.rules):
        if _matches(rule, failure):
            return Decision(rule.action, i)
    default = FailureAction.RESTART_IGNORING_BUDGET if failure.infrastructure else FailureAction.RESTART
    return Decision(default, None)


def backoff(policy: FailurePolicy, streak: int) -> timedelta:
    """Delay before the restart after the `streak`th counted failure in a row (see streak): none for the
    first, then backoffSeconds doubling up to BACKOFF_MAX_S."""
    if streak <= 1 or policy.backoff_seconds == 0:
        return timedelta(0)
    return timedelta(seconds=min(policy.backoff_seconds * 2 ** (streak - 2), BACKOFF_MAX_S))


def streak(previous: int, ran_s: float) -> int:
    """Counted failures in a row, this one included, when the failed attempt had run `ran_s` seconds with all
    its workers: a run of BACKOFF_RESET_S or more starts a new row. Without it, a job that fails once a day
    would wait the longest backoff after every failure from its seventh on."""
    return 1 if ran_s >= BACKOFF_RESET_S else previous + 1
