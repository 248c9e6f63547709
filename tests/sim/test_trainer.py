"""The trainer model's accounting on hand-computed cases: kept and lost training, ETTR and goodput."""

from __future__ import annotations

import pytest

from cardpool.sim.trainer import Timeline, TrainerModel


def test_a_job_without_faults_keeps_all_its_training() -> None:
    t = Timeline(first_start=0.0)
    t.trained(0, 100, 100.0, 8)  # 100 steps in 100 s on 8 cards, then a save
    t.trained(100, 200, 100.0, 8)
    t.held_card_s = 8 * 220.0  # the pods held their cards 220 s (20 s of start and saves)
    t.end = 220.0
    assert t.kept_s == 200.0 and t.lost_s == 0.0
    assert t.ettr(500.0) == pytest.approx(200 / 220)  # ended at 220 s: later time does not count
    assert t.goodput() == pytest.approx(200 / 220)


def test_training_beyond_the_resume_step_is_lost_and_attributed_to_its_cause() -> None:
    t = Timeline(first_start=0.0)
    t.trained(0, 100, 100.0, 8)
    t.trained(100, 160, 60.0, 8)  # the fault came 60 s after the save at step 100
    assert t.resume(100, "NodeNotReady") == pytest.approx(60.0)
    assert t.kept_s == pytest.approx(100.0) and t.losses == [("NodeNotReady", pytest.approx(60.0))]


def test_a_resume_inside_a_segment_keeps_its_share() -> None:
    t = Timeline(first_start=0.0)
    t.trained(0, 200, 100.0, 16)  # 2 steps a second
    assert t.resume(50, "ExitCode1") == pytest.approx(75.0)
    assert t.kept_s == pytest.approx(25.0) and t.kept_card_s == pytest.approx(25.0 * 16)


def test_a_resume_from_an_older_checkpoint_loses_several_segments() -> None:
    t = Timeline(first_start=0.0)
    for first in range(0, 400, 100):
        t.trained(first, first + 100, 50.0, 8)
    assert t.resume(100, "CardFault") == pytest.approx(150.0)  # the refused saves' work is gone too
    assert t.kept_s == pytest.approx(50.0)


def test_a_resume_at_the_last_step_loses_nothing() -> None:
    t = Timeline(first_start=0.0)
    t.trained(0, 100, 100.0, 8)
    assert t.resume(100, "Growing") == 0.0 and t.losses == []


def test_before_its_first_start_a_job_has_no_ettr() -> None:
    assert Timeline().ettr(100.0) is None and Timeline().goodput() is None


@pytest.mark.parametrize(("scaling", "share", "rate"), [
    (1.0, 1.0, 1.0),  # full size: one step per step_s
    (1.0, 0.5, 0.5),  # half the cards: half the rate, when scaling is linear
    (0.9, 0.5, 0.45),  # 90% efficiency kept per halving
    (0.9, 0.25, 0.25 * 0.81),
    (1.0, 0.0, 0.0),
])
def test_the_step_rate_follows_the_cards_and_the_scaling(scaling: float, share: float, rate: float) -> None:
    assert TrainerModel(scaling=scaling).rate(1.0, 64.0, 64.0 * share) == pytest.approx(rate)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"save_s": -1.0}, "save_s must not be negative"),
    ({"interval_s": 0.0}, "interval_s must be positive"),
    ({"scaling": 1.5}, "scaling must be in"),
])
def test_a_nonsense_trainer_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainerModel(**kwargs)
