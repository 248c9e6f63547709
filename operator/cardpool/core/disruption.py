"""A control-plane or network disruption, told apart from node faults, and remembered until it is over.

After an API server outage longer than the node monitor grace period, kube-controller-manager marks every node
Unknown until their kubelets report again (and a network partition looks the same). The machines are fine:
restarting every job and draining every node for it would turn a minute of outage into hours of lost work.
kube-controller-manager's own full-disruption mode evicts nothing then; cardpool holds the nodes likewise.

The nodes do not come back all at once: each kubelet reports at its own next status update. Without a memory,
the last few still silent once fewer than half are would look like faults. The disruption is therefore kept
in the pool's status (written before anything acts on it, and read back by whichever replica runs next): its
nodes stay held while they return, for a grace after most of the pool is back, then any still silent are
faults like any other."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cardpool.api.cardpool import Disruption

from .health import DISRUPTED, NodeHealth


def assess(lost: Sequence[str], pool_nodes: int, previous: Disruption | None, now: datetime,
           grace_seconds: int) -> Disruption | None:
    """The disruption in progress, from the pool's nodes out of contact now (`lost`, by name), its size and
    the last pass's record. It begins when more than half of the pool (two nodes at least) is lost at once;
    once half or fewer are, the record keeps only its nodes still lost, for `grace_seconds`; it ends when
    they have all reported again or the grace is over."""
    if len(lost) >= 2 and 2 * len(lost) > pool_nodes:
        return Disruption(since=previous.since if previous else now, nodes=sorted(lost))
    if previous is None:
        return None
    still = sorted(set(lost) & set(previous.nodes))
    receding = previous.receding_since or now
    if not still or now >= receding + timedelta(seconds=grace_seconds):
        return None
    return Disruption(since=previous.since, nodes=still, receding_since=receding)


def ends_at(disruption: Disruption | None, grace_seconds: int) -> datetime | None:
    """When the held nodes still silent turn into faults (the pass must look again then)."""
    if disruption is None or disruption.receding_since is None:
        return None
    return disruption.receding_since + timedelta(seconds=grace_seconds)


def held_health(disruption: Disruption, pool_nodes: int) -> NodeHealth:
    """The health of a node of the disruption still out of contact: healthy (its workers are not lost, no
    restart, no drain), not schedulable (no new workers)."""
    return NodeHealth(True, False, DISRUPTED, f"{len(disruption.nodes)} of the pool's {pool_nodes} nodes out of "
                                              f"contact since {disruption.since.isoformat()}: held as a "
                                              f"control-plane or network disruption")
