"""The trainer model: how a simulated job's ranks spend their time once its pods run, and the accounting of
which training was kept.

An attempt starts training `restart_s` after its last pod runs (rendezvous, loading the checkpoint). It then
makes steps at a rate proportional to its cards times their relative throughput (the job's `step_s` is the
step time at its full size on cards of throughput 1.0), times `scaling` per halving of the world size below
its largest (1.0: perfectly linear). Every interval of training (its own, or the operator's advice) it
saves, which stops training for `save_s` seconds (an asynchronous in-memory save blocks about a second, a
synchronous save to storage a minute or more). A planned stop (growing, a move) saves first; a fault does
not: its ranks are gone.

What was kept is a timeline of training segments (steps, seconds, cards). A new attempt resumes at the step
the operator gives it (status.history's resumedFromStep); the segments beyond it are lost work. Figures:
- ETTR: kept training seconds over wall seconds since the job first started;
- goodput: kept card-seconds of training over card-seconds of cards held by its pods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrainerModel:
    save_s: float = 1.0
    """Training stopped per checkpoint save."""
    interval_s: float | None = None
    """Seconds of training between saves; None: the operator's advice (CARDPOOL_CHECKPOINT_INTERVAL_SECONDS,
    status.history's checkpointIntervalSeconds of the attempt), `default_interval_s` while it has none."""
    default_interval_s: float = 600.0
    """The trainer's own interval until the operator advises one (it needs a reported save time first)."""
    restart_s: float = 60.0
    """From the last pod running to training: rendezvous and loading the checkpoint."""
    pod_start_s: float = 20.0
    """From a pod's creation to Running: binding, kubelet, image already cached."""
    terminate_s: float = 5.0
    """From a pod's deletion to its end on a healthy node (plus the save of a planned stop)."""
    scaling: float = 1.0
    """Efficiency kept per halving of the world size (1.0: linear)."""

    def __post_init__(self) -> None:
        for name in ("save_s", "restart_s", "pod_start_s", "terminate_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.interval_s is not None and self.interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {self.interval_s}")
        if self.default_interval_s <= 0:
            raise ValueError(f"default_interval_s must be positive, got {self.default_interval_s}")
        if not 0 < self.scaling <= 1:
            raise ValueError(f"scaling must be in (0, 1], got {self.scaling}")

    def rate(self, step_s: float, full_power: float, power: float) -> float:
        """Steps per second with `power` (cards x relative throughput) of the job's `full_power`."""
        if power <= 0:
            return 0.0
        share = power / full_power
        efficiency = self.scaling ** math.log2(1 / share) if share < 1 else 1.0
        return share * efficiency / step_s


@dataclass(frozen=True)
class Segment:
    first: float
    """Step the segment started from."""
    last: float
    seconds: float
    cards: int


@dataclass
class Timeline:
    """One job's training: what was kept, what was lost, and what its pods held."""

    segments: list[Segment] = field(default_factory=list)
    lost_s: float = 0.0
    losses: list[tuple[str, float]] = field(default_factory=list)
    """(cause of the interruption, training seconds it lost), per interruption that lost any."""
    held_card_s: float = 0.0
    first_start: float | None = None
    end: float | None = None

    def trained(self, first: float, last: float, seconds: float, cards: int) -> None:
        if seconds > 0 and last > first:
            self.segments.append(Segment(first, last, seconds, cards))

    def resume(self, step: float, cause: str) -> float:
        """A new attempt starts from `step`: training beyond it is lost. Returns the seconds lost."""
        lost = 0.0
        while self.segments and self.segments[-1].last > step:
            seg = self.segments.pop()
            if seg.first >= step:
                lost += seg.seconds
                continue
            kept = (step - seg.first) / (seg.last - seg.first)
            lost += seg.seconds * (1 - kept)
            self.segments.append(Segment(seg.first, step, seg.seconds * kept, seg.cards))
        if lost > 0:
            self.lost_s += lost
            self.losses.append((cause, lost))
        return lost

    @property
    def kept_s(self) -> float:
        return sum(s.seconds for s in self.segments)

    @property
    def kept_card_s(self) -> float:
        return sum(s.seconds * s.cards for s in self.segments)

    def ettr(self, now: float) -> float | None:
        if self.first_start is None:
            return None
        wall = (self.end if self.end is not None else now) - self.first_start
        return self.kept_s / wall if wall > 0 else None

    def goodput(self) -> float | None:
        return self.kept_card_s / self.held_card_s if self.held_card_s > 0 else None


@dataclass
class Run:
    """The current attempt's training, between two events."""

    attempt: int
    rate: float
    cards: int
    step: float
    """Step reached at `since`."""
    since: float
    """When training (re)started: after the restart, or after the last save."""
    interval_s: float
    save_s: float
    token: int
    """Events scheduled for another run (an earlier attempt, or before a save) carry another token."""

    def step_at(self, now: float) -> float:
        return self.step + self.rate * max(now - self.since, 0.0)

    def saved_step(self, now: float) -> float:
        """The last whole step done by `now`: what a save holds (a step in progress is not saved)."""
        return max(float(math.floor(self.step_at(now))), self.step)

    def seconds_to(self, step: float) -> float:
        """Training seconds from `since` to `step`."""
        return (step - self.step) / self.rate if self.rate > 0 else 0.0
