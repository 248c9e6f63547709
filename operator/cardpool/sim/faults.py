"""The failure model: which faults strike the simulated fleet, when, and how long their repair takes. Seeded.

Three kinds, each a Poisson process with a rate per card (faults on a node of 8 cards come 8 times as often as
on a node of 1):
- node: the node stops (its kubelet goes NotReady `detect_s` later, as the node controller's grace period
  makes it), every rank on it dies at once; repaired after `repair_s`;
- card: one card of the node fails (its device plugin reports one fewer allocatable); repaired after
  `repair_s`;
- software: one rank of a running job exits with an error (a bug, an OOM, a NCCL timeout); nothing to
  repair.
A node fault takes its whole rack with probability `rack_share` (a switch or a power feed: correlated).

Defaults follow published figures at 10,000+ cards:
- Meta's Llama 3 405B run (Dubey et al., "The Llama 3 Herd of Models", 2024, section 3.3.4): 419 unexpected
  interruptions in 54 days on 16,384 H100, about 78% of them hardware: one per 50,700 card-hours, or one every
  5.1 hours at 10,000 cards;
- the seeds' own operators see a 10,000-card system fail about every 3 hours. The default takes 3 hours:
  one interruption per 30,000 card-hours, 78% hardware (node 60%, card 18%) and 22% software;
- repairs: a node or card back in service after 4 hours (swap or reboot and burn-in), a figure not published
  by the anchors: an assumption, stated.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

HOUR = 3600.0
CARD_MTBF_H = 30_000.0
"""Card-hours per interruption of any kind: a 10,000-card system is interrupted every 3 hours."""


@dataclass(frozen=True)
class FaultModel:
    card_mtbf_h: float = CARD_MTBF_H
    """Card-hours between interruptions of any kind (node, card, software together)."""
    node_share: float = 0.60
    card_share: float = 0.18
    software_share: float = 0.22
    repair_s: float = 4 * HOUR
    detect_s: float = 40.0
    """A stopped node's kubelet is declared NotReady this long after it stops (node-monitor-grace-period)."""
    rack_share: float = 0.0
    """Share of node faults that take the node's whole rack."""

    def __post_init__(self) -> None:
        total = self.node_share + self.card_share + self.software_share
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"node_share + card_share + software_share must be 1, got {total}")
        if self.card_mtbf_h <= 0:
            raise ValueError(f"card_mtbf_h must be positive, got {self.card_mtbf_h}")

    def system_mtbf_s(self, cards: int) -> float:
        """Seconds between interruptions of any kind for `cards` cards."""
        return self.card_mtbf_h * HOUR / cards

    def scaled(self, system_mtbf_h: float, cards: int) -> FaultModel:
        """The same mix with `cards` cards interrupted every `system_mtbf_h` hours."""
        return FaultModel(system_mtbf_h * cards, self.node_share, self.card_share, self.software_share,
                          self.repair_s, self.detect_s, self.rack_share)


@dataclass(frozen=True)
class Fault:
    time: float
    """Seconds from the start of the simulation."""
    kind: str
    """node, card or software."""
    nodes: tuple[str, ...]
    """The nodes struck (one, or a rack). For software faults: one node, whose rank (if any) exits."""
    repair_at: float | None


def faults(model: FaultModel, nodes: Sequence[tuple[str, int, str]], horizon_s: float,
           seed: int) -> Iterator[Fault]:
    """Faults in time order until `horizon_s`. `nodes`: (name, cards, rack) of every node of the fleet. A
    struck node is chosen in proportion to its cards (superposing every card's Poisson process)."""
    rnd = random.Random(seed)
    names = [n for n, _, _ in nodes]
    weights = [c for _, c, _ in nodes]
    cards = sum(weights)
    if cards == 0:
        return
    racks: dict[str, list[str]] = {}
    for name, _, rack in nodes:
        racks.setdefault(rack, []).append(name)
    rack_of = {name: rack for name, _, rack in nodes}
    rate = 1.0 / model.system_mtbf_s(cards)
    cumulative = []
    total = 0
    for w in weights:
        total += w
        cumulative.append(total)
    t = 0.0
    while True:
        t += rnd.expovariate(rate)
        if t > horizon_s:
            return
        node = names[bisect.bisect_right(cumulative, rnd.random() * total)]
        draw = rnd.random()
        if draw < model.node_share:
            struck = tuple(racks[rack_of[node]]) if rnd.random() < model.rack_share else (node,)
            yield Fault(t, "node", struck, t + model.repair_s)
        elif draw < model.node_share + model.card_share:
            yield Fault(t, "card", (node,), t + model.repair_s)
        else:
            yield Fault(t, "software", (node,), None)

