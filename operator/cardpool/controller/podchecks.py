"""Whether the API server takes a job's worker pods, asked before any pod of an attempt exists.

Before a job is placed, the pod its rank 0 would be is created in a server-side dry run, once for each
accelerator model the job may use (overrides make them differ): validation and every admission check
(PodSecurity, PriorityClass, quotas, policies) see exactly that pod, and nothing is stored. The answer holds
for the job's generation and its pool's generation, so an edit asks again. A real create that is refused later
(the world changed since: a PriorityClass deleted, a namespace relabelled) is recorded the same way, and the
job's starting attempt is rolled back. An invalid pod (422, 400) stays refused until the spec changes; a
refusal by admission (403) is asked again after a backoff that doubles from 10 s to 5 minutes; an error of the
API itself is asked again after 5 s. Meanwhile the job is Stalled with the API server's message.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass, replace

from cardpool.api.cardpool import CardPoolSpec
from cardpool.api.trainingjob import GroupPlacement
from cardpool.core.observed import ObservedJob, PodRefusal
from cardpool.core.plan import RankSlot
from cardpool.kube import builders, effects, refusals
from cardpool.kube.client import Kube

FIRST_RETRY_S, MAX_RETRY_S, ERROR_RETRY_S = 10.0, 300.0, 5.0
Version = tuple[str, int, int]
"""(job uid, job generation, pool generation): what the answer holds for."""


ASK, WAIT, ACCEPTED = "ask", "wait", "accepted"


@dataclass
class _Answer:
    version: Version
    refusal: PodRefusal | None
    known: bool = True
    """False after an error of the API itself: nothing was answered."""
    retry_at: float | None = None
    failures: int = 0


class PodChecks:
    def __init__(self) -> None:
        self._answers: dict[str, _Answer] = {}
        self._asking: set[str] = set()
        self._lock = threading.Lock()

    def state(self, key: str, version: Version, now: float) -> str | PodRefusal:
        """ASK (submit a check), WAIT (a check is in flight or due later: do not place the job yet), ACCEPTED,
        or the standing refusal."""
        with self._lock:
            if key in self._asking:
                return WAIT
            answer = self._answers.get(key)
            if answer is None or answer.version != version or (
                    answer.retry_at is not None and now >= answer.retry_at):
                return ASK
            if not answer.known:
                return WAIT
            return answer.refusal or ACCEPTED

    def refusal(self, key: str, version: Version) -> PodRefusal | None:
        """The standing refusal of the job as it is now."""
        with self._lock:
            answer = self._answers.get(key)
            return answer.refusal if answer is not None and answer.version == version else None

    def asking(self, key: str) -> None:
        with self._lock:
            self._asking.add(key)

    def record(self, key: str, version: Version, refusal: PodRefusal | None, now: float) -> None:
        """The API server's answer: None is "accepted"."""
        with self._lock:
            self._asking.discard(key)
            before = self._answers.get(key)
            if refusal is None or refusal.reason == refusals.INVALID_POD_TEMPLATE:
                self._answers[key] = _Answer(version, refusal)
                return
            failures = before.failures + 1 if before is not None and before.version == version else 1
            delay = min(FIRST_RETRY_S * 2 ** (failures - 1), MAX_RETRY_S)
            self._answers[key] = _Answer(version, refusal, retry_at=now + delay, failures=failures)

    def unanswered(self, key: str, version: Version, now: float) -> None:
        """Asking failed for a reason of the API itself: ask again soon, keeping a standing refusal."""
        with self._lock:
            self._asking.discard(key)
            before = self._answers.get(key)
            if before is not None and before.version == version and before.refusal is not None:
                before.retry_at = now + ERROR_RETRY_S
            else:
                self._answers[key] = _Answer(version, None, known=False, retry_at=now + ERROR_RETRY_S)

    def next_due(self, now: float) -> float | None:
        with self._lock:
            due = [a.retry_at for a in self._answers.values() if a.retry_at is not None and a.retry_at > now]
            return min(due) if due else None

    def keep_only(self, keys: Collection[str]) -> None:
        with self._lock:
            for key in self._answers.keys() - set(keys):
                del self._answers[key]

    def forget(self) -> None:
        with self._lock:
            self._answers.clear()
            self._asking.clear()


def probe_pods(job: ObservedJob, pool_name: str, pool: CardPoolSpec,
               nodes: dict[str, str]) -> list[tuple[str, dict]]:
    """(model, pod) for each accelerator model the job may use that the pool has: the pod rank 0 of the next
    attempt would be there. `nodes`: group -> a node of it (the dry run only names the node in an affinity)."""
    out = []
    for model in job.spec.placement.accelerators:
        group = next((g for g in pool.node_groups if g.accelerator.model == model), None)
        if group is None:
            continue
        node = nodes.get(group.name, f"{group.name}-node")
        status = job.status.model_copy(update={
            "attempt": job.status.attempt + 1, "workers": 1,
            "placement": [GroupPlacement(group=group.name, accelerator=model, workers=1, nodes=[node],
                                         relative_throughput=group.accelerator.relative_throughput)]})
        pod = builders.worker_pod(replace(job, status=status), pool_name, pool, RankSlot(0, node, group.name, model))
        out.append((model, pod))
    return out


def ask(kube: Kube, job: ObservedJob, pool_name: str, pool: CardPoolSpec, nodes: dict[str, str]) -> PodRefusal | None:
    """Dry-run the job's probe pods; the first refusal, or None when all are accepted. Raises on errors that are
    not the user's to fix (retried later) and when the namespace is being deleted."""
    for model, pod in probe_pods(job, pool_name, pool, nodes):
        try:
            effects.dry_run_pod(kube, pod)
        except Exception as exc:
            refusal = refusals.pod_refusal(exc, f"the worker pod for {model} (built from spec.workers.template)")
            if refusal is None:
                raise
            return refusal
    return None
