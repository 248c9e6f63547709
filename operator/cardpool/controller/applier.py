"""Carries out work handed over by the pass, on a bounded set of worker threads, most urgent first.

A `Work` is one object's effects in stages: every task of a stage may run at once (a gang's pod creates), the
next stage starts when all of them succeeded (pods only after the status that records their attempt), and a
failed task ends the work (later stages are dropped: the next pass decides again from what is observed).
Tasks of all works share one priority queue, so a fault's restart written now goes ahead of the thousands
of pod creates of jobs admitted a moment earlier, and no job's effects wait for another job's.
Before every task the fence is asked whether this replica still leads: a replica that lost its lease writes
nothing more (what it had queued is dropped, and the next leader decides afresh). The client asks again right
before each write is sent (cardpool.kube.client.Kube.fence), as a task may wait for the request budget.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from cardpool.kube import budget
from cardpool.kube.client import Fenced

log = logging.getLogger("cardpool.applier")


class Priority(IntEnum):
    URGENT = 0
    """A fault's or failure's record, stopping a failed gang, the new attempt of a restarted job."""
    NORMAL = 1
    """Other status writes, events, checkpoint verdicts, node and pool status."""
    BULK = 2
    """Pods of newly admitted jobs."""


@dataclass
class Task:
    name: str
    """What it does, for logs: e.g. "create pod ns/job-a1-3"."""
    priority: Priority
    call: Callable[[], Any]


@dataclass
class Work:
    """One object's effects. `done(error)` is called once, from a worker thread: error None when every stage
    succeeded, else the first exception (Fenced when leadership was lost). `then`: works submitted only after
    this one succeeded; if it failed they are dropped unrun (its `done` sees the error and owns them)."""

    key: str
    stages: list[list[Task]]
    done: Callable[[BaseException | None], None] = lambda error: None
    then: list[Work] = field(default_factory=list)


class _Run:
    """A work in progress: which stage, how many of its tasks are still out, whether one failed."""

    __slots__ = ("error", "finished", "outstanding", "stage", "work")

    def __init__(self, work: Work):
        self.work, self.stage, self.outstanding, self.error, self.finished = work, -1, 0, None, False


class Applier:
    def __init__(self, workers: int, fence: Callable[[], bool] = lambda: True, name: str = "cardpool-apply",
                 finished: Callable[[], None] = lambda: None):
        """`finished`: called after each work's `done` (from a worker thread)."""
        self._fence, self._finished = fence, finished
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queue: list[tuple[int, int, Task, _Run]] = []
        self._seq = itertools.count()
        self._runs: dict[str, int] = {}  # key -> works in flight
        self._stopping = False
        self._busy = 0
        self._threads = [threading.Thread(target=self._worker, name=f"{name}-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, work: Work) -> None:
        run = _Run(work)
        with self._lock:
            self._runs[work.key] = self._runs.get(work.key, 0) + 1
            finished = self._advance(run)
        if finished:
            self._report(run)

    def in_flight(self, key: str) -> bool:
        with self._lock:
            return key in self._runs

    def busy_keys(self) -> frozenset[str]:
        """Every key with work in flight, at one instant (one lock for a whole pass, not one per job)."""
        with self._lock:
            return frozenset(self._runs)

    def pending(self) -> int:
        """Tasks queued or running."""
        with self._lock:
            return len(self._queue) + self._busy

    def drop_queued(self) -> int:
        """Leadership was lost: forget every task not yet started (their works end with Fenced)."""
        with self._lock:
            queued, self._queue = self._queue, []
            runs = {id(run): run for _, _, _, run in queued}
            for _, _, _, run in queued:
                run.outstanding -= 1
            finished = []
            for run in runs.values():
                run.error = run.error or Fenced("leadership lost")
                if run.outstanding == 0 and self._finish_locked(run):  # none of its tasks is running
                    finished.append(run)
        for run in finished:
            self._report(run)
        return len(queued)

    def stop(self, timeout: float = 10.0) -> None:
        self.drop_queued()
        with self._lock:
            self._stopping = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout / max(len(self._threads), 1))

    # the rest runs under self._lock unless said otherwise

    def _advance(self, run: _Run) -> bool:
        """Queue the next non-empty stage of `run`. True when there is none: the run is over, and the caller
        reports it once outside the lock."""
        stages = run.work.stages
        while run.error is None and run.stage + 1 < len(stages):
            run.stage += 1
            tasks = stages[run.stage]
            if tasks:
                run.outstanding = len(tasks)
                for task in tasks:
                    heapq.heappush(self._queue, (task.priority, next(self._seq), task, run))
                self._ready.notify(len(tasks))
                return False
        return self._finish_locked(run)

    def _finish_locked(self, run: _Run) -> bool:
        if run.finished:
            return False
        run.finished = True
        left = self._runs.get(run.work.key, 0) - 1
        if left > 0:
            self._runs[run.work.key] = left
        else:
            self._runs.pop(run.work.key, None)
        return True

    def _worker(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._ready.wait()
                if self._stopping and not self._queue:
                    return
                _, _, task, run = heapq.heappop(self._queue)
                self._busy += 1
            try:
                self._run_task(task, run)
            finally:
                with self._lock:
                    self._busy -= 1

    def _run_task(self, task: Task, run: _Run) -> None:
        error: BaseException | None = None
        if run.error is None:  # a sibling failed already: skip the call
            try:
                if not self._fence():
                    raise Fenced(f"leadership lost before: {task.name}")
                with budget.priority(task.priority):  # its requests draw on the client's budget in this order too
                    task.call()
            except Exception as exc:  # reported to the work's owner, which decides what it means
                error = exc
        with self._lock:
            if error is not None and run.error is None:
                run.error = error
            run.outstanding -= 1
            if run.outstanding > 0:
                return
            finished = self._advance(run) if run.error is None else self._finish_locked(run)
        if finished:
            self._report(run)

    def _report(self, run: _Run) -> None:
        """Outside the lock: the owner's callback, then the follow-up works (or their failure)."""
        work, error = run.work, run.error
        try:
            work.done(error)
        except Exception:
            log.exception("the completion of %s failed", work.key)
        if error is None:
            for follower in work.then:
                self.submit(follower)
        self._finished()
