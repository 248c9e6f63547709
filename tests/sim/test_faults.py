"""The failure model: seeded, at the rates it states (statistical checks with stated tolerances), struck
nodes in proportion to their cards, racks together when asked."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest

from cardpool.sim.faults import HOUR, FaultModel, faults

FLEET = [(f"n{i:03d}", 8, f"r{i // 8}") for i in range(100)]  # 800 cards


def test_the_same_seed_gives_the_same_faults() -> None:
    model = FaultModel()
    assert list(faults(model, FLEET, 1000 * HOUR, 7)) == list(faults(model, FLEET, 1000 * HOUR, 7))
    assert list(faults(model, FLEET, 1000 * HOUR, 7)) != list(faults(model, FLEET, 1000 * HOUR, 8))


def test_faults_come_at_the_stated_rate_and_mix() -> None:
    model = FaultModel().scaled(3.0, 800)  # the fleet's 800 cards: one interruption per 3 hours
    horizon = 30_000 * HOUR
    seen = list(faults(model, FLEET, horizon, 1))
    expected = horizon / (3 * HOUR)  # 10,000
    # a Poisson count: within 5 standard deviations (a false alarm about once in 3.5 million runs)
    assert abs(len(seen) - expected) < 5 * math.sqrt(expected)
    kinds = Counter(f.kind for f in seen)
    for kind, share in (("node", model.node_share), ("card", model.card_share), ("software", model.software_share)):
        sd = math.sqrt(len(seen) * share * (1 - share))
        assert abs(kinds[kind] - share * len(seen)) < 5 * sd, kinds
    assert all(a.time <= b.time for a, b in itertools.pairwise(seen))
    assert all(f.repair_at == pytest.approx(f.time + model.repair_s) for f in seen if f.kind != "software")
    assert all(f.repair_at is None for f in seen if f.kind == "software")


def test_a_node_with_more_cards_fails_more_often() -> None:
    fleet = [("big", 8, "r0"), ("small", 1, "r0")]
    seen = Counter(f.nodes[0] for f in faults(FaultModel(card_mtbf_h=9.0), fleet, 20_000 * HOUR, 3))
    share = seen["big"] / (seen["big"] + seen["small"])  # 8/9 expected
    n = seen["big"] + seen["small"]
    assert abs(share - 8 / 9) < 5 * math.sqrt((8 / 9) * (1 / 9) / n)


def test_a_rack_fault_strikes_every_node_of_the_rack() -> None:
    model = FaultModel(card_mtbf_h=100.0, rack_share=1.0)
    for fault in faults(model, FLEET, 200 * HOUR, 5):
        if fault.kind == "node":
            rack = {r for n, _, r in FLEET if n == fault.nodes[0]}
            assert set(fault.nodes) == {n for n, _, r in FLEET if r in rack} and len(fault.nodes) > 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"node_share": 0.5}, "must be 1"),
    ({"card_mtbf_h": 0.0}, "card_mtbf_h must be positive"),
])
def test_an_inconsistent_model_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultModel(**kwargs)
