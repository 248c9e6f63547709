"""kopf wiring only: indexes keep what is observed; one loop is the single writer for every pool and node.

kopf's timers and daemons put finalizers on the objects they serve, which would block deleting a
TrainingJob or CardPool while the operator is down. So the pool loop is a task of the operator, not of an
object: it wakes on every change of a pool, job, checkpoint or cardpool pod, on a node change the core can
see (not its heartbeats), and at least every CARDPOOL_POOL_INTERVAL seconds; copies the indexes at one
instant, and runs in a worker thread first the node pass (drains: cardpool.core.drain ->
cardpool.kube.nodes), then each pool's pass: observe -> cardpool.core.pool.reconcile_pool -> effects per
job (status first, then children, then events) -> the pool's status. Only the replica holding the Lease
acts.

Run with `kopf run --standalone --all-namespaces -m cardpool.handlers` (what `make operator` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from cardpool import __version__
from cardpool.api.cardpool import CardPoolSpec, CardPoolStatus
from cardpool.api.keys import GROUP, LABEL_MANAGED_BY, MANAGED_BY, VERSION
from cardpool.core.drain import plan_drains
from cardpool.core.lifecycle import plan_missing_pool, pod_name
from cardpool.core.observed import ObservedBudget, ObservedCheckpoint, ObservedJob, ObservedNode, ObservedPod
from cardpool.core.pool import reconcile_pool
from cardpool.kube import effects, observe
from cardpool.kube import nodes as node_effects
from cardpool.kube.client import Kube
from cardpool.kube.leader import LeaderElector

from . import metrics

POOL_INTERVAL = float(os.environ.get("CARDPOOL_POOL_INTERVAL", "1.0"))
log = logging.getLogger("cardpool.operator")
state: dict[str, Any] = {}


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, logger: logging.Logger, **_: Any) -> None:
    settings.posting.enabled = False  # cardpool posts its own events, after its status writes
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # not a line per watch event
    kube = Kube()
    namespace = os.environ.get("CARDPOOL_NAMESPACE", "default")
    elector = LeaderElector(kube, namespace, identity=os.environ.get("CARDPOOL_IDENTITY"))
    elector.start()
    state.update(kube=kube, elector=elector, wake=asyncio.Event(), **{"event-loop": asyncio.get_running_loop()},
                 creates=ThreadPoolExecutor(effects.PARALLEL_CREATES, thread_name_prefix="cardpool-create"),
                 passes=ThreadPoolExecutor(1, thread_name_prefix="cardpool-pass"))
    metrics.serve(int(os.environ.get("CARDPOOL_METRICS_PORT", "9464")))
    state["loop"] = asyncio.create_task(pool_loop())
    logger.info("cardpool %s started as %s; leader election on lease %s/cardpool-operator", __version__,
                elector.identity, namespace)


@kopf.on.cleanup()
async def shutdown(**_: Any) -> None:
    if task := state.get("loop"):
        task.cancel()
    loop = asyncio.get_running_loop()
    # a pass in flight finishes before the lease is handed over, so two replicas never write at once
    if passes := state.get("passes"):
        await loop.run_in_executor(None, lambda: passes.shutdown(wait=True))
    if creates := state.get("creates"):
        creates.shutdown(wait=False)
    if elector := state.get("elector"):
        await loop.run_in_executor(None, elector.stop)


def _wake() -> None:
    """Start a pass soon. Index handlers run in kopf's worker threads, hence call_soon_threadsafe."""
    if (loop := state.get("event-loop")) is not None:
        loop.call_soon_threadsafe(state["wake"].set)


@kopf.index("nodes")
def nodes_index(body: kopf.Body, name: str, **_: Any) -> dict:
    node = observe.node(body)
    seen: dict = state.setdefault("seen-nodes", {})
    if seen.get(name) != node:  # what the core sees changed: not on every status heartbeat
        seen[name] = node
        _wake()
    return {name: node}


@kopf.index("pods", labels={LABEL_MANAGED_BY: MANAGED_BY})
def pods_index(body: kopf.Body, **_: Any) -> dict:
    pod = observe.pod(body)
    if pod:
        _wake()  # cardpool's own pods: their changes (phase, deletion) are what passes act on
    return {(pod.namespace, pod.job): pod} if pod else {}


