"""The controller's pass at the seeds' scale, without a cluster: 1,250 nodes (10,000 cards in 4 groups, racks
and spines), 1,000 running jobs and about 9,500 pods, all settled (the state the operator keeps re-deciding).

Measured on the real Controller.run_pass (observations -> core -> work handed over), with an API that only
counts calls (a settled world needs none, once each waiting job's pods were dry-run on the first pass):
- cold_ms: the first pass (nothing memoised: every job decided);
- dry_runs: the calls the first pass handed over (one dry run per waiting job and model it may use);
- api_calls: the calls of all later passes (0: nothing changed that needs the API);
- idle_ms: a pass with nothing changed;
- changed_ms_median / changed_ms_p95: passes where one pod changed (one job decided again), which is what
  a busy cluster's passes look like between bursts.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cardpool.api.cardpool import CardPoolSpec
from cardpool.api.trainingjob import TrainingJobSpec, TrainingJobStatus
from cardpool.controller.loop import Controller, Observations
from cardpool.core.attempts import pod_name
from cardpool.core.observed import ObservedJob, ObservedNode, ObservedPod
from cardpool.core.pool import reconcile_pool

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
GROUPS = (("h800", "H800", "nvidia.com/gpu", 500), ("a100", "A100", "nvidia.com/gpu", 250),
          ("ascend910b", "Ascend910B", "huawei.com/Ascend910", 300), ("mlu590", "MLU590", "cambricon.com/mlu", 200))


class CountingApi:
    """Stands in for Kube: every call is counted, none is made."""

    def __init__(self) -> None:
        self.calls = 0

    @property
    def core(self) -> CountingApi:  # kube.core.create_namespaced_pod and the like resolve to a counted call
        return self

    custom = core

    def __getattr__(self, name: str) -> Any:
        def call(*_: Any, **__: Any) -> Any:
            self.calls += 1
            return {"metadata": {"resourceVersion": "1"}}
        return call


def pool_spec() -> CardPoolSpec:
    return CardPoolSpec.model_validate({"nodeGroups": [
        {"name": name, "nodeSelector": {"cardpool.io/bench-group": name}, "topologyKeys": ["rack", "spine"],
         "accelerator": {"vendor": "nvidia" if resource.startswith("nvidia") else "huawei" if "Ascend" in model
                         else "cambricon", "model": model, "resource": resource, "cardsPerNode": 8}}
        for name, model, resource, _ in GROUPS]})


def nodes() -> list[ObservedNode]:
    out = []
    for name, _, resource, count in GROUPS:
        for i in range(count):
            out.append(ObservedNode(f"{name}-{i:04d}", {"cardpool.io/bench-group": name, "rack": f"{name}-r{i // 8}",
                                                         "spine": f"{name}-s{i // 32}"},
                                    {resource: 8}, {resource: 8}, {"Ready": "True"}))
    return out


def jobs(count: int, seed: int) -> list[ObservedJob]:
    rnd = random.Random(seed)
    out = []
    models = [m for _, m, _, _ in GROUPS]
    for i in range(count):
        size = rnd.randint(2, 17)
        spec = TrainingJobSpec.model_validate({
            "pool": "bench", "framework": "PyTorch",
            "workers": {"cardsPerWorker": 1, "size": {"min": size, "max": size},
                        "template": {"spec": {"containers": [{"name": "trainer", "image": "example.com/t:1"}]}}},
            "placement": {"accelerators": rnd.sample(models, 2)},
            "checkpoint": {"uri": f"s3://ck/{i}"}, "failurePolicy": {"progressTimeoutSeconds": 3600}})
        out.append(ObservedJob("bench", f"job-{i:04d}", f"uid-{i}", 1, NOW - timedelta(hours=1, seconds=-i), spec,
                               TrainingJobStatus(), resource_version=str(10 + i)))
    return out


def settle(spec: CardPoolSpec, fleet: list[ObservedNode], world: list[ObservedJob]) -> tuple[list[ObservedJob], Any]:
    """Play the API server and kubelet until no plan acts: every admitted job Running on its pods."""
    status = None
    for round_ in range(6):
        plan = reconcile_pool(spec, 1, status, fleet, world, NOW + timedelta(seconds=round_))
        status = plan.status
        if not any(p.acts for p in plan.jobs):
            break
        world = [_applied(job, p) for job, p in zip(world, plan.jobs, strict=True)]
    return world, status


def _applied(job: ObservedJob, plan) -> ObservedJob:
    pods = tuple(ObservedPod(pod_name(job.name, plan.status.attempt, s.rank), job.namespace, job.name,
                             plan.status.attempt, s.rank, s.node, "Running", ready=True, cards=1, pool="bench")
                 for s in plan.create)
    return replace(job, status=plan.status, pods=job.pods + pods,
                   resource_version=str(int(job.resource_version) + 1000))


def run(repeats: int = 30, job_count: int = 1000, seed: int = 1) -> dict:
    spec, fleet = pool_spec(), nodes()
    world, pool_status = settle(spec, fleet, jobs(job_count, seed))
    running = [j for j in world if j.pods]
    pods = {(j.namespace, j.name): j.pods for j in world if j.pods}
    pool_body = {"metadata": {"name": "bench", "resourceVersion": "1", "generation": 1},
                 "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                 "status": pool_status.model_dump(mode="json", by_alias=True, exclude_none=True)}
    bare = [replace(j, pods=()) for j in world]
    api = CountingApi()
    controller = Controller(api, workers=1, clock=time.monotonic)  # type: ignore[arg-type]
    now = NOW + timedelta(seconds=10)

    def observed() -> Observations:
        return Observations(nodes=fleet, pods=dict(pods), jobs={"bench": bare}, pools={"bench": pool_body})

    def timed() -> float:
        obs = observed()
        started = time.perf_counter()
        controller.observing()
        controller.run_pass(obs, now)
        return (time.perf_counter() - started) * 1000

    try:
        cold = timed()
        deadline = time.monotonic() + 60
        while controller.applier.pending() and time.monotonic() < deadline:  # the dry runs it handed over
            time.sleep(0.01)
        dry_runs, api.calls = api.calls, 0
        idle = statistics.median(timed() for _ in range(max(repeats // 3, 3)))
        changed = []
        rnd = random.Random(seed)
        for _ in range(repeats):
            victim = rnd.choice(running)
            key = (victim.namespace, victim.name)
            rank0 = pods[key][0]
            pods[key] = (replace(rank0, ready=not rank0.ready), *pods[key][1:])  # decided again, nothing to do
            changed.append(timed())
    finally:
        controller.stop()
    changed.sort()
    result = {"cold_ms": round(cold, 1), "idle_ms": round(idle, 1),
              "changed_ms_median": round(statistics.median(changed), 1),
              "changed_ms_p95": round(changed[min(len(changed) - 1, int(0.95 * len(changed)))], 1),
              "dry_runs": dry_runs, "api_calls": api.calls,
              "setup": {"nodes": len(fleet), "cards": 8 * len(fleet), "jobs": job_count,
                        "running_jobs": len(running), "pods": sum(len(p) for p in pods.values()),
                        "repeats": repeats}}
    print(f"pass at {len(fleet)} nodes, {len(running)} running jobs, {result['setup']['pods']} pods: cold "
          f"{result['cold_ms']} ms, idle {result['idle_ms']} ms, one pod changed {result['changed_ms_median']} ms "
          f"(p95 {result['changed_ms_p95']} ms)", file=sys.stderr)
    return result
