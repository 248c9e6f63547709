"""Recorded processes are recognised by pid and start time, and stopped by `down`."""

from __future__ import annotations

import dataclasses
import sys

from localkube.processes import ProcessTable


def test_start_records_and_stop_all_stops(tmp_path) -> None:
    table = ProcessTable(tmp_path)
    # an interpreter running a script: argv[0] is the interpreter, which once fooled an argv-based check
    table.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    recorded = table.get("sleeper")
    assert recorded is not None and recorded.alive()
    assert table.stop_all() == ["sleeper"]
    assert not recorded.alive()
    assert table.load() == []


def test_a_recycled_pid_is_not_ours(tmp_path) -> None:
    table = ProcessTable(tmp_path)
    table.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    recorded = table.get("sleeper")
    impostor = dataclasses.replace(recorded, started=recorded.started + 1)
    assert recorded.alive() and not impostor.alive()
    table.stop_all()
