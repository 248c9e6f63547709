"""The chaos suite's workload and invariants (e2e/test_chaos.py).

A workload is 51 jobs on the small fleet's pool, of mixed sizes: one-card jobs, 2 x 2-card jobs, elastic
Ascend jobs at their largest size (so no room to grow makes them restart on their own), fixed 8-card jobs and
two Mixed jobs over H800 and A100, one of which spans both; ten of them have a checkpoint recorded. Every job
asks for little CPU, so one-card workers share nodes.

`snapshot()` lists everything; `converged()` waits until the cluster is back to one pod per rank of each job's
current attempt and then compares with the snapshot from before the fault: attempts, restart counters,
history and recorded checkpoints are what they were (plus the consequences the test names), no job failed,
nothing is orphaned.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from kubernetes import client

from cardpool.api.keys import GROUP, LABEL_ATTEMPT, LABEL_JOB, LABEL_RANK, VERSION
from jobs import TORCH, checkpoint, submit
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for
from manifests import edit, example

SMALL = {"spec.workers.template.spec.containers.0.resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}
CALL = {"_request_timeout": 10}
"""Every request of the suite's own client has a deadline: a stopped API server must not hang the test."""


def _job(name: str, cards: int, low: int, high: int, accelerators: list[str], mode: str = "Homogeneous") -> dict:
    return {"metadata.name": name, "spec.workers.cardsPerWorker": cards,
            "spec.workers.size": {"min": low, "max": high}, "spec.placement.accelerators": accelerators,
            "spec.placement.mode": mode, **SMALL}


ONE_CARD_MODELS = (["K100"], ["P800"], ["C500"], ["MLU590"])
MIX = ([_job(f"one-{i:02d}", 1, 1, 1, ONE_CARD_MODELS[i % 4]) for i in range(38)]
       + [_job(f"pair-{i}", 2, 2, 2, ["MLU590", "K100"]) for i in range(6)]
       + [_job(f"elastic-{i}", 8, 1, 2, ["Ascend910B"]) for i in range(3)]
       + [_job(f"a100-{i}", 8, 1, 1, ["A100"]) for i in range(2)]
       + [_job("mixed-0", 8, 4, 4, ["H800", "A100"], "Mixed"), _job("mixed-1", 8, 3, 3, ["H800", "A100"], "Mixed")])
"""51 jobs, 182 of the pool's 240 cards, 65 pods: H800 full (mixed-1 spans H800 and A100), Ascend full with
the elastic jobs at their largest size, one A100 node and a K100/MLU590 node's worth of cards to spare."""
CHECKPOINTED = ("elastic-0", "elastic-1", "elastic-2", "a100-0", "a100-1", "mixed-0", "mixed-1", "pair-0", "pair-1",
                "one-00")


@dataclass(frozen=True)
class JobState:
    attempt: int
    phase: str
    restarts: dict
    history: tuple
    checkpoint: int | None
    workers: int


@dataclass
class Snapshot:
    jobs: dict[str, JobState]
    checkpoints: frozenset[str]


def jobs_of(kube: Kube, namespace: str) -> list[dict]:
    return client.CustomObjectsApi(kube.api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "trainingjobs", **CALL)["items"]


def snapshot(kube: Kube, namespace: str) -> Snapshot:
    out = {}
    for body in jobs_of(kube, namespace):
        status = body.get("status") or {}
        history = tuple((h.get("attempt"), h.get("endReason")) for h in status.get("history") or [])
        out[body["metadata"]["name"]] = JobState(status.get("attempt", 0), status.get("phase", ""),
                                                 status.get("restarts") or {}, history,
                                                 (status.get("lastCheckpoint") or {}).get("step"),
                                                 status.get("workers", 0))
    checkpoints = client.CustomObjectsApi(kube.api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "checkpoints", **CALL)["items"]
    return Snapshot(out, frozenset(c["metadata"]["name"] for c in checkpoints))


def start_workload(kube: Kube, namespace: str, pool: str, jobs: Iterable[dict] = MIX) -> list[str]:
    """Submit the jobs, wait until all run, record a checkpoint for ten of them."""
    names = [submit(kube, namespace, pool, TORCH, **changes) for changes in jobs]
    all_running(kube, namespace, set(names), timeout=180)
    current = snapshot(kube, namespace).jobs
    for name in CHECKPOINTED:
        if name in current:
            state = current[name]
            checkpoint(kube, namespace, name, state.attempt, 100, state.workers)
    return names


def all_running(kube: Kube, namespace: str, names: set[str], timeout: float) -> dict[str, dict]:
    """Wait until each named job runs with exactly one pod per rank of its current attempt (none of another
    attempt, none being deleted)."""
    def check() -> dict[str, dict]:
        bodies = {b["metadata"]["name"]: b for b in jobs_of(kube, namespace)}
        missing = names - bodies.keys()
        if missing:
            raise NotYet(f"jobs {sorted(missing)[:5]} do not exist")
        pods: dict[str, list] = {}
        for pod in kube.core.list_namespaced_pod(namespace, **CALL).items:
            pods.setdefault((pod.metadata.labels or {}).get(LABEL_JOB, ""), []).append(pod)
        for name in sorted(names):
            status = bodies[name].get("status") or {}
            if status.get("phase") != "Running":
                raise NotYet(f"{name} is {status.get('phase')} ({len(names)} jobs)")
            attempt, workers = status["attempt"], status["workers"]
            ranks = sorted((p.metadata.labels[LABEL_ATTEMPT], int(p.metadata.labels[LABEL_RANK]),
                            p.metadata.deletion_timestamp is None, p.status.phase) for p in pods.get(name, []))
            wanted = [(str(attempt), r, True, "Running") for r in range(workers)]
            if ranks != wanted:
                raise NotYet(f"{name}: pods (attempt, rank, not deleting, phase) {ranks[:6]}, wanted {wanted[:3]}...")
        return bodies

    return wait_for(f"{len(names)} jobs of {namespace} to run with one pod per rank of their current attempt",
                    check, timeout=timeout, interval=1.0)


