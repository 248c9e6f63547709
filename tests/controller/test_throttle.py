from __future__ import annotations

from cardpool.controller.throttle import Throttle


def test_one_line_per_subject_and_cause_a_period() -> None:
    now = {"t": 0.0}
    throttle = Throttle(period=60, clock=lambda: now["t"])
    assert throttle.allow("ns/a", 422) and not throttle.allow("ns/a", 422)
    assert throttle.allow("ns/a", 403) and throttle.allow("ns/b", 422)  # other causes, other jobs: their own line
    now["t"] = 59.9
    assert not throttle.allow("ns/a", 422)
    now["t"] = 60
    assert throttle.allow("ns/a", 422)


def test_its_memory_stays_bounded() -> None:
    now = {"t": 0.0}
    throttle = Throttle(period=60, clock=lambda: now["t"], size=10)
    for i in range(10):
        throttle.allow(i, "x")
    now["t"] = 61
    assert throttle.allow("new", "x") and len(throttle._last) == 1
