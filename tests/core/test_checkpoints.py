"""Checkpoint provenance as a spec: which reported Checkpoint a job takes, and the reason for every other one.

Each row: the job as status records it (attempt, recorded checkpoint, progress), its pods' progress reports,
one reported Checkpoint, and `now` -> the verdict (None: not judged yet) and the recorded step after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from cardpool.api.trainingjob import AttemptRecord, CheckpointRecord, Progress, TrainingJobSpec, TrainingJobStatus
from cardpool.core.checkpoints import ORPHAN_GRACE, PROGRESS_GRACE, judge_checkpoints, judge_orphans
from cardpool.core.clock import Deadlines
from cardpool.core.lifecycle import plan_job
from cardpool.core.observed import ObservedCheckpoint, ObservedJob, ObservedPod, ObservedProgress
from cardpool.core.plan import JobPlan

from ..examples import EXAMPLES

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
CREATED = NOW - timedelta(hours=1)  # the job's creationTimestamp
UID = "uid-1"
SPEC = TrainingJobSpec.model_validate(yaml.safe_load((EXAMPLES / "job-pytorch-homogeneous.yaml").read_text())["spec"])
GRACEFUL_S = SPEC.checkpoint.graceful_save_seconds  # 120 in the example


def ck(name: str = "c", attempt: int = 2, step: int = 100, owner: str = UID, age: float = 10,
       complete: bool = True, verdict: str | None = None, created: datetime | None = None) -> ObservedCheckpoint:
    """A reported Checkpoint, `age` seconds old at NOW."""
    return ObservedCheckpoint(name, "job", attempt, step, f"s3://c/{step}", 32, complete,
                              created or NOW - timedelta(seconds=age), verdict, owner)


@dataclass
class Job:
    """The job's side of a row: its current attempt (2 unless said), what it recorded, what rank 0 reported."""

    attempt: int = 2
    phase: str = "Running"
    recorded: int | None = None
    """Step of the recorded checkpoint (named "recorded")."""
    status_progress: tuple[int, int] | None = None
    """(attempt, step) of status.progress."""
    pod_progress: dict[int, int | None] = field(default_factory=lambda: {2: None})
    """attempt -> the step its rank 0 pod reports (None: a pod without a report); no entry: no rank 0 pod."""
    ended_ago: float | None = None
    """The current attempt ended this many seconds before NOW."""

    def observed(self, *checkpoints: ObservedCheckpoint, recorded_gone: bool = False) -> ObservedJob:
        """With the recorded Checkpoint among them (accepted), unless given or `recorded_gone`."""
        status = TrainingJobStatus(attempt=self.attempt, phase=self.phase, history=[AttemptRecord(
            attempt=a, workers=4, start_time=CREATED) for a in range(1, self.attempt + 1)])
        if self.ended_ago is not None:
            status.history[-1].end_time = NOW - timedelta(seconds=self.ended_ago, microseconds=500)
            status.history[-1].planned = True
        if self.recorded is not None:
            status.last_checkpoint = CheckpointRecord(step=self.recorded, uri=f"s3://c/{self.recorded}",
                                                      time=CREATED, world_size=32, attempt=self.attempt,
                                                      name="recorded")
        if self.status_progress is not None:
            attempt, step = self.status_progress
            status.progress = Progress(attempt=attempt, step=step, time=NOW - timedelta(seconds=30))
        pods = tuple(ObservedPod(f"job-a{a}-0", "ns", "job", a, 0, "h800-0", "Running", progress=None if step is None
                                 else ObservedProgress(step, None, NOW - timedelta(seconds=20)))
                     for a, step in self.pod_progress.items())
        if self.recorded is not None and not recorded_gone and all(c.name != "recorded" for c in checkpoints):
            checkpoints = (ck("recorded", step=self.recorded, age=3600, verdict="True"), *checkpoints)
        return ObservedJob("ns", "job", UID, 1, CREATED, SPEC, status, pods, checkpoints=checkpoints)


