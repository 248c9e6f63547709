"""The `make up` demo on the real local cluster: KWOK runs no container, so localkube.simtrainer (which
`make up` starts for the demo namespace) reports progress for rank 0 as a trainer built on cardpool.runtime
does, and the example job with hang detection runs on instead of restarting with `Hang` every timeout."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs import TORCH, get_job, make_pool, submit, wait_attempt
from localkube.config import REPO
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for

TIMEOUT_S = 10  # the smallest progressTimeoutSeconds admission takes
STEP_S = 0.5


@pytest.fixture
def pool(kube: Kube, operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace)


@pytest.fixture
def simtrainer(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[subprocess.Popen]:
    log = tmp_path / "simtrainer.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "localkube.simtrainer", "--kubeconfig", str(kube.kubeconfig), "--namespace",
             namespace, "--interval", "1", "--poll", "0.5", "--step-seconds", str(STEP_S)],
            stdout=out, stderr=subprocess.STDOUT, env={"PYTHONPATH": f"{REPO / 'e2e'}:{REPO / 'operator'}"})
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        print(log.read_text())


def test_the_demo_job_reports_progress_and_is_not_restarted_for_a_hang(
        kube: Kube, namespace: str, pool: str, quiet_operator: Any, simtrainer: subprocess.Popen) -> None:
    name = submit(kube, namespace, pool, TORCH, **{"spec.failurePolicy.progressTimeoutSeconds": TIMEOUT_S})
    wait_attempt(kube, namespace, name, 1)
    # reported steps reach the job's status, past twice the timeout since the pods started
    goal = int(2.5 * TIMEOUT_S / STEP_S)

    def progressed() -> dict:
        status = get_job(kube, namespace, name)["status"]
        progress = status.get("progress") or {}
        if status["attempt"] != 1 or status["phase"] != "Running":
            raise AssertionError(f"the job left attempt 1: {status.get('lastFailure')}")
        if progress.get("attempt") != 1 or progress.get("step", 0) < goal:
            raise NotYet(f"progress {progress}")
        return status

    status = wait_for(f"{name} to report step {goal} in attempt 1", progressed, timeout=3 * TIMEOUT_S + 30,
                      fatal=(AssertionError,))
    assert not any((status.get("restarts") or {}).values()) and not status.get("lastFailure")
    # the reports are what keeps it running: without them the same job hangs within its timeout
    simtrainer.terminate()
    simtrainer.wait(timeout=10)
    status = wait_attempt(kube, namespace, name, 2, timeout=TIMEOUT_S + 30)
    assert status["lastFailure"]["reason"] == "Hang", status["lastFailure"]
