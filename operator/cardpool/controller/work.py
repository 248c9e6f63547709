"""Which of a plan's effects are urgent. Pure: read off the job as observed and the plan decided for it."""

from __future__ import annotations

from cardpool.api.trainingjob import Phase
from cardpool.core.observed import ObservedJob
from cardpool.core.plan import JobPlan

from .applier import Priority

LIVE = (Phase.STARTING, Phase.RUNNING)


def status_priority(job: ObservedJob, plan: JobPlan) -> Priority:
    """A status write that records a failure, a fault or the end of an attempt is urgent: it is the memory
    of a restart (its counters) and the recorded placement of the next attempt."""
    before, after = job.status, plan.status
    if after.last_failure != before.last_failure or (before.phase in LIVE and after.phase not in LIVE):
        return Priority.URGENT
    if after.attempt != before.attempt and after.attempt > 1:  # a restarted job's next attempt
        return Priority.URGENT
    return Priority.NORMAL


def create_priority(plan: JobPlan) -> Priority:
    """The pods of a restarted job (its second attempt or later) go ahead of newly admitted jobs' pods: that
    job was running a moment ago and loses time for every second it waits."""
    return Priority.URGENT if plan.status.attempt > 1 else Priority.BULK


DELETE_PRIORITY = Priority.URGENT
"""Stopping a gang (failed, faulted, moved) frees its cards and ends ranks that would run on alone."""