def judged(job: ObservedJob, now: datetime = NOW) -> JobPlan:
    status = job.status.model_copy(deep=True)
    plan = JobPlan(job.key, status)
    judge_checkpoints(job, status, now, plan)
    return plan


RUNNING_AT_150 = Job(pod_progress={2: 150})
STOPPED = Job(phase="Restarting", pod_progress={}, status_progress=(2, 150), ended_ago=20)
"""Attempt 2 stopped 20 s ago for a graceful save; its pods are gone; it last reported step 150 while it ran."""

ROWS = [
    # id, job, checkpoint, now, verdict (None: not judged yet), recorded step afterwards
    ("at or below the reported step: recorded", RUNNING_AT_150, ck(step=150), NOW, "Recorded", 150),
    ("the bound is the status's progress when the pod has none", Job(status_progress=(2, 150)), ck(step=140), NOW,
     "Recorded", 140),
    ("the bound is the higher of status and pod", Job(status_progress=(2, 50), pod_progress={2: 160}), ck(step=160),
     NOW, "Recorded", 160),
    ("another attempt's progress bounds nothing", Job(status_progress=(1, 10)), ck(step=999), NOW, "Recorded", 999),
    ("no progress from the attempt: not bounded, taken", Job(), ck(step=10**9), NOW, "Recorded", 10**9),
    ("above the reported step, younger than the grace: waits", RUNNING_AT_150, ck(step=10**9, age=59), NOW, None,
     None),
    ("above the reported step once the grace is over: refused", RUNNING_AT_150, ck(step=10**9, age=60), NOW,
     "BeyondProgress", None),
    ("a later report covers it within the grace", Job(pod_progress={2: 200}), ck(step=200, age=59), NOW, "Recorded",
     200),
    ("a future attempt", Job(), ck(attempt=3), NOW, "FutureAttempt", None),
    ("any attempt before the job started one", Job(attempt=0, phase="Queued", pod_progress={}), ck(attempt=1), NOW,
     "FutureAttempt", None),
    ("attempt 0 never ran", Job(), ck(attempt=0), NOW, "NoSuchAttempt", None),
    ("an older attempt", Job(), ck(attempt=1), NOW, "OlderAttempt", None),
    ("not after the recorded step", Job(recorded=200), ck(step=200), NOW, "NotNewer", 200),
    ("no ownerReference to the job", Job(), ck(owner=""), NOW, "NotOwned", None),
    ("owned by another UID (an earlier job of that name)", Job(), ck(owner="uid-0"), NOW, "NotOwned", None),
    ("created before the job", Job(), ck(created=CREATED - timedelta(seconds=1)), NOW, "PredatesJob", None),
    ("created in the job's second", Job(), ck(created=CREATED), NOW, "Recorded", 100),
    ("the stopped attempt's graceful save, its rank 0 gone: not bounded", STOPPED, ck(step=151, age=5), NOW,
     "Recorded", 151),
    ("a save from before the stop, rank 0 gone: bounded", STOPPED, ck(step=151, age=30), NOW, None, None),
    ("a save after the graceful window, rank 0 gone: bounded", STOPPED,
     ck(step=151, created=NOW + timedelta(seconds=GRACEFUL_S)), NOW + timedelta(seconds=GRACEFUL_S + 60),
     "BeyondProgress", None),
    ("the stopped attempt's rank 0 still there: its report bounds the save", replace(STOPPED, pod_progress={2: 151}),
     ck(step=152, age=5), NOW + timedelta(seconds=60), "BeyondProgress", None),
    ("...and its report of the saved step lets it in", replace(STOPPED, pod_progress={2: 152}), ck(step=152, age=5),
     NOW, "Recorded", 152),
]


@pytest.mark.parametrize(("job", "checkpoint", "now", "reason", "recorded"), [r[1:] for r in ROWS],
                         ids=[r[0] for r in ROWS])
