"""The dry-run answers a job's placement waits on, as a table of (answers so far, time) -> what the pass does."""

from __future__ import annotations

import pytest

from cardpool.controller.podchecks import ACCEPTED, ASK, WAIT, PodChecks
from cardpool.core.observed import PodRefusal

V1, V2 = ("uid", 1, 1), ("uid", 2, 1)  # the job's generation 1, then edited
INVALID = PodRefusal("InvalidPodTemplate", "invalid")
FORBIDDEN = PodRefusal("PodsRefused", "forbidden")


def play(steps: list[tuple]) -> PodChecks:
    checks = PodChecks()
    for step in steps:
        match step:
            case ("ask",):
                checks.asking("j")
            case ("answer", version, refusal, at):
                checks.record("j", version, refusal, at)
            case ("error", version, at):
                checks.unanswered("j", version, at)
    return checks


@pytest.mark.parametrize(("steps", "version", "now", "state"), [
    ([], V1, 0, ASK),  # never asked
    ([("ask",)], V1, 0, WAIT),  # the answer is on its way: not placed meanwhile
    ([("ask",), ("answer", V1, None, 0)], V1, 1000, ACCEPTED),  # accepted stays accepted
    ([("ask",), ("answer", V1, None, 0)], V2, 1, ASK),  # the spec changed: ask again
    ([("ask",), ("answer", V1, INVALID, 0)], V1, 10_000, INVALID),  # invalid: until the spec changes
    ([("ask",), ("answer", V1, INVALID, 0)], V2, 1, ASK),
    ([("ask",), ("answer", V1, FORBIDDEN, 0)], V1, 9.9, FORBIDDEN),  # admission: asked again after 10 s
    ([("ask",), ("answer", V1, FORBIDDEN, 0)], V1, 10, ASK),
    ([("answer", V1, FORBIDDEN, 0), ("answer", V1, FORBIDDEN, 10)], V1, 29, FORBIDDEN),  # then 20 s
    ([("answer", V1, FORBIDDEN, 0), ("answer", V1, FORBIDDEN, 10)], V1, 30, ASK),
    ([("answer", V1, FORBIDDEN, t) for t in range(12)], V1, 11 + 299, FORBIDDEN),  # capped at 5 minutes
    ([("answer", V1, FORBIDDEN, t) for t in range(12)], V1, 11 + 300, ASK),
    ([("ask",), ("error", V1, 0)], V1, 4, WAIT),  # the API failed: nothing known, asked again after 5 s
    ([("ask",), ("error", V1, 0)], V1, 5, ASK),
    ([("answer", V1, INVALID, 0), ("error", V1, 1)], V1, 2, INVALID),  # an error keeps a standing refusal
])
def test_what_the_pass_does_with_a_job_awaiting_its_dry_run(steps: list, version: tuple, now: float,
                                                             state: object) -> None:
    assert play(steps).state("j", version, now) == state


def test_the_next_retry_wakes_the_loop_and_deleted_jobs_are_forgotten() -> None:
    checks = play([("answer", V1, FORBIDDEN, 0)])
    assert checks.next_due(0) == 10
    assert checks.refusal("j", V1) == FORBIDDEN and checks.refusal("j", V2) is None
    checks.keep_only({"other"})
    assert checks.state("j", V1, 1) == ASK and checks.next_due(0) is None