@kopf.index(GROUP, VERSION, "trainingjobs")
def jobs_index(body: kopf.Body, spec: kopf.Spec, **_: Any) -> dict:
    return {spec.get("pool"): dict(body)}


@kopf.index(GROUP, VERSION, "cardpools")
def pools_index(body: kopf.Body, name: str, **_: Any) -> dict:
    return {name: dict(body)}


@kopf.index("policy", "v1", "poddisruptionbudgets")
def budgets_index(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict:
    return {(namespace, name): observe.budget(body)}


@kopf.index(GROUP, VERSION, "checkpoints")
def checkpoints_index(body: kopf.Body, namespace: str, spec: kopf.Spec, **_: Any) -> dict:
    return {(namespace, spec.get("job")): observe.checkpoint(body)}


@kopf.on.event(GROUP, VERSION, "cardpools")
@kopf.on.event(GROUP, VERSION, "trainingjobs")
@kopf.on.event(GROUP, VERSION, "checkpoints")
async def changed(nodes_index: kopf.Index, pods_index: kopf.Index, jobs_index: kopf.Index,
                  pools_index: kopf.Index, checkpoints_index: kopf.Index, budgets_index: kopf.Index,
                  **_: Any) -> None:
    # kopf runs event handlers only once its indexes are populated: from here on they are safe to read
    state["indexes"] = (nodes_index, pods_index, jobs_index, pools_index, checkpoints_index, budgets_index)
    state["wake"].set()


@dataclass(frozen=True)
class Observations:
    nodes: list[ObservedNode]
    pods: dict[tuple[str, str], tuple[ObservedPod, ...]]
    jobs: dict[str, list[dict]]
    pools: dict[str, dict]
    checkpoints: dict[tuple[str, str], tuple[ObservedCheckpoint, ...]]
    budgets: tuple[ObservedBudget, ...] = ()


def _copy(indexes: tuple[kopf.Index, ...]) -> Observations:
    """One consistent copy of the indexes, taken in the event loop between two index updates."""
    nodes, pods, jobs, pools, checkpoints, budgets = indexes
    return Observations(nodes=[n for store in nodes.values() for n in store],
                        pods={key: tuple(store) for key, store in pods.items()},
                        jobs={key: list(store) for key, store in jobs.items()},
                        pools={key: next(iter(store)) for key, store in pools.items()},
                        checkpoints={key: tuple(store) for key, store in checkpoints.items()},
                        budgets=tuple(b for store in budgets.values() for b in store))


async def pool_loop() -> None:
    loop = asyncio.get_running_loop()
    wake: asyncio.Event = state["wake"]
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=POOL_INTERVAL)
        wake.clear()
        try:
            if not state["elector"].leading or "indexes" not in state:
                continue
            observed = _copy(state["indexes"])
            await loop.run_in_executor(state["passes"], run_passes, observed)
        except Exception:  # the loop must live on: the next pass starts from what is observed then
            log.exception("pool pass failed")


def run_passes(observed: Observations) -> None:
    now = datetime.now(UTC)
    try:  # nodes first: one writer for every node's drain, whichever pools select it
        pools = {name: CardPoolSpec.model_validate(body["spec"]) for name, body in observed.pools.items()}
        node_effects.apply_drain_plan(state["kube"], plan_drains(pools, observed.nodes, now), observed.nodes, now)
    except Exception:
        log.exception("the node pass failed")
    for name, body in sorted(observed.pools.items()):
        try:
            pool_pass(name, body, observed, now)
        except Exception:  # one pool's failure must not stall the others
            log.exception("pass of pool %s failed", name)
            metrics.count_error(name)
    for pool_name, bodies in observed.jobs.items():
        if pool_name not in observed.pools:
            for body in bodies:
                try:
                    report_missing_pool(body, now)
                except Exception:
                    log.exception("reporting the missing pool of %s failed", body["metadata"].get("name"))