def test_a_reported_checkpoint_is_judged_by_the_rules(job: Job, checkpoint: ObservedCheckpoint, now: datetime,
                                                      reason: str | None, recorded: int | None) -> None:
    plan = judged(job.observed(checkpoint), now)
    assert [v.reason for v in plan.verdicts] == ([reason] if reason else [])
    assert all(v.accepted == (v.reason == "Recorded") and v.message for v in plan.verdicts)
    assert (plan.status.last_checkpoint.step if plan.status.last_checkpoint else None) == recorded
    if reason is None:
        assert plan.recheck_at == checkpoint.created + PROGRESS_GRACE  # decided when the grace ends
    elif reason == "Recorded":
        assert [e.reason for e in plan.events] == ["CheckpointRecorded"]
    else:
        assert [(e.type, e.reason) for e in plan.events] == [("Warning", "CheckpointIgnored")]


WHY = [
    (ck(step=10**9), "reported no progress, so the step is not bounded"),
    (ck(owner="uid-0"), "owned by TrainingJob job with UID uid-0, an earlier job of that name; this job's UID is "
                        "uid-1"),
    (ck(owner=""), "no ownerReference names TrainingJob job"),
    (ck(attempt=3), "claims attempt 3; the job is at attempt 2"),
    (ck(created=CREATED - timedelta(days=1)), "before the job"),
]


@pytest.mark.parametrize(("checkpoint", "words"), WHY, ids=[w for _, w in WHY])
def test_each_verdict_says_why(checkpoint: ObservedCheckpoint, words: str) -> None:
    assert words in judged(Job().observed(checkpoint)).verdicts[0].message


ONCE = [
    (ck(complete=False), "a save in progress"),
    (ck(verdict="False"), "refused already"),
    (ck(verdict="True"), "accepted already"),
    (ck(name="recorded", step=100), "the recorded one, whose verdict has not reached the watch yet"),
]


@pytest.mark.parametrize(("checkpoint", "why"), ONCE, ids=[w for _, w in ONCE])
def test_a_checkpoint_is_judged_once_and_only_when_complete(checkpoint: ObservedCheckpoint, why: str) -> None:
    plan = judged(Job(recorded=100).observed(checkpoint))
    assert not plan.verdicts and not plan.events and plan.status.last_checkpoint.step == 100, why


def test_checkpoints_are_judged_in_order_of_step_so_the_newest_valid_one_is_recorded() -> None:
    plan = judged(Job(pod_progress={2: 300}).observed(ck("c300", step=300), ck("c100", step=100),
                                                      ck("c200", step=200), ck("old", attempt=1, step=900)))
    assert [(v.checkpoint, v.reason) for v in plan.verdicts] == [
        ("old", "OlderAttempt"), ("c100", "Recorded"), ("c200", "Recorded"), ("c300", "Recorded")]
    assert plan.status.last_checkpoint.name == "c300"


def test_a_bogus_huge_step_does_not_pin_the_job() -> None:
    bogus, real = ck("bogus", step=2**53, age=60), ck("real", step=150)
    plan = judged(RUNNING_AT_150.observed(bogus, real))
    assert {v.checkpoint: v.reason for v in plan.verdicts} == {"bogus": "BeyondProgress", "real": "Recorded"}
    assert plan.status.last_checkpoint.name == "real"


DELETED = [
    # id, the job's Checkpoints still there (the recorded one, "recorded" at step 500, is gone), falls back to
    ("to the newest accepted one left", (ck("a", step=100, verdict="True"), ck("b", step=300, verdict="True"),
                                         ck("refused", step=400, verdict="False")), "b"),
    ("to one of an older attempt", (ck("a1", attempt=1, step=90, verdict="True"),), "a1"),
    ("to none when only refused ones are left", (ck("refused", step=400, verdict="False"),), None),
    ("to none when nothing is left", (), None),
    ("not to an accepted one that is not this job's", (ck("x", step=100, verdict="True", owner="uid-0"),), None),
]


