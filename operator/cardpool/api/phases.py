"""How a TrainingJob's phase shows in its conditions, so kstatus (Flux, cli-utils) and people read it alike.

kstatus computes: Stalled=True -> Failed; Reconciling=True -> InProgress; Ready=False -> InProgress (the
real library, sigs.k8s.io/cli-utils v0.37, reads Ready too: e2e/test_gitops.py runs it); otherwise Current
(when status.observedGeneration == metadata.generation). So a job suspended on purpose is Ready: it is in
the state its spec asks for.
"""

from __future__ import annotations

from datetime import datetime

from .conditions import Condition, set_condition
from .trainingjob import Phase

READY, RECONCILING, STALLED, SUSPENDED = "Ready", "Reconciling", "Stalled", "Suspended"

# phase -> (Ready, Reconciling, Stalled, Suspended), and the kstatus result it gives
PHASE_CONDITIONS: dict[Phase, tuple[bool, bool, bool, bool]] = {
    Phase.QUEUED: (False, True, False, False),  # InProgress: waiting for cards
    Phase.STARTING: (False, True, False, False),  # InProgress: gang pods being created and started
    Phase.RUNNING: (True, False, False, False),  # Current
    Phase.RESTARTING: (False, True, False, False),  # InProgress: new attempt from the latest checkpoint
    Phase.SUSPENDED: (True, False, False, True),  # Current: suspended on purpose, as the spec asks
    Phase.SUCCEEDED: (True, False, False, False),  # Current: finished
    Phase.FAILED: (False, False, True, False),  # Failed
}
# Reasons a job waits that no time will fix: a person must act (edit the job or the pool, create the pool, fix
# the namespace's policies). The job keeps its phase and shows Stalled=True, Reconciling=False, Ready=False, so
# kstatus says Failed and Argo CD Degraded at once instead of waiting for a timeout.
NEEDS_A_PERSON = frozenset({"Unplaceable", "PoolNotFound", "InvalidPodTemplate", "PodsRefused",
                            "NoNodeMatchesTemplate"})
KSTATUS = {Phase.QUEUED: "InProgress", Phase.STARTING: "InProgress", Phase.RUNNING: "Current",
           Phase.RESTARTING: "InProgress", Phase.SUSPENDED: "Current", Phase.SUCCEEDED: "Current",
           Phase.FAILED: "Failed"}


def conditions_for_phase(conditions: list[Condition], phase: Phase, reason: str, message: str, now: datetime,
                         observed_generation: int | None) -> list[Condition]:
    """Set Ready, Reconciling, Stalled and Suspended for `phase` (stalled whatever the phase when `reason` is
    one of NEEDS_A_PERSON); each keeps its lastTransitionTime unless its status flips."""
    statuses = PHASE_CONDITIONS[phase]
    if reason in NEEDS_A_PERSON:
        statuses = (False, False, True, statuses[3])
    for type_, status in zip((READY, RECONCILING, STALLED, SUSPENDED), statuses, strict=True):
        conditions = set_condition(conditions, type_, status, reason, message, now, observed_generation)
    return conditions