def pool_pass(name: str, body: dict, observed: Observations, now: datetime) -> None:
    kube: Kube = state["kube"]
    started = time.monotonic()
    pool = CardPoolSpec.model_validate(body["spec"])
    previous = CardPoolStatus.model_validate(body["status"]) if body.get("status") else None
    jobs: list[ObservedJob] = []
    written: dict[tuple[str, str], int] = state.setdefault("written", {})
    pool_written: dict[str, int] = state.setdefault("written-pools", {})
    if name in pool_written and _version(body["metadata"]) < pool_written[name]:
        return  # the pool's status (defragmentation's memory) is not yet back from the watch: wait for it
    pool_written.pop(name, None)
    bodies = observed.jobs.get(name, [])
    for job_body in bodies:
        meta = job_body["metadata"]
        key = (meta["namespace"], meta["name"])
        if key in written and _version(meta) < written[key]:
            # the index has not caught up with our own last status write: deciding on the older status could
            # place the job twice, so this pool waits for the next pass
            return
    for job_body in bodies:
        meta = job_body["metadata"]
        written.pop((meta["namespace"], meta["name"]), None)
        try:
            key = (meta["namespace"], meta["name"])
            jobs.append(observe.job(job_body, observed.pods.get(key, ()), observed.checkpoints.get(key, ())))
        except ValueError as exc:  # admission validated it; a spec that still fails parsing is reported
            log.error("cannot read TrainingJob %s/%s: %s", meta["namespace"], meta["name"], exc)
    mine = {(j.namespace, j.name) for j in jobs}
    others = tuple(p for key, pods in observed.pods.items() if key not in mine for p in pods)
    plan = reconcile_pool(pool, body["metadata"].get("generation") or 0, previous, observed.nodes, jobs, now,
                          others, observed.budgets)
    elector: LeaderElector = state["elector"]
    for job, job_plan in zip(jobs, plan.jobs, strict=True):
        if not elector.leading:  # leadership lapsed during the pass: the next leader decides afresh
            return
        try:
            version = effects.write_status(kube, job, job_plan)
        except ApiException as exc:
            if exc.status == 409:  # the job changed since it was observed; decide again next pass
                continue
            log.exception("writing the status of %s failed", job.key)
            continue
        if version is not None:
            written[(job.namespace, job.name)] = _version({"resourceVersion": version})
            metrics.record_job(name, job, job_plan, now)
        try:
            effects.judge_checkpoints(kube, job, job_plan, now)
            effects.apply_children(kube, job, job_plan, name, pool, now, state["creates"])
        except Exception:  # one job's failure must not stall the pool; the next pass retries
            log.exception("applying the plan of %s failed", job.key)
            metrics.count_error(name)
        # pools later in this round see these pods' cards as used, before the watch shows them
        cards = job.spec.workers.cards_per_worker
        observed.pods[(job.namespace, job.name)] = observed.pods.get((job.namespace, job.name), ()) + tuple(
            ObservedPod(pod_name(job.name, job_plan.status.attempt, slot.rank), job.namespace, job.name,
                        job_plan.status.attempt, slot.rank, slot.node, "Pending", cards=cards, pool=name)
            for slot in job_plan.create)
    if elector.leading:
        if (version := effects.apply_pool_status(kube, name, plan.status, previous)) is not None:
            pool_written[name] = _version({"resourceVersion": version})
        for type_, reason, message in plan.events:  # after the status that records them
            node_effects.post_node_event(kube, "", name, type_, reason, message, now)
        metrics.record_pass(name, plan, time.monotonic() - started)


def _version(meta: dict) -> int:
    # resourceVersions are opaque to clients in general; kube-apiserver's come from etcd revisions and grow,
    # which is what lets the operator wait for its own writes to show in the watch (as controller expectations)
    try:
        return int(meta.get("resourceVersion", "0"))
    except ValueError:
        return 1 << 62


def report_missing_pool(body: dict, now: datetime) -> None:
    job = observe.job(body)
    plan = plan_missing_pool(job, now)
    if plan.status_changed:
        state["kube"].patch_job_status(job.namespace, job.name, effects.status_patch(plan.status),
                                       job.resource_version)
