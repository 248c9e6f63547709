"""A capacity-planning run: the pool, fleet and trace read from files, the failure and trainer settings, and
the simulated world they make, driven to the horizon in slices so a caller can show progress.

Failures: `none`, or `default` (cardpool.sim.faults' published mix and rates), whose rate can be set for the
whole fleet (`system_mtbf_h`: hours between interruptions of any kind over all its cards), with its repair
time and rack share. The checkpoint interval is fixed, or advised: the Young/Daly interval for the cards an
attempt holds at the fault model's rate (as `python -m cardpool.bench goodput` does); without failures the
advice uses the default rates, as an operator with no fault history yet would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cardpool.api.cardpool import CardPoolSpec

from .faults import HOUR, FaultModel
from .inputs import Fleet
from .trainer import TrainerModel
from .world import JobTrace, World

PRESETS = ("none", "default")
SLICES = 200
"""Progress is reported this many times over a run."""
SAMPLES = 240
"""Utilisation and queue samples over the horizon (at least a minute apart)."""


@dataclass(frozen=True)
class Failures:
    preset: str = "default"
    system_mtbf_h: float | None = None
    """Hours between interruptions over the whole fleet; None: the preset's per-card rate."""
    repair_h: float | None = None
    rack_share: float | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"failures must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.preset == "none" and any(v is not None for v in (self.system_mtbf_h, self.repair_h, self.rack_share)):
            raise ValueError("failures none takes no MTBF, repair time or rack share")

    def model(self, cards: int) -> FaultModel | None:
        """The fault model for a fleet of `cards` cards; None: no faults."""
        if self.preset == "none":
            return None
        model = FaultModel()
        if self.system_mtbf_h is not None:
            model = model.scaled(self.system_mtbf_h, cards)
        if self.repair_h is not None:
            model = replace(model, repair_s=self.repair_h * HOUR)
        if self.rack_share is not None:
            model = replace(model, rack_share=self.rack_share)
        return model


@dataclass(frozen=True)
class Settings:
    hours: float = 168.0
    seed: int = 1
    failures: Failures = field(default_factory=Failures)
    trainer: TrainerModel = field(default_factory=TrainerModel)
    """interval_s None: the operator's advice (Young/Daly for the attempt's nodes and the reported save time)."""


@dataclass(frozen=True)
class Scenario:
    pool_name: str
    pool: CardPoolSpec
    fleet: Fleet
    jobs: list[JobTrace]
    settings: Settings

    @property
    def fault_model(self) -> FaultModel | None:
        return self.settings.failures.model(self.fleet.cards)

    def world(self) -> World:
        horizon = self.settings.hours * HOUR
        return World(self.pool, self.fleet.nodes, self.jobs, self.settings.trainer, self.fault_model, horizon,
                     self.settings.seed,
                     sample_every_s=max(60.0, horizon / SAMPLES))


def run(scenario: Scenario, progress: Callable[[float, float], None] = lambda done, total: None) -> World:
    """The world driven to the horizon and closed; `progress(simulated seconds done, horizon)` after each
    slice."""
    world = scenario.world()
    horizon = world.horizon
    for i in range(1, SLICES + 1):
        world.run(until_s=horizon * i / SLICES)
        progress(world.t, horizon)
    world.close()
    return world
