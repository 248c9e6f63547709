"""The CLI's terminal output against golden files (tests/golden/), from fixed objects and a fixed clock.
Regenerate after a deliberate change with CARDPOOL_UPDATE_GOLDEN=1 and read the diff."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from cardpool.cli import render

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

JOB = {
    "metadata": {"namespace": "demo", "name": "llama-sft", "creationTimestamp": "2026-11-25T10:00:00Z"},
    "spec": {"pool": "mixed"},
    "status": {
        "phase": "Running", "size": "3/4", "accelerator": "H800+Ascend910B", "attempt": 2,
        "restarts": {"counted": 0, "uncounted": 1, "scaling": 0},
        "lastCheckpoint": {"step": 1200, "uri": "s3://ckpt/llama/1200", "worldSize": 32, "saveSeconds": 20.5},
        "checkpointAdvice": {"intervalSeconds": 1623, "mtbfSeconds": 64260, "saveSeconds": 20.5, "nodes": 3,
                             "faults": 1},
        "lastFailure": {"reason": "NodeNotReady", "attempt": 1, "message": "node h800-002 of rank 1: NodeNotReady"},
        "progress": {"step": 1500, "totalSteps": 3000, "attempt": 2, "time": "2026-11-25T11:59:30Z"},
        "history": [
            {"attempt": 1, "workers": 4, "accelerator": "H800", "startTime": "2026-11-25T10:00:05Z",
             "endTime": "2026-11-25T11:00:00Z", "endReason": "NodeNotReady"},
            {"attempt": 2, "workers": 3, "accelerator": "H800+Ascend910B", "resumedFromStep": 1200,
             "startTime": "2026-11-25T11:00:01Z"}],
        "placement": [
            {"group": "h800", "accelerator": "H800", "workers": 2, "firstRank": 0, "relativeThroughput": 1.0,
             "batchShare": 640, "nodes": ["h800-000", "h800-001"]},
            {"group": "ascend910b", "accelerator": "Ascend910B", "workers": 1, "firstRank": 2,
             "relativeThroughput": 0.6, "batchShare": 384, "nodes": ["ascend910b-003"]}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "Running",
                        "message": "attempt 2: all workers running"}],
    },
}
QUEUED = {"metadata": {"namespace": "demo", "name": "moe", "creationTimestamp": "2026-11-25T11:58:00Z"},
          "spec": {"pool": "mixed"}, "status": {"phase": "Queued", "conditions": [
              {"type": "Ready", "status": "False", "reason": "Reserved", "message": "needs 8 x 8 cards"}]}}
POOL = {"metadata": {"name": "mixed"}, "status": {
    "groupCount": 2, "cards": 96, "freeCards": 40, "unhealthyCards": 8, "fragmentationPercent": 20,
    "conditions": [{"type": "Ready", "status": "True"}],
    "groups": [
        {"name": "h800", "model": "H800", "nodes": 6, "cards": 48, "allocatedCards": 12, "otherCards": 4,
         "freeCards": 24,
         "unhealthyCards": 8, "drainingNodes": 1, "largestFreeBlock": 8, "fragmentationPercent": 0,
         "faults": {"count": 1, "since": "2026-11-20T00:00:00Z",
                    "open": [{"node": "h800-002", "reason": "NodeNotReady", "since": "2026-11-25T11:00:00Z"}]}},
        {"name": "ascend910b", "model": "Ascend910B", "nodes": 6, "cards": 48, "allocatedCards": 32,
         "freeCards": 16, "unhealthyCards": 0, "drainingNodes": 0, "largestFreeBlock": 4,
         "fragmentationPercent": 100}]}}
EVENTS = [{"lastTimestamp": "2026-11-25T11:00:00Z", "type": "Warning", "reason": "NodeNotReady",
           "message": "node h800-002 of rank 1: NodeNotReady; restarting from step 1200"},
          {"lastTimestamp": "2026-11-25T11:00:01Z", "type": "Normal", "reason": "Resized",
           "message": "attempt 2 runs 3 workers (attempt 1: 4; target 4)"}]

QUEUES = [
    {"metadata": {"name": "team-a"}, "spec": {"parent": "org", "weight": 2, "quotas": [{"model": "H800",
                                                                                     "guaranteed": 16}]},
     "status": {"runningJobs": 2, "waitingJobs": 0, "conditions": [{"type": "Ready", "status": "True"}],
                "models": [{"model": "H800", "guaranteed": 16, "used": 48, "borrowed": 32, "lent": 0}]}},
    {"metadata": {"name": "team-b"}, "spec": {"parent": "org", "quotas": [{"model": "H800", "guaranteed": 48}]},
     "status": {"runningJobs": 0, "waitingJobs": 1, "conditions": [{"type": "Ready", "status": "True"}],
                "models": [{"model": "H800", "guaranteed": 48, "used": 0, "borrowed": 0, "lent": 32}]}},
    {"metadata": {"name": "org"}, "spec": {}, "status": {"runningJobs": 0, "waitingJobs": 0, "conditions": [
        {"type": "Ready", "status": "True"}], "models": [{"model": "H800", "used": 48, "borrowed": 48}]}},
    {"metadata": {"name": "stray"}, "spec": {"parent": "nobody"}, "status": {"conditions": [
        {"type": "Ready", "status": "False", "message": "spec.parent: no TenantQueue named nobody"}]}},
]

VIEWS = {
    "jobs.txt": lambda: render.jobs_table([JOB, QUEUED], NOW),
    "status.txt": lambda: render.status_view([POOL], [JOB, QUEUED], NOW),
    "pool.txt": lambda: render.pool_table(POOL),
    "describe.txt": lambda: render.describe_job(JOB, EVENTS, NOW),
    "queues.txt": lambda: render.queues_table(QUEUES),
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_terminal_output_matches_its_golden_file(name: str) -> None:
    console = Console(width=150, record=True, color_system=None, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(VIEWS[name]())
    text = console.export_text()
    golden = GOLDEN / name
    if os.environ.get("CARDPOOL_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text()


def test_json_rows_carry_what_the_table_shows() -> None:
    assert render.job_row(JOB) == {"namespace": "demo", "name": "llama-sft", "pool": "mixed", "phase": "Running",
                                   "size": "3/4", "accelerator": "H800+Ascend910B", "attempt": 2, "restarts": 1,
                                   "checkpoint": 1200, "reason": "Running"}


def test_queue_rows_carry_each_model_and_a_queue_that_cannot_be_used_says_why() -> None:
    rows = {r["queue"]: r for r in render.queue_rows(QUEUES)}
    assert (rows["team-b"]["lent"], rows["team-b"]["waiting"]) == (32, 1)
    assert rows["stray"]["ready"] == "False" and rows["stray"]["problem"] == "spec.parent: no TenantQueue named nobody"
