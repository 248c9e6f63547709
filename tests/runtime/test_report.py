"""report_checkpoint: the saved step is reported as progress before the Checkpoint exists, and the Checkpoint
names its job (an ownerReference with the job's UID) and attempt, so the operator takes it."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cardpool.runtime import Contract, ProgressReporter, Saved, report_checkpoint

ENV = {"CARDPOOL_JOB": "j", "CARDPOOL_NAMESPACE": "ns", "CARDPOOL_ATTEMPT": "3", "CARDPOOL_RANK": "0",
       "CARDPOOL_WORKERS": "4", "CARDPOOL_CARDS_PER_WORKER": "8", "CARDPOOL_WORLD_SIZE": "32",
       "CARDPOOL_JOB_UID": "uid-1", "CARDPOOL_POD": "j-a3-0"}
SAVED = Saved(40, "s3://c/40", 32, None)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """What reached the API, in order: ("progress", pod, step, total) and ("create", body)."""
    seen: list[tuple] = []

    class Custom:
        def __init__(self, api) -> None:
            pass

        def create_namespaced_custom_object(self, group, version, namespace, plural, body):
            seen.append(("create", body))
            if body["metadata"]["name"] == "j-a3-s41":
                raise ApiException(status=409)  # reported before: done

    monkeypatch.setattr(client, "CustomObjectsApi", Custom)
    return seen


def reporter(seen: list[tuple], fail: bool = False) -> ProgressReporter:
    def write(pod: str, namespace: str, patch: dict) -> None:
        if fail:
            raise ConnectionError("apiserver away")
        value = json.loads(patch["metadata"]["annotations"]["cardpool.io/progress"])
        seen.append(("progress", pod, value["step"], value.get("totalSteps")))
    return ProgressReporter(Contract.from_env(ENV), 30, write)


def test_the_saved_step_is_reported_before_the_checkpoint_is_created(calls: list[tuple]) -> None:
    progress = reporter(calls)
    progress.report(37, 100)
    assert report_checkpoint(Contract.from_env(ENV), SAVED, object(), progress) == "j-a3-s40"
    assert [c[0] for c in calls] == ["progress", "progress", "create"]
    assert calls[1] == ("progress", "j-a3-0", 40, 100)  # forced past the interval; the total kept
    body = calls[2][1]
    assert body["metadata"]["ownerReferences"] == [
        {"apiVersion": "cardpool.io/v1alpha1", "kind": "TrainingJob", "name": "j", "uid": "uid-1"}]
    assert (body["spec"]["job"], body["spec"]["attempt"], body["spec"]["step"], body["spec"]["complete"]) == (
        "j", 3, 40, True)


def test_no_second_report_when_the_last_one_was_as_high(calls: list[tuple]) -> None:
    progress = reporter(calls)
    progress.report(45, 100)
    report_checkpoint(Contract.from_env(ENV), SAVED, object(), progress)
    assert [c[0] for c in calls] == ["progress", "create"]


def test_a_failed_progress_report_does_not_stop_the_checkpoint(calls: list[tuple]) -> None:
    report_checkpoint(Contract.from_env(ENV), SAVED, object(), reporter(calls, fail=True))
    assert [c[0] for c in calls] == ["create"]  # the operator may then refuse it; training goes on


def test_reporting_again_is_harmless(calls: list[tuple]) -> None:
    assert report_checkpoint(Contract.from_env(ENV), Saved(41, "s3://c/41", 32, None), object(),
                             reporter(calls)) == "j-a3-s41"


def test_without_the_jobs_uid_it_says_the_operator_will_refuse_it(calls: list[tuple],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    contract = Contract.from_env({k: v for k, v in ENV.items() if k != "CARDPOOL_JOB_UID"})
    report_checkpoint(contract, SAVED, object(), reporter(calls))
    assert calls[-1][1]["metadata"]["ownerReferences"] == [] and "NotOwned" in caplog.text


@pytest.mark.parametrize(("saved", "given", "reported"), [
    (SAVED, None, None),  # not measured, not given: nothing said
    (Saved(40, "s3://c/40", 32, None, 12.3456), None, 12.346),  # how long the save took
    (Saved(40, "s3://c/40", 32, None, 12.3456), 0.8, 0.8),  # an asynchronous save: its blocking part
], ids=["unknown", "measured", "given"])
def test_the_save_time_is_reported_for_the_operators_interval_advice(calls: list[tuple], saved: Saved,
                                                                     given: float | None, reported) -> None:
    report_checkpoint(Contract.from_env(ENV), saved, object(), reporter(calls), save_seconds=given)
    assert calls[-1][1]["spec"].get("saveSeconds") == reported