@pytest.mark.parametrize(("left", "fallback"), [r[1:] for r in DELETED], ids=[r[0] for r in DELETED])
def test_deleting_the_recorded_checkpoint_falls_back(left: tuple[ObservedCheckpoint, ...],
                                                     fallback: str | None) -> None:
    plan = judged(Job(recorded=500).observed(*left, recorded_gone=True))
    last = plan.status.last_checkpoint
    assert (last.name if last else None) == fallback
    event = next(e for e in plan.events if e.reason == "CheckpointDeleted")
    assert event.type == "Warning" and "Checkpoint recorded (step 500) was deleted" in event.message
    assert ("starts from scratch" in event.message) == (fallback is None)
    if last is not None:
        kept = next(c for c in left if c.name == fallback)
        assert (last.step, last.uri, last.attempt, last.time) == (kept.step, kept.uri, kept.attempt, kept.created)


def test_after_falling_back_a_real_checkpoint_is_taken_again() -> None:
    # a bogus step taken before any progress (not bounded) refuses the real ones as not newer; deleting it
    # falls back, and the next real checkpoint is recorded
    pinned = Job(recorded=2**53, pod_progress={2: 160})
    assert judged(pinned.observed(ck("recorded", step=2**53, verdict="True"), ck("real", step=150))
                  ).verdicts[0].reason == "NotNewer"
    plan = judged(pinned.observed(ck("real", step=150, verdict="False"), ck("next", step=160),
                                  ck("first", step=50, verdict="True"), recorded_gone=True))
    assert [(v.checkpoint, v.reason) for v in plan.verdicts] == [("next", "Recorded")]
    assert plan.status.last_checkpoint.name == "next"


def test_the_recorded_checkpoint_still_there_is_kept() -> None:
    plan = judged(Job(recorded=500).observed(ck("recorded", step=500)))
    assert plan.status.last_checkpoint.name == "recorded" and not plan.events


def test_plan_job_wakes_up_when_the_grace_of_a_waiting_checkpoint_ends() -> None:
    waiting = ck(step=10**9, age=1)
    job = RUNNING_AT_150.observed(waiting)
    plan = plan_job(job, NOW)
    assert not plan.verdicts and plan.recheck_at == waiting.created + PROGRESS_GRACE
    later = plan_job(job, waiting.created + PROGRESS_GRACE)
    assert [v.reason for v in later.verdicts] == ["BeyondProgress"]


ORPHANS = [
    # id, the checkpoint of job "gone", whether a job "gone" exists, verdict
    ("no such job", ck(age=5), False, "NoSuchJob"),
    ("an incomplete one too", ck(age=5, complete=False), False, "NoSuchJob"),
    ("not before the grace: its job may not be seen yet", ck(age=4), False, None),
    ("judged already (e.g. while its job existed)", ck(age=60, verdict="True"), False, None),
    ("its job exists", ck(age=60), True, None),
]


@pytest.mark.parametrize(("checkpoint", "present", "reason"), [r[1:] for r in ORPHANS], ids=[r[0] for r in ORPHANS])
def test_a_checkpoint_of_a_job_that_does_not_exist_is_refused(checkpoint: ObservedCheckpoint, present: bool,
                                                              reason: str | None) -> None:
    clock = Deadlines(NOW)
    verdicts = judge_orphans({("ns", "gone"): (checkpoint,)}, {("ns", "gone")} if present else set(), clock)
    assert [(ns, v.reason, v.accepted) for ns, v in verdicts] == ([("ns", reason, False)] if reason else [])
    if reason:
        assert verdicts[0][1].message == "there is no TrainingJob gone in namespace ns"
    if checkpoint.verdict is None and not present and not reason:
        assert clock.next == checkpoint.created + ORPHAN_GRACE


def test_a_job_of_the_same_name_in_another_namespace_does_not_count() -> None:
    verdicts = judge_orphans({("a", "job"): (ck(age=60),)}, {("b", "job")}, NOW)
    assert [(ns, v.reason) for ns, v in verdicts] == [("a", "NoSuchJob")]
