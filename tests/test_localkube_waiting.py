"""Bounded waits end at their deadline and say what they waited for and what they saw."""

from __future__ import annotations

import itertools

import pytest

from localkube.waiting import NotYet, WaitTimeout, wait_for


def test_returns_the_first_truthy_value() -> None:
    counter = itertools.count()
    assert wait_for("the third try", lambda: next(counter) >= 2 and "done", timeout=5, interval=0.01) == "done"


def test_timeout_names_what_was_awaited_and_what_was_seen() -> None:
    def check():
        raise NotYet("phase=Pending")

    with pytest.raises(WaitTimeout, match=r"waiting for pod x to run; last seen: phase=Pending"):
        wait_for("pod x to run", check, timeout=0.05, interval=0.01)


def test_errors_count_as_not_yet_but_are_reported() -> None:
    def check():
        raise ConnectionRefusedError("apiserver down")

    with pytest.raises(WaitTimeout, match="apiserver down"):
        wait_for("the apiserver", check, timeout=0.05, interval=0.01)


def test_fatal_errors_end_the_wait_at_once() -> None:
    calls = []

    def check():
        calls.append(1)
        raise KeyError("process died")

    with pytest.raises(KeyError):
        wait_for("a process", check, timeout=5, interval=0.01, fatal=(KeyError,))
    assert len(calls) == 1
