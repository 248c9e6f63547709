"""Checkpoint provenance on the real API server: a job resumes only from Checkpoints it saved itself (its UID,
created after it, its current attempt, a step its rank 0 reported), every judged Checkpoint says why in its
Accepted condition, deleting the recorded one falls back, and a Checkpoint of a job that does not exist is
refused. The rules: cardpool.core.checkpoints; the real trainer's side: cardpool.runtime (e2e/jobs.py)."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from cardpool.api.keys import API_VERSION, GROUP, VERSION
from cardpool.core.checkpoints import PROGRESS_GRACE
from cardpool.runtime import Saved, report_checkpoint
from jobs import (
    TIMEOUT,
    TORCH,
    checkpoint,
    env_of,
    get_job,
    make_pool,
    pods_of,
    rank0,
    submit,
    verdict,
    wait_attempt,
    wait_phase,
)
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for

ONE = {"spec.workers.size": {"min": 1, "max": 1}}  # 1 x 8 cards: world size 8
FAST = 10  # seconds: a verdict that needs no grace


@pytest.fixture
def pool(kube: Kube, quiet_operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace)


def made(namespace: str, job: str, name: str, attempt: int, step: int, owner: str | None,
         complete: bool = True, owner_name: str | None = None) -> dict:
    """A Checkpoint created by hand (not by cardpool.runtime); `owner`: the UID its ownerReference to
    TrainingJob `owner_name` (default: `job`) names."""
    body = {"apiVersion": API_VERSION, "kind": "Checkpoint", "metadata": {"name": name, "namespace": namespace},
            "spec": {"job": job, "attempt": attempt, "step": step, "uri": f"s3://elsewhere/{step}", "worldSize": 8,
                     "complete": complete}}
    if owner is not None:
        body["metadata"]["ownerReferences"] = [{"apiVersion": API_VERSION, "kind": "TrainingJob",
                                                "name": owner_name or job, "uid": owner}]
    return body


def create(kube: Kube, body: dict) -> dict:
    return client.CustomObjectsApi(kube.api).create_namespaced_custom_object(
        GROUP, VERSION, body["metadata"]["namespace"], "checkpoints", body)


def delete(kube: Kube, namespace: str, name: str) -> None:
    client.CustomObjectsApi(kube.api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "checkpoints", name)


def last_checkpoint(kube: Kube, namespace: str, job: str, step: int | None) -> dict:
    """Wait until status.lastCheckpoint is at `step` (None: unset)."""
    def check() -> tuple[dict]:
        last = (get_job(kube, namespace, job).get("status") or {}).get("lastCheckpoint")
        if (last or {}).get("step") != step:
            raise NotYet(f"lastCheckpoint {last}")
        return (last or {},)  # truthy, also when unset

    return wait_for(f"lastCheckpoint of {job} to be {step}", check, timeout=TIMEOUT)[0]


def event(kube: Kube, namespace: str, job: str, reason: str, words: str) -> client.CoreV1Event:
    def posted() -> client.CoreV1Event:
        events = kube.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={job}").items
        found = [e for e in events if e.reason == reason and words in e.message]
        if not found:
            raise NotYet(f"events {[(e.reason, e.message) for e in events]}")
        return found[0]

    return wait_for(f"event {reason} on {job} saying {words!r}", posted, timeout=TIMEOUT)


def refused_or_gone(kube: Kube, namespace: str, name: str) -> str:
    try:
        obj = client.CustomObjectsApi(kube.api).get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                             "checkpoints", name)
    except client.ApiException as exc:
        if exc.status == 404:
            return "gone"
        raise
    accepted = next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Accepted"), None)
    if accepted is None:
        raise NotYet("neither judged nor collected")
    assert (accepted["status"], accepted["reason"]) == ("False", "NotOwned"), accepted
    return "refused"


def test_checkpoints_the_job_did_not_save_are_refused_and_do_not_pin_it(kube: Kube, namespace: str,
                                                                        pool: str) -> None:
    name = submit(kube, namespace, pool, TORCH, **ONE)
    wait_attempt(kube, namespace, name, 1)
    uid = get_job(kube, namespace, name)["metadata"]["uid"]
    checkpoint(kube, namespace, name, 1, 100, 8)  # the trainer: progress 100, then its Checkpoint
    assert verdict(kube, namespace, f"{name}-a1-s100") == ("True", "Recorded", "the job resumes from step 100")

    other = submit(kube, namespace, f"{namespace}-nowhere", TORCH, **{"metadata.name": "other"})
    other_uid = get_job(kube, namespace, other)["metadata"]["uid"]
    hostile = {  # name -> (attempt, step, owner UID), each created by hand after the job
        "future-attempt": (2, 150, uid), "far-future-attempt": (99, 150, uid), "attempt-zero": (0, 150, uid),
        "no-owner": (1, 150, None), "bogus-huge-step": (1, 2**53, uid), "beyond-progress": (1, 130, uid)}
    for ck, (attempt, step, owner) in hostile.items():
        create(kube, made(namespace, name, ck, attempt, step, owner))
    create(kube, made(namespace, name, "owned-by-another-job", 1, 150, other_uid, owner_name=other))
    # an ownerReference to this job's name with another UID (an earlier job of that name): the garbage
    # collector deletes such a Checkpoint, unless the operator has refused it first; it is never taken
    create(kube, made(namespace, name, "earlier-uid", 1, 150, str(uuid.uuid4())))
    refused = {ck: verdict(kube, namespace, ck, timeout=FAST)[:2] for ck in
               ("future-attempt", "far-future-attempt", "attempt-zero", "no-owner", "owned-by-another-job")}
    assert refused == {"future-attempt": ("False", "FutureAttempt"), "far-future-attempt": ("False", "FutureAttempt"),
                       "attempt-zero": ("False", "NoSuchAttempt"), "no-owner": ("False", "NotOwned"),
                       "owned-by-another-job": ("False", "NotOwned")}
    assert "claims attempt 99; the job is at attempt 1" in verdict(kube, namespace, "far-future-attempt")[2]
    wait_for("the Checkpoint of another UID to be refused or collected", lambda: refused_or_gone(
        kube, namespace, "earlier-uid"), timeout=FAST)

    # the trainer goes on: its next checkpoint is recorded, the steps beyond its progress are not
    checkpoint(kube, namespace, name, 1, 120, 8)
    for ck in ("bogus-huge-step", "beyond-progress"):
        status, reason, message = verdict(kube, namespace, ck, timeout=PROGRESS_GRACE.total_seconds() + TIMEOUT)
        assert (status, reason) == ("False", "BeyondProgress") and "beyond step 120" in message
    assert last_checkpoint(kube, namespace, name, 120)["name"] == f"{name}-a1-s120"
    checkpoint(kube, namespace, name, 1, 140, 8)  # not pinned
    event(kube, namespace, name, "CheckpointIgnored", "bogus-huge-step")


def test_checkpoints_made_before_the_job_are_refused(kube: Kube, namespace: str, pool: str) -> None:
    job = "later"
    applied_with_it = create(kube, made(namespace, job, "applied-with-it", 1, 10, None))
    in_progress = create(kube, made(namespace, job, "completed-later", 1, 20, None, complete=False))
    created = max(datetime.fromisoformat(c["metadata"]["creationTimestamp"]) for c in (applied_with_it, in_progress))

    def next_second() -> bool:  # creationTimestamps have whole seconds: the job's must be a later one
        if datetime.now(UTC) < created + timedelta(seconds=1):
            raise NotYet("same second")
        return True

    wait_for("the second of the Checkpoints' creation to pass", next_second, timeout=5)
    submit(kube, namespace, pool, TORCH, **ONE, **{"metadata.name": job})  # within the 5 s a missing job waits
    uid = get_job(kube, namespace, job)["metadata"]["uid"]
    # the unfinished one is adopted and completed afterwards, owned by the job: still not the job's save
    client.CustomObjectsApi(kube.api).patch_namespaced_custom_object(GROUP, VERSION, namespace, "checkpoints",
                                                                     "completed-later", {
        "metadata": {"ownerReferences": [{"apiVersion": API_VERSION, "kind": "TrainingJob", "name": job,
                                          "uid": uid}]},
        "spec": {"complete": True}})
    for ck in ("applied-with-it", "completed-later"):
        status, reason, message = verdict(kube, namespace, ck, timeout=FAST)
        assert (status, reason) == ("False", "PredatesJob") and "before the job" in message
    wait_attempt(kube, namespace, job, 1)
    env = env_of(pods_of(kube, namespace, job)[0])
    assert "CARDPOOL_RESUME_STEP" not in env  # it started from scratch, not from someone else's step
    assert "lastCheckpoint" not in get_job(kube, namespace, job)["status"]


def test_deleting_the_recorded_checkpoint_falls_back_to_the_newest_accepted_one(kube: Kube, namespace: str,
                                                                                pool: str) -> None:
    name = submit(kube, namespace, pool, TORCH, **ONE)
    wait_attempt(kube, namespace, name, 1)
    for step in (100, 200):
        checkpoint(kube, namespace, name, 1, step, 8)
    report_checkpoint(rank0(kube, namespace, name, 1, 8), Saved(50, "s3://ckpt/50", 8, None), kube.api)
    assert verdict(kube, namespace, f"{name}-a1-s50")[:2] == ("False", "NotNewer")

    delete(kube, namespace, f"{name}-a1-s200")
    assert last_checkpoint(kube, namespace, name, 100)["name"] == f"{name}-a1-s100"
    assert event(kube, namespace, name, "CheckpointDeleted", f"falls back to {name}-a1-s100").type == "Warning"
    delete(kube, namespace, f"{name}-a1-s100")  # the refused one at step 50 is not taken
    last_checkpoint(kube, namespace, name, None)
    assert event(kube, namespace, name, "CheckpointDeleted", "starts from scratch").type == "Warning"
    checkpoint(kube, namespace, name, 1, 250, 8)


def test_a_bogus_step_taken_before_any_progress_is_undone_by_deleting_it(kube: Kube, namespace: str,
                                                                         pool: str) -> None:
    name = submit(kube, namespace, pool, TORCH, **ONE)
    wait_attempt(kube, namespace, name, 1)
    uid = get_job(kube, namespace, name)["metadata"]["uid"]
    create(kube, made(namespace, name, "bogus", 1, 2**53, uid))  # no progress yet: nothing bounds its step
    status, reason, message = verdict(kube, namespace, "bogus", timeout=FAST)
    assert (status, reason) == ("True", "Recorded") and "reported no progress, so the step is not bounded" in message
    report_checkpoint(rank0(kube, namespace, name, 1, 8), Saved(100, "s3://ckpt/100", 8, None), kube.api)
    assert verdict(kube, namespace, f"{name}-a1-s100")[:2] == ("False", "NotNewer")  # pinned

    delete(kube, namespace, "bogus")
    last_checkpoint(kube, namespace, name, None)
    event(kube, namespace, name, "CheckpointDeleted", "starts from scratch")
    checkpoint(kube, namespace, name, 1, 150, 8)
    api = client.CustomObjectsApi(kube.api)
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", name, {"spec": {"suspend": True}})
    wait_phase(kube, namespace, name, "Suspended")
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", name, {"spec": {"suspend": False}})
    wait_attempt(kube, namespace, name, 2)
    env = env_of(next(p for p in pods_of(kube, namespace, name) if p.metadata.labels["cardpool.io/attempt"] == "2"))
    assert env["CARDPOOL_RESUME_STEP"] == "150"


def test_a_checkpoint_naming_a_job_that_does_not_exist_is_refused_within_10_s(kube: Kube, namespace: str,
                                                                              quiet_operator: Any) -> None:
    gone = submit(kube, namespace, f"{namespace}-nowhere", TORCH, **{"metadata.name": "gone"})
    create(kube, made(namespace, gone, "of-a-deleted-job", 1, 5, None, complete=False))  # never completed
    client.CustomObjectsApi(kube.api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", gone)
    started = time.monotonic()
    create(kube, made(namespace, "nobody", "complete", 1, 10, None))  # (one owned by a missing UID is collected)
    create(kube, made(namespace, "nobody", "incomplete", 1, 20, None, complete=False))
    for ck, job in (("complete", "nobody"), ("incomplete", "nobody"), ("of-a-deleted-job", gone)):
        status, reason, message = verdict(kube, namespace, ck, timeout=FAST)
        assert (status, reason, message) == ("False", "NoSuchJob",
                                             f"there is no TrainingJob {job} in namespace {namespace}")
    assert time.monotonic() - started < FAST


def test_a_reported_save_time_becomes_the_interval_the_next_attempt_is_given(kube: Kube, namespace: str,
                                                                            pool: str) -> None:
    """saveSeconds and the advice pass the API server's schema (nothing pruned); the advice reaches the pods of
    the next attempt as CARDPOOL_CHECKPOINT_INTERVAL_SECONDS, and the pool counts faults per group."""
    name = submit(kube, namespace, pool, TORCH, **ONE)
    wait_attempt(kube, namespace, name, 1)
    assert "CARDPOOL_CHECKPOINT_INTERVAL_SECONDS" not in env_of(pods_of(kube, namespace, name)[0])  # no save yet
    report_checkpoint(rank0(kube, namespace, name, 1, 8), Saved(100, "s3://ckpt/100", 8, None), kube.api,
                      save_seconds=30.0)

    def advised() -> dict:
        status = get_job(kube, namespace, name)["status"]
        if "checkpointAdvice" not in status:
            raise NotYet(f"no checkpointAdvice yet; lastCheckpoint {status.get('lastCheckpoint')}")
        return status

    status = wait_for(f"the checkpoint advice of {name}", advised, timeout=TIMEOUT)
    advice = status["checkpointAdvice"]
    assert status["lastCheckpoint"]["saveSeconds"] == 30.0
    assert (advice["saveSeconds"], advice["nodes"]) == (30.0, 1)
    assert advice["intervalSeconds"] == round(math.sqrt(2 * advice["mtbfSeconds"] * 30.0))
    groups = client.CustomObjectsApi(kube.api).get_cluster_custom_object(GROUP, VERSION, "cardpools",
                                                                         pool)["status"]["groups"]
    assert all(g["faults"]["count"] >= 0 and g["faults"]["since"] for g in groups)

    api = client.CustomObjectsApi(kube.api)
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", name, {"spec": {"suspend": True}})
    wait_phase(kube, namespace, name, "Suspended")
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", name, {"spec": {"suspend": False}})
    wait_attempt(kube, namespace, name, 2)
    second = next(p for p in pods_of(kube, namespace, name) if p.metadata.labels["cardpool.io/attempt"] == "2")
    given = get_job(kube, namespace, name)["status"]["history"][-1]["checkpointIntervalSeconds"]
    assert env_of(second)["CARDPOOL_CHECKPOINT_INTERVAL_SECONDS"] == str(given)
    assert abs(given - advice["intervalSeconds"]) <= 0.1 * advice["intervalSeconds"]
