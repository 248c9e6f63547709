"""The global batch split over ranks by throughput: whole samples that add up exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardpool.api.trainingjob import GroupPlacement
from cardpool.core.split import batch_shares, rank_shares

TABLE = [
    # (name, global batch, weights, shares)
    ("even", 1024, [1.0] * 4, [256] * 4),
    ("by throughput", 1024, [1.0, 0.6], [640, 384]),
    ("the remainder goes to the largest remainders", 10, [1.0, 1.0, 1.0], [4, 3, 3]),
    ("ties go to the lower rank", 5, [1.0, 1.0], [3, 2]),
    ("rounding that adds up: 1000 over 1.0/0.6/0.45", 1000, [1.0, 0.6, 0.45], [488, 293, 219]),
    ("fewer samples than ranks", 2, [1.0, 1.0, 1.0], [1, 1, 0]),
    ("nothing to split", 0, [1.0, 0.5], [0, 0]),
]


@pytest.mark.parametrize(("total", "weights", "shares"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_batch_shares(total: int, weights: list[float], shares: list[int]) -> None:
    assert batch_shares(total, weights) == shares


@given(st.integers(0, 100_000), st.lists(st.sampled_from([1.0, 0.6, 0.45, 0.35, 0.3]), min_size=1, max_size=64))
def test_shares_add_up_and_stay_within_one_sample_of_the_exact_quota(total: int, weights: list[float]) -> None:
    shares = batch_shares(total, weights)
    assert sum(shares) == total and all(s >= 0 for s in shares)
    for share, w in zip(shares, weights, strict=True):
        assert abs(share - total * w / sum(weights)) < 1
    # a faster rank never gets fewer samples than a slower one
    for i, wi in enumerate(weights):
        for j, wj in enumerate(weights):
            if wi > wj:
                assert shares[i] >= shares[j]


def test_rank_shares_follow_the_recorded_placement() -> None:
    placement = [GroupPlacement(group="h800", accelerator="H800", workers=2, first_rank=0, relative_throughput=1.0),
                 GroupPlacement(group="ascend", accelerator="Ascend910B", workers=2, first_rank=2,
                                relative_throughput=0.6)]
    assert rank_shares(placement, 1000) == [313, 313, 187, 187]  # 312.5 and 187.5 each: ties to lower ranks


def test_a_split_over_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot split"):
        batch_shares(10, [0.0, 0.0])