def converged(kube: Kube, namespace: str, before: Snapshot, timeout: float = 180,
              consequences: dict[str, int] | None = None, extra: Iterable[str] = ()) -> float:
    """Wait until every job of `before` (and the `extra` ones, submitted meanwhile) runs with one pod per rank of
    its current attempt, then check the invariants; returns the seconds it took. `consequences`: job -> the
    number of attempts the fault itself ended (a drained node's job); every other job must be as it was."""
    started = time.monotonic()
    consequences = consequences or {}
    names = set(before.jobs) | set(extra)
    all_running(kube, namespace, names, timeout)
    took = time.monotonic() - started
    after = snapshot(kube, namespace)
    for name, was in before.jobs.items():
        now = after.jobs[name]
        ended = consequences.get(name, 0)
        assert now.attempt == was.attempt + ended, f"{name}: attempt {was.attempt} -> {now.attempt}, expected +{ended}"
        if ended:  # the attempts before are as they were; the fault ended the last one and started `ended` more
            assert now.history[:len(was.history) - 1] == was.history[:-1], (
                f"{name}: history {was.history} -> {now.history}")
            assert len(now.history) == len(was.history) + ended, f"{name}: history {was.history} -> {now.history}"
        else:
            assert now.restarts == was.restarts, f"{name}: restarts {was.restarts} -> {now.restarts}"
            assert now.history == was.history, f"{name}: history {was.history} -> {now.history}"
        assert (now.checkpoint or 0) >= (was.checkpoint or 0), (
            f"{name}: checkpoint {was.checkpoint} -> {now.checkpoint}")
    for name in extra:
        now = after.jobs[name]
        assert now.attempt == 1 and not any(now.restarts.values()), (
            f"{name} (new): attempt {now.attempt}, {now.restarts}")
    lost = sorted(before.checkpoints - after.checkpoints)
    assert not lost, f"Checkpoints lost: {lost}"
    assert not [n for n, s in after.jobs.items() if s.phase == "Failed"], "a job failed"
    no_orphans(kube, namespace)
    return took


def no_orphans(kube: Kube, namespace: str) -> None:
    """Every pod, Service and ConfigMap cardpool made belongs to a job that exists, and pods to its current
    attempt."""
    attempts = {b["metadata"]["name"]: (b.get("status") or {}).get("attempt") for b in jobs_of(kube, namespace)}
    for pod in kube.core.list_namespaced_pod(namespace, label_selector=LABEL_JOB, **CALL).items:
        job = pod.metadata.labels[LABEL_JOB]
        assert job in attempts, f"pod {pod.metadata.name} of a job that does not exist"
        assert pod.metadata.labels[LABEL_ATTEMPT] == str(attempts[job]), (
            f"pod {pod.metadata.name} of attempt {pod.metadata.labels[LABEL_ATTEMPT]}, job at {attempts[job]}")
    for kind, items in (("Service", kube.core.list_namespaced_service(namespace, label_selector=LABEL_JOB, **CALL)),
                        ("ConfigMap", kube.core.list_namespaced_config_map(namespace, label_selector=LABEL_JOB,
                                                                           **CALL))):
        for obj in items.items:
            assert obj.metadata.labels[LABEL_JOB] in attempts, f"{kind} {obj.metadata.name} of no job"


@dataclass
class Submitter:
    """Submits one-card jobs in the background, one every `every` seconds, while a fault happens: the jobs being
    submitted and the pods being created when the control plane fails. The API may refuse a submit (it is
    down): that one is tried again under the same name."""

    kube: Kube
    namespace: str
    pool: str
    count: int
    every: float = 0.5
    names: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Submitter:
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos-submitter")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        api = client.CustomObjectsApi(self.kube.api)
        for i in range(self.count):
            name = f"late-{i:02d}"
            body = edit(example(TORCH), {"spec.pool": self.pool, **_job(name, 1, 1, 1, ["P800", "C500"])})
            while not self._stop.is_set():
                try:
                    api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "trainingjobs", body, **CALL)
                except client.exceptions.ApiException as exc:
                    if exc.status != 409:  # 409: the try before went through after all
                        self._stop.wait(0.5)
                        continue
                except Exception:  # the API server is down, restarting or stopped
                    self._stop.wait(0.5)
                    continue
                self.names.append(name)
                break
            if self._stop.wait(self.every):
                return


def random_points(seed: int, count: int, low: float, high: float) -> list[float]:
    rnd = random.Random(seed)
    return [rnd.uniform(low, high) for _ in range(count)]
