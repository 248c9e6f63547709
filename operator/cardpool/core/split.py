"""Splitting a job's global batch over its ranks in proportion to their throughput, in whole samples that add
up exactly to the global batch (largest remainder: each rank gets the floor of its exact quota, and the
samples left over go to the largest remainders, ties to the lower rank)."""

from __future__ import annotations

from cardpool.api.trainingjob import GroupPlacement


def batch_shares(total: int, weights: list[float]) -> list[int]:
    if not weights:
        return []
    if total < 0 or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"cannot split {total} over weights {weights}")
    whole = sum(weights)
    quotas = [total * w / whole for w in weights]
    shares = [int(q) for q in quotas]
    left = total - sum(shares)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - shares[i]), i))
    for i in by_remainder[:left]:
        shares[i] += 1
    return shares


def rank_shares(placement: list[GroupPlacement], global_batch: int) -> list[int]:
    """Each rank's share of the global batch, rank order, from the recorded placement (every worker of a
    group has the group's relative throughput and the job's cards per worker, so cards cancel out)."""
    weights = [0.0] * sum(gp.workers for gp in placement)
    for gp in placement:
        for i in range(gp.workers):
            weights[gp.first_rank + i] = gp.relative_throughput
    return batch_shares(global_batch, weights)
