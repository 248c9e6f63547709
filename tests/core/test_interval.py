"""The Young/Daly checkpoint interval: its arithmetic, and that it is where the first-order waste is least."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardpool.core.interval import expected_waste, young_daly


@pytest.mark.parametrize(("mtbf_s", "save_s", "interval_s"), [
    (3 * 3600, 1.0, math.sqrt(2 * 10800)),  # 147 s: a 1 s asynchronous save at one fault per 3 h
    (3 * 3600, 60.0, math.sqrt(2 * 10800 * 60)),  # 1,138 s
    (24 * 3600, 60.0, math.sqrt(2 * 86400 * 60)),  # 3,220 s
    (100.0, 50.0, 100.0),  # a save of half the MTBF or more: save once per MTBF
    (100.0, 80.0, 100.0),
])
def test_the_advised_interval(mtbf_s: float, save_s: float, interval_s: float) -> None:
    assert young_daly(mtbf_s, save_s) == pytest.approx(interval_s)


@pytest.mark.parametrize(("mtbf_s", "save_s"), [(0.0, 1.0), (-5.0, 1.0), (3600.0, 0.0), (3600.0, -1.0)])
def test_nonsense_is_refused(mtbf_s: float, save_s: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        young_daly(mtbf_s, save_s)


@given(st.floats(600, 10 * 86400), st.floats(0.1, 120), st.floats(0.5, 2.0))
def test_no_other_interval_wastes_less(mtbf_s: float, save_s: float, factor: float) -> None:
    best = young_daly(mtbf_s, save_s)
    assert expected_waste(best, mtbf_s, save_s) <= expected_waste(best * factor, mtbf_s, save_s) + 1e-12


def test_the_waste_at_the_advised_interval_is_about_the_square_root_of_twice_save_over_mtbf() -> None:
    mtbf_s, save_s = 3 * 3600, 1.0
    assert expected_waste(young_daly(mtbf_s, save_s), mtbf_s, save_s) == pytest.approx(math.sqrt(2 * save_s / mtbf_s))
