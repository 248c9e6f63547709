"""The trainers of KWOK's pods, simulated: what rank 0 of a real trainer says to the operator.

KWOK runs no container, so on the `make up` demo nothing would report progress, and a job with hang detection
(spec.failurePolicy.progressTimeoutSeconds) would restart with `Hang` every timeout. This process plays rank 0
of every Running cardpool pod in its namespace: one step every --step-seconds since the pod started (from the
step it resumed at), reported through cardpool.runtime's ProgressReporter from the pod's own env contract, as
a trainer built on that library does (at most once per CARDPOOL_PROGRESS_INTERVAL_SECONDS, default 30).
Pods run as local processes (annotation localkube.cardpool.io/run, see localkube.runner) report for
themselves and are left alone.

    python -m localkube.simtrainer --kubeconfig K --namespace demo
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from kubernetes import client, config

from cardpool.api.keys import LABEL_MANAGED_BY, LABEL_RANK, MANAGED_BY
from cardpool.runtime import Contract, ProgressReporter
from cardpool.runtime.progress import DEFAULT_INTERVAL_S, Writer, pod_writer

from .runner import ANNOTATION as RUN_AS_PROCESS

RANK0 = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_RANK}=0"
log = logging.getLogger("localkube.simtrainer")


def contract(pod: client.V1Pod) -> Contract | None:
    """The env contract of the pod's first container that has one (None: not a trainer of cardpool's)."""
    for container in pod.spec.containers:
        env = {e.name: e.value or "" for e in container.env or [] if e.value is not None}
        if "CARDPOOL_JOB" in env:
            try:
                return Contract.from_env(env)
            except (KeyError, ValueError) as exc:
                log.warning("pod %s: no usable env contract: %s", pod.metadata.name, exc)
                return None
    return None


def simulated(pod: client.V1Pod) -> bool:
    """A Running pod of KWOK's, whose trainer nothing runs."""
    annotations = pod.metadata.annotations or {}
    return (pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None
            and pod.status.start_time is not None and RUN_AS_PROCESS not in annotations)


def step(started: datetime, resumed_at: int, now: datetime, step_seconds: float) -> int:
    """The step a trainer that started at `started` from `resumed_at` has reached by `now`."""
    return resumed_at + max(0, int((now - started).total_seconds() / step_seconds))


class Trainers:
    """rank 0 of each simulated pod, by pod UID: a pod's reporter keeps its rate limit across passes."""

    def __init__(self, write: Writer, step_seconds: float = 1.0, interval: float = DEFAULT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.step_seconds, self.interval, self.clock = write, step_seconds, interval, clock
        self.reporters: dict[str, ProgressReporter] = {}

    def pass_over(self, pods: list[client.V1Pod], now: datetime) -> int:
        """Report for every simulated rank 0 whose interval has passed; returns how many reports were written."""
        live = {p.metadata.uid: p for p in pods if simulated(p)}
        for uid in set(self.reporters) - set(live):
            del self.reporters[uid]  # the pod ended or went: its trainer with it
        written = 0
        for uid, pod in live.items():
            reporter = self.reporters.get(uid)
            if reporter is None:
                found = contract(pod)
                if found is None or not found.is_rank0 or not found.pod:
                    continue
                reporter = self.reporters[uid] = ProgressReporter(found, self.interval, self.write, self.clock)
            resumed_at = reporter.contract.resume.step if reporter.contract.resume else 0
            written += reporter.report(step(pod.status.start_time, resumed_at, now, self.step_seconds))
        return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localkube.simtrainer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG")
    parser.add_argument("--namespace", required=True, help="the pods of this namespace")
    parser.add_argument("--step-seconds", type=float, default=1.0, help="one simulated step every so many s")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S,
                        help="at most one report per pod per so many s (CARDPOOL_PROGRESS_INTERVAL_SECONDS)")
    parser.add_argument("--poll", type=float, default=2.0, help="look at the pods every so many s")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    api = config.new_client_from_config(args.kubeconfig)
    core = client.CoreV1Api(api)
    trainers = Trainers(pod_writer(api), args.step_seconds, args.interval)
    log.info("reporting progress for rank 0 of cardpool's pods in namespace %s every %s s", args.namespace,
             args.interval)
    while True:
        try:
            pods = core.list_namespaced_pod(args.namespace, label_selector=RANK0).items
            trainers.pass_over(pods, datetime.now(UTC))
        except Exception as exc:  # the cluster restarting, a pod gone mid-pass: the next pass tries again
            log.warning("pass failed: %s", exc)
        time.sleep(args.poll)


if __name__ == "__main__":
    raise SystemExit(main())
