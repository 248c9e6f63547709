"""Reading what others wrote on API objects: annotations a trainer or an admin may have written badly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cardpool.kube import observe

T = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "step", "time"), [
    ('{"step": 5, "totalSteps": 10, "time": "2026-11-25T12:00:00Z"}', 5, T),
    ('{"step": 5, "time": "2026-11-25T12:00:00"}', 5, T),  # no zone: UTC, as Python's utcnow() writes it
    ('{"step": 5, "time": 1764072000}', None, None),  # not a time string: ignored
    ("[1]", None, None),
    ("not json", None, None),
    ('{"time": "2026-11-25T12:00:00Z"}', None, None),
])
def test_a_progress_report_is_read_or_ignored(text: str, step: int | None, time: datetime | None) -> None:
    report = observe.progress(text)
    assert (report.step, report.time) == (step, time) if step is not None else report is None


def test_drain_records_round_trip_and_a_bad_one_reads_the_same_every_time() -> None:
    record = observe.drain_record('{"reason": "CardFault", "since": "2026-11-25T12:00:00", "cordoned": true}')
    assert (record.reason, record.since, record.cordoned) == ("CardFault", T, True)
    assert observe.drain_record(observe.drain_annotation(record)) == record
    bad = observe.drain_record('["edited by hand"]')
    assert bad.reason == "Unknown" and bad == observe.drain_record('["edited by hand"]')
