"""Condition helpers are pure and move lastTransitionTime only when a status flips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cardpool.api.conditions import ConditionStatus, find_condition, is_true, remove_condition, set_condition
from cardpool.api.phases import KSTATUS, PHASE_CONDITIONS, conditions_for_phase
from cardpool.api.trainingjob import Phase

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_new_condition_starts_at_now() -> None:
    conds = set_condition([], "Ready", True, "Running", "all workers up", T0, observed_generation=3)
    ready = find_condition(conds, "Ready")
    assert ready.status == ConditionStatus.TRUE
    assert ready.last_transition_time == T0
    assert ready.observed_generation == 3


def test_same_status_keeps_transition_time_but_updates_reason_and_generation() -> None:
    conds = set_condition([], "Ready", True, "Running", "4 workers", T0, 1)
    conds = set_condition(conds, "Ready", True, "Running", "8 workers", T1, 2)
    ready = find_condition(conds, "Ready")
    assert ready.last_transition_time == T0
    assert (ready.message, ready.observed_generation) == ("8 workers", 2)


def test_flip_moves_transition_time() -> None:
    conds = set_condition([], "Ready", True, "Running", "", T0)
    conds = set_condition(conds, "Ready", False, "Restarting", "node lost", T1)
    assert find_condition(conds, "Ready").last_transition_time == T1
    assert not is_true(conds, "Ready")


def test_helpers_do_not_mutate_their_input_and_keep_order() -> None:
    original = set_condition([], "Ready", True, "Running", "", T0)
    original = set_condition(original, "Stalled", False, "Running", "", T0)
    snapshot = list(original)
    changed = set_condition(original, "Ready", False, "Restarting", "", T1)
    assert original == snapshot
    assert [c.type for c in changed] == ["Ready", "Stalled"]
    assert [c.type for c in remove_condition(changed, "Ready")] == ["Stalled"]


@pytest.mark.parametrize("phase", list(Phase))
def test_every_phase_maps_to_kstatus_through_stalled_and_reconciling(phase: Phase) -> None:
    conds = conditions_for_phase([], phase, "Why", "details", T0, 7)
    stalled, reconciling = is_true(conds, "Stalled"), is_true(conds, "Reconciling")
    kstatus = "Failed" if stalled else "InProgress" if reconciling else "Current"
    assert kstatus == KSTATUS[phase]
    assert all(c.observed_generation == 7 for c in conds)
    assert len(conds) == 4


def test_phase_change_flips_only_what_changes() -> None:
    conds = conditions_for_phase([], Phase.RUNNING, "Running", "", T0, 1)
    conds = conditions_for_phase(conds, Phase.RESTARTING, "NodeNotReady", "", T1, 1)
    assert find_condition(conds, "Ready").last_transition_time == T1
    assert find_condition(conds, "Stalled").last_transition_time == T0  # False before and after
    assert set(PHASE_CONDITIONS) == set(Phase)
