"""Elastic sizing of running jobs: how small to restart after losing capacity, and whether to grow."""

from __future__ import annotations

from dataclasses import dataclass

from .placement import Ledger, Placement, place, throughputs
from .snapshot import JobRequest, Snapshot


@dataclass(frozen=True, slots=True)
class Resize:
    job: str
    current: int
    size: int | None
    """Workers the job can run with now (its own cards counted free), None when below its minimum."""
    placement: Placement | None

    @property
    def can_grow(self) -> bool:
        return self.size is not None and self.size > self.current

    @property
    def must_shrink(self) -> bool:
        return self.size is not None and self.size < self.current


def resize(snapshot: Snapshot, job: JobRequest, current: int) -> Resize:
    """The largest admissible size for a running job if it restarted now on its own cards plus the free ones.

    Used after a fault (restart at the largest size that fits, >= min, instead of waiting) and to decide
    growth toward the desired size when capacity returns."""
    ledger = Ledger(snapshot, snapshot.free(release=frozenset({job.key})))
    placement = place(job, ledger, throughputs(snapshot))
    return Resize(job.key, current, placement.size if placement else None, placement)
