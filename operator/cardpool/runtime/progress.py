"""Progress reports: rank 0 writes its step into an annotation on its own pod, at most once per interval, so
hang detection (spec.failurePolicy.progressTimeoutSeconds) knows the job is alive. One small patch per job
per interval, whatever the job's size: the other ranks never write. Reporting is best effort: a failed write
is logged and training goes on.

Before rank 0 creates a Checkpoint, it reports the saved step (`saved`): the operator takes a Checkpoint only up
to the step its attempt reported (cardpool.core.checkpoints)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cardpool.api.keys import ANNOTATION_PROGRESS

from .contract import Contract
from .kubeapi import api_client

DEFAULT_INTERVAL_S = float(os.environ.get("CARDPOOL_PROGRESS_INTERVAL_SECONDS", "30"))
log = logging.getLogger("cardpool.runtime")

Writer = Callable[[str, str, dict], None]
"""(pod, namespace, merge patch) -> None."""


def pod_writer(api=None) -> Writer:
    """Patches a pod through `api` (default: a client as api_client makes it, per write)."""
    def write(pod: str, namespace: str, patch: dict) -> None:
        from kubernetes import client  # imported here: a trainer that never reports needs no client

        client.CoreV1Api(api or api_client()).patch_namespaced_pod(pod, namespace, patch, _request_timeout=5)
    return write


class ProgressReporter:
    def __init__(self, contract: Contract, min_interval: float = DEFAULT_INTERVAL_S, write: Writer | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.contract = contract
        self.min_interval = min_interval
        self._write = write or pod_writer()
        self._clock = clock
        self._last: float | None = None
        self._total: int | None = None
        self.last_step: int | None = None
        """The step of the last report written."""

    def report(self, step: int, total_steps: int | None = None, force: bool = False) -> bool:
        """Report `step`; returns whether a write was made (rank 0 only, rate-limited unless `force`). Without
        `total_steps`, the last one given is reported again."""
        if not self.contract.is_rank0 or not self.contract.pod:
            return False
        total_steps = self._total = total_steps if total_steps is not None else self._total
        now = self._clock()
        if not force and self._last is not None and now - self._last < self.min_interval:
            return False
        value: dict = {"step": step, "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        if total_steps is not None:
            value["totalSteps"] = total_steps
        patch = {"metadata": {"annotations": {ANNOTATION_PROGRESS: json.dumps(value, separators=(",", ":"))}}}
        self._last = now  # a failed write waits an interval too: never a stalled loop of retries
        try:
            self._write(self.contract.pod, self.contract.namespace, patch)
        except Exception as exc:  # progress must never stop training
            log.warning("could not report progress at step %d: %s", step, exc)
            return False
        self.last_step = step
        return True

    def saved(self, step: int) -> bool:
        """Before the Checkpoint of `step` is created: report `step` now, unless the last report was as high.
        Returns whether the operator can see that step as reached."""
        if self.last_step is not None and self.last_step >= step:
            return True
        return self.report(step, force=True)
