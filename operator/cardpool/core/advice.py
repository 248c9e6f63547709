"""How often each job should save: faults counted per node group, and the Young/Daly interval for the nodes a
job runs on and the save time it reports.

Counting: a node cardpool drains for a fault counts one fault of its group, once: the pool's status keeps the
drains it has counted while they last (`FaultHistory.open`), so any replica after any crash counts the same
drain once. A drain a person asked for is not a fault.

Estimating: a group's fault rate per node is (faults + 1) / (node-seconds observed + PRIOR_NODE_SECONDS): the
published rate acts as one fault already seen, so a young pool gets sane advice and the observed faults take
over as they accumulate (the mean of a Gamma(1, PRIOR) prior updated by a Poisson count). The prior is Llama 3's
run: 16,384 GPUs (2,048 nodes of 8) saw 419 unexpected interruptions in 54 days (Dubey et al. 2024, table 5),
one per 2,048 x 54 x 24 / 419 = 6,335 node-hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple

from cardpool.api.cardpool import CountedFault, FaultHistory
from cardpool.api.trainingjob import CheckpointAdvice, TrainingJobStatus

from .drain import REQUESTED
from .interval import young_daly
from .observed import DrainRecord

PRIOR_NODE_SECONDS = 2048 * 54 * 86400 / 419
"""Node-seconds per fault before any is observed (Llama 3's 54 days on 2,048 nodes, 419 interruptions)."""
MIN_INTERVAL_S = 30
"""No advice to save more often: below it a save's fixed costs (metadata, barriers) dominate."""
HYSTERESIS = 0.1
"""The advice changes only when the interval moves by more than this share (or the job's nodes change): the
estimate drifts with every second observed, and a status write per pass would be noise."""


class GroupRate(NamedTuple):
    per_node_second: float
    """Expected faults per node and second."""
    faults: int
    """Faults observed behind the estimate."""


def count_faults(previous: FaultHistory | None, drains: Iterable[tuple[str, DrainRecord]],
                 now: datetime) -> FaultHistory:
    """The group's history after this pass: each drain of a faulty node not counted yet counts one."""
    seen = {(f.node, _second(f.since)) for f in previous.open} if previous else set()
    open_, new = [], 0
    for node, record in sorted(drains, key=lambda d: d[0]):
        if record.reason == REQUESTED:
            continue
        key = (node, _second(record.since))
        new += key not in seen
        open_.append(CountedFault(node=node, reason=record.reason, since=record.since))
    if previous is not None and new == 0 and open_ == previous.open:
        return previous
    return FaultHistory(count=(previous.count if previous else 0) + new,
                        since=previous.since if previous else now, open=open_)


def _second(t: datetime) -> datetime:
    """The API's timestamps carry whole seconds: a drain's `since` read back from status equals the node's."""
    return t.replace(microsecond=0)


def fault_rates(groups: Iterable[tuple[str, int, FaultHistory | None]], now: datetime) -> dict[str, GroupRate]:
    """Per group, from (group, nodes, history): its faults per node-second, and the faults observed."""
    out = {}
    for name, nodes, history in groups:
        count = history.count if history else 0
        observed = nodes * max((now - history.since).total_seconds(), 0.0) if history else 0.0
        out[name] = GroupRate((count + 1) / (observed + PRIOR_NODE_SECONDS), count)
    return out


def advise(status: TrainingJobStatus, rates: Mapping[str, GroupRate],
           expected_save: float | None = None) -> CheckpointAdvice | None:
    """The advice for the job's current placement and its latest reported save time (`expected_save`, the
    spec's, until one is reported); the one it has while neither moved enough (see HYSTERESIS), or while it
    runs nowhere or no save time is known."""
    kept = status.checkpoint_advice
    ck = status.last_checkpoint
    save = ck.save_seconds if ck is not None and ck.save_seconds is not None else expected_save
    if not status.placement or save is None:
        return kept
    nodes = {g.group: len(set(g.nodes)) for g in status.placement}
    prior = GroupRate(1 / PRIOR_NODE_SECONDS, 0)
    mtbf = 1 / sum(rates.get(group, prior).per_node_second * n for group, n in nodes.items())
    interval = max(round(young_daly(mtbf, save)) if save > 0 else 0, MIN_INTERVAL_S)
    count = sum(nodes.values())
    if kept is not None and kept.nodes == count and (
            abs(interval - kept.interval_seconds) <= HYSTERESIS * kept.interval_seconds):
        return kept
    return CheckpointAdvice(interval_seconds=interval, mtbf_seconds=max(round(mtbf), 1), save_seconds=save,
                            nodes=count, faults=sum(rates.get(group, prior).faults for group in nodes))
