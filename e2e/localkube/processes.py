"""Background processes recorded by process id, so a later command (`make down`) can stop them cleanly.

The record is a JSON list in start order; stop goes in reverse order. A recorded process counts as ours only
while /proc/<pid>/stat shows the start time we recorded, so a recycled pid is never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .waiting import wait_for


@dataclass(frozen=True)
class Recorded:
    name: str
    pid: int
    program: str
    log: str
    started: int = 0
    """Start time of the process in clock ticks since boot (/proc/<pid>/stat field 22)."""

    def alive(self) -> bool:
        stat = _stat(self.pid)
        return stat is not None and stat[0] != "Z" and stat[1] == self.started

    def rss_bytes(self) -> int:
        """Resident memory of the process now (VmRSS), 0 if it is gone."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(Path(self.log).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a process, None when there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


class ProcessDied(RuntimeError):
    pass


class ProcessTable:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.file = state_dir / "processes.json"
        self.logs = state_dir / "logs"

    def load(self) -> list[Recorded]:
        try:
            return [Recorded(**entry) for entry in json.loads(self.file.read_text())]
        except FileNotFoundError:
            return []

    def get(self, name: str) -> Recorded | None:
        return next((p for p in self.load() if p.name == name), None)

    def _save(self, entries: Sequence[Recorded]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(e) for e in entries], indent=1))
        tmp.replace(self.file)

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None,
              ready_url: str | None = None, timeout: float = 60.0) -> subprocess.Popen:
        """Start `args` in its own session (it outlives this Python process), logging to logs/<name>.log.
        With `ready_url`, wait (at most `timeout` s) until it answers 200; a process that exits first fails
        the wait at once, with the end of its log."""
        existing = self.get(name)
        if existing and existing.alive():
            raise RuntimeError(f"{name} is already running as pid {existing.pid}")
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                list(args), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **(env or {})},
            )
        entries = [e for e in self.load() if e.name != name]
        stat = _stat(proc.pid)
        recorded = Recorded(name=name, pid=proc.pid, program=str(args[0]), log=str(log),
                            started=stat[1] if stat else -1)
        entries.append(recorded)
        self._save(entries)
        if ready_url:
            def ready() -> bool:
                if proc.poll() is not None:
                    raise ProcessDied(f"{name} exited with code {proc.returncode}; its log ends:\n"
                                      f"{recorded.log_tail()}")
                with urllib.request.urlopen(ready_url, timeout=3) as resp:
                    return resp.status == 200

            wait_for(f"{name} to answer {ready_url}", ready, timeout=timeout, fatal=(ProcessDied,))
        return proc

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 20.0) -> bool:
        """Signal one recorded process and wait (SIGKILL after `timeout`); False if it was not running."""
        entry = self.get(name)
        if entry is None or not entry.alive():
            return False
        _signal_group(entry.pid, sig)
        deadline = time.monotonic() + timeout
        while entry.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if entry.alive():
            _signal_group(entry.pid, signal.SIGKILL)
            while entry.alive() and time.monotonic() < deadline + 5:
                time.sleep(0.05)
        self._save([e for e in self.load() if e.name != name])
        return True

    def stop_all(self, timeout: float = 20.0) -> list[str]:
        """SIGTERM every recorded process (newest first), SIGKILL what is left after `timeout`."""
        stopped = []
        entries = self.load()
        for entry in reversed(entries):
            if entry.alive():
                _signal_group(entry.pid, signal.SIGTERM)
                stopped.append(entry.name)
        deadline = time.monotonic() + timeout
        while any(e.alive() for e in entries) and time.monotonic() < deadline:
            time.sleep(0.1)
        for entry in entries:
            if entry.alive():
                _signal_group(entry.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(e.alive() for e in entries) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [e.name for e in entries if e.alive()]
        if survivors:
            raise RuntimeError(f"could not stop {', '.join(survivors)}")
        self.file.unlink(missing_ok=True)
        return stopped


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # Each process leads its own session (start_new_session), so its children go with it.
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def operator_command(health_url: str) -> list[str]:
    """This checkout's operator, as `make operator` and the Deployment run it."""
    return [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", f"--liveness={health_url}",
            "-m", "cardpool.handlers"]
