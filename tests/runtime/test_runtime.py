"""The runtime library's pieces on their own: the env contract and the checkpoint folder."""

from __future__ import annotations

import pytest

from cardpool.runtime import Contract, FileCheckpoints, SaveSchedule

ENV = {"CARDPOOL_JOB": "j", "CARDPOOL_NAMESPACE": "ns", "CARDPOOL_ATTEMPT": "3", "CARDPOOL_RANK": "1",
       "CARDPOOL_WORKERS": "4", "CARDPOOL_CARDS_PER_WORKER": "8", "CARDPOOL_WORLD_SIZE": "32",
       "CARDPOOL_LAYOUT": '[{"accelerator": "H800", "firstRank": 0, "workers": 4}]'}


def test_contract_reads_the_operators_variables_and_the_resume_point() -> None:
    c = Contract.from_env({**ENV, "CARDPOOL_RESUME_URI": "s3://c/10", "CARDPOOL_RESUME_STEP": "10",
                           "CARDPOOL_RESUME_WORLD_SIZE": "16"})
    assert (c.attempt, c.rank, c.workers, c.world_size, c.is_rank0) == (3, 1, 4, 32, False)
    assert (c.resume.uri, c.resume.step, c.resume.world_size) == ("s3://c/10", 10, 16)
    assert c.layout[0]["accelerator"] == "H800"
    assert Contract.from_env(ENV).resume is None


def test_a_missing_variable_names_itself() -> None:
    with pytest.raises(KeyError, match="CARDPOOL_RANK"):
        Contract.from_env({k: v for k, v in ENV.items() if k != "CARDPOOL_RANK"})


def test_only_complete_checkpoints_are_visible(tmp_path) -> None:
    store = FileCheckpoints((tmp_path / "c").as_uri())
    assert store.latest() is None
    saved = store.save(10, 32, lambda d: (d / "state").write_text("ten"))
    assert saved.seconds is not None and saved.seconds >= 0  # measured, for the interval advice
    (tmp_path / "c" / "step-000000000020").mkdir()  # a save that died half-way: no manifest
    latest = store.latest()
    assert (latest.step, latest.world_size) == (10, 32)
    assert (store.load(latest.uri) / "state").read_text() == "ten"
    with pytest.raises(FileNotFoundError):
        store.load((tmp_path / "c" / "step-000000000020").as_uri())
    with pytest.raises(ValueError, match="file://"):
        FileCheckpoints("s3://bucket/x")


def test_progress_is_reported_by_rank_zero_at_most_once_per_interval() -> None:
    from cardpool.runtime import ProgressReporter

    writes, clock = [], [0.0]
    rank0 = Contract.from_env({**ENV, "CARDPOOL_RANK": "0", "CARDPOOL_POD": "j-a3-0"})
    reporter = ProgressReporter(rank0, 30, lambda pod, ns, patch: writes.append((pod, ns, patch)), lambda: clock[0])
    assert reporter.report(1, 100)
    clock[0] = 29.9
    assert not reporter.report(2, 100)
    assert reporter.report(3, 100, force=True)
    clock[0] = 60
    assert reporter.report(4)
    assert [w[0:2] for w in writes] == [("j-a3-0", "ns")] * 3
    assert '"step":3,' in writes[1][2]["metadata"]["annotations"]["cardpool.io/progress"]
    other = ProgressReporter(Contract.from_env({**ENV, "CARDPOOL_POD": "j-a3-1"}), 0,
                             lambda *a: writes.append(a))
    assert not other.report(5) and len(writes) == 3  # rank 1 never writes


def test_a_failed_progress_write_does_not_stop_training() -> None:
    from cardpool.runtime import ProgressReporter

    def broken(*_):
        raise ConnectionError("apiserver away")

    rank0 = Contract.from_env({**ENV, "CARDPOOL_RANK": "0", "CARDPOOL_POD": "j-a3-0"})
    assert ProgressReporter(rank0, 0, broken).report(1) is False


def test_a_save_schedule_follows_the_operators_advice_else_its_own_default() -> None:
    now = [0.0]
    advised = Contract.from_env({**ENV, "CARDPOOL_CHECKPOINT_INTERVAL_SECONDS": "300"})
    schedule = SaveSchedule(advised, default_seconds=600, clock=lambda: now[0])
    assert (schedule.interval_seconds, schedule.advised) == (300, True)
    now[0] = 299.9
    assert not schedule.due()
    now[0] = 300
    assert schedule.due()
    schedule.saved()
    now[0] = 599
    assert not schedule.due()  # an interval from the last save
    own = SaveSchedule(Contract.from_env(ENV), default_seconds=600, clock=lambda: now[0])
    assert (own.interval_seconds, own.advised, Contract.from_env(ENV).checkpoint_interval_seconds) == (
        600, False, None)
    with pytest.raises(ValueError, match="default_seconds"):
        SaveSchedule(Contract.from_env(ENV), default_seconds=0)
