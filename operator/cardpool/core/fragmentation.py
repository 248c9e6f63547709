"""How fragmented a group's free cards are.

fragmentation = share of a group's free cards that sit on partly used nodes, so cannot host a full-node
worker: 0 when every free card is on an empty node, 1 when no node is empty. Reported with the largest
gang that could start now on whole free nodes, and the largest free block on one node.
"""

from __future__ import annotations

from dataclasses import dataclass

from .snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class GroupFragmentation:
    group: str
    free_cards: int
    whole_free_nodes: int
    largest_free_block: int
    """Most free cards on one node."""
    largest_gang_cards: int
    """Cards of the largest full-node gang that could start now (whole free nodes x cards per node)."""
    fragmentation: float

    @property
    def percent(self) -> int:
        return round(100 * self.fragmentation)


def fragmentation(snapshot: Snapshot, free: dict[str, int] | None = None) -> dict[str, GroupFragmentation]:
    """Per group figures for the free cards `free` (default: the snapshot's)."""
    free = snapshot.free() if free is None else free
    out = {}
    for group in snapshot.groups:
        nodes = [n for n in snapshot.nodes if n.group == group.name and n.usable]
        cards = [free.get(n.name, 0) for n in nodes]
        total = sum(cards)
        whole = [c for n, c in zip(nodes, cards, strict=True) if c > 0 and c >= n.capacity]
        out[group.name] = GroupFragmentation(
            group=group.name,
            free_cards=total,
            whole_free_nodes=len(whole),
            largest_free_block=max(cards, default=0),
            largest_gang_cards=sum(whole),
            fragmentation=(1 - sum(whole) / total) if total else 0.0,
        )
    return out
