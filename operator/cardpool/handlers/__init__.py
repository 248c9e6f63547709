"""kopf wiring only: indexes keep what is observed; the controller (cardpool.controller) decides and acts.

Pods are not watched through kopf: its `labels=` filters are applied on the client, so it would list and
watch every pod of the cluster. Two informers (cardpool.kube.informer) have the API server filter instead:
cardpool's own pods, and the running pods of other workloads, of which only the node and the card requests
are kept.

kopf's timers and daemons put finalizers on the objects they serve, which would block deleting a
TrainingJob or CardPool while the operator is down. So the pass loop is a task of the operator, not of an
object: event handlers (run after kopf updated its indexes) tell the controller that something changed, and
the loop runs a pass (in a thread of its own, off the event loop that answers the liveness probe) on a copy
of the indexes taken at one instant.
Only the replica holding the Lease acts.

Run with `kopf run --standalone --all-namespaces -m cardpool.handlers` (what `make operator` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import kopf

from cardpool import __version__
from cardpool.api.keys import GROUP, LABEL_MANAGED_BY, MANAGED_BY, VERSION
from cardpool.controller import metrics
from cardpool.controller.loop import Controller, Observations
from cardpool.core.observed import ObservedNode
from cardpool.kube import observe
from cardpool.kube.client import Kube
from cardpool.kube.informer import Informer
from cardpool.kube.leader import LeaderElector

log = logging.getLogger("cardpool.operator")


def _setting(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: must be a number of seconds or workers, > 0") from None
    if value <= 0:
        raise SystemExit(f"{name}={raw!r}: must be > 0")
    return value


@dataclass
class Runtime:
    """What the handlers share, kept in kopf's memo (one per operator)."""

    kube: Kube
    elector: LeaderElector
    controller: Controller
    wake: asyncio.Event
    passes: ThreadPoolExecutor
    pods: Informer
    """cardpool's own pods."""
    foreign: Informer
    """Running pods of other workloads that request cards: node and card requests only."""
    indexes: tuple[kopf.Index, ...] | None = None
    seen_nodes: dict[str, ObservedNode] = field(default_factory=dict)
    changed_nodes: set[str] = field(default_factory=set)
    """Nodes whose indexed value changed; their event handler wakes the pass (see `indexed`)."""
    tasks: list[asyncio.Task] = field(default_factory=list)
    _pods_copy: tuple[int, dict] = (-1, {})
    _foreign_copy: tuple[int, dict] = (-1, {})

    def own_pods(self) -> dict[tuple[str, str], tuple]:
        """cardpool's pods by (namespace, job), regrouped only when the informer changed."""
        version = self.pods.version
        if version != self._pods_copy[0]:
            grouped: dict[tuple[str, str], list] = {}
            for pod in self.pods.items().values():
                grouped.setdefault((pod.namespace, pod.job), []).append(pod)
            self._pods_copy = (version, {k: tuple(v) for k, v in grouped.items()})
        return self._pods_copy[1]

    def foreign_usage(self) -> dict[str, dict[str, int]]:
        version = self.foreign.version
        if version != self._foreign_copy[0]:
            self._foreign_copy = (version, observe.foreign_usage(self.foreign.items().values()))
        return self._foreign_copy[1]


_current: list[Runtime] = []
"""The operator's one Runtime. Not kopf's memo: kopf hands resource handlers a copy of it per object, made
when the object is first seen, which for objects listed while the operator starts can predate startup."""


def _runtime(memo: kopf.Memo | None = None) -> Runtime | None:
    return _current[0] if _current else None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    settings.posting.enabled = False  # cardpool posts its own events, after its status writes
    # a watch that stops delivering without closing (kopf #585, #957) is dropped and resumed after this long
    # without an event or bookmark (the API server sends a bookmark about once a minute)
    stall = _setting("CARDPOOL_WATCH_STALL_SECONDS", 70.0)
    settings.watching.inactivity_timeout = stall
    settings.watching.connect_timeout = 10.0
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # not a line per watch event
    identity = os.environ.get("CARDPOOL_IDENTITY") or f"{socket.gethostname()}-{os.getpid()}"
    kube = Kube(connections=int(_setting("CARDPOOL_WORKERS", 32)), user_agent=f"cardpool/{__version__} ({identity})")
    namespace = os.environ.get("CARDPOOL_NAMESPACE", "default")
    elector = LeaderElector(kube, namespace, identity=identity)
    kube.fence = lambda: elector.leading
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    controller = Controller(kube, leading=lambda: elector.leading, workers=int(_setting("CARDPOOL_WORKERS", 32)),
                            resync=_setting("CARDPOOL_RESYNC_SECONDS", 60.0),
                            min_interval=_setting("CARDPOOL_MIN_PASS_INTERVAL", 0.1),
                            wake=lambda: loop.call_soon_threadsafe(wake.set))
    others, bound_and_live = observe.FOREIGN_POD_SELECTORS
    runtime = Runtime(kube, elector, controller, wake, ThreadPoolExecutor(1, thread_name_prefix="cardpool-pass"),
                      pods=Informer("cardpool-pods", kube.core.list_pod_for_all_namespaces, observe.pod,
                                    controller.changed, label_selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}",
                                    read_timeout=stall),
                      foreign=Informer("foreign-pods", kube.core.list_pod_for_all_namespaces, observe.foreign_pod,
                                       controller.changed, label_selector=others, field_selector=bound_and_live,
                                       read_timeout=stall))
    _current[:] = [runtime]
    runtime.pods.start()
    runtime.foreign.start()
    elector.start()
    metrics.serve(int(os.environ.get("CARDPOOL_METRICS_PORT", "9464")))
    runtime.tasks = [asyncio.create_task(pass_loop(runtime)), asyncio.create_task(watch_lag())]
    logger.info("cardpool %s started as %s; leader election on lease %s/cardpool-operator", __version__,
                elector.identity, namespace)


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    runtime = _runtime(memo)
    if runtime is None:
        return
    _current.clear()
    for task in runtime.tasks:
        task.cancel()
    loop = asyncio.get_running_loop()
    # a pass in flight finishes before the lease is handed over, so two replicas never write at once
    await loop.run_in_executor(None, lambda: runtime.passes.shutdown(wait=True))
    await loop.run_in_executor(None, runtime.controller.stop)
    await loop.run_in_executor(None, runtime.elector.stop)
    await loop.run_in_executor(None, runtime.pods.stop)
    await loop.run_in_executor(None, runtime.foreign.stop)


@kopf.index("nodes")
def nodes_index(body: kopf.Body, name: str, memo: kopf.Memo, **_: Any) -> dict:
    node = observe.node(body)
    runtime = _runtime(memo)
    if runtime is not None and runtime.seen_nodes.get(name) != node:  # not on every status heartbeat
        runtime.seen_nodes[name] = node
        runtime.changed_nodes.add(name)
    return {name: node}


@kopf.index(GROUP, VERSION, "trainingjobs")
def jobs_index(body: kopf.Body, spec: kopf.Spec, namespace: str, name: str, **_: Any) -> dict:
    """Parsed once per version of the job, here, not on every pass."""
    try:
        return {spec.get("pool"): observe.job(body)}
    except ValueError as exc:  # admission validated it; a spec that still fails parsing is reported
        log.error("cannot read TrainingJob %s/%s: %s", namespace, name, exc)
        return {}


@kopf.index(GROUP, VERSION, "cardpools")
def pools_index(body: kopf.Body, name: str, **_: Any) -> dict:
    return {name: dict(body)}


@kopf.index(GROUP, VERSION, "tenantqueues")
def queues_index(body: kopf.Body, name: str, **_: Any) -> dict:
    return {name: dict(body)}


@kopf.index("policy", "v1", "poddisruptionbudgets")
def budgets_index(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict:
    return {(namespace, name): observe.budget(body)}


@kopf.index(GROUP, VERSION, "checkpoints")
def checkpoints_index(body: kopf.Body, namespace: str, spec: kopf.Spec, **_: Any) -> dict:
    return {(namespace, spec.get("job")): observe.checkpoint(body)}


# Changes wake the pass from event handlers, not from the index handlers: kopf stores an index handler's
# result only after the handler returned (a sync one in a thread), so a pass woken from inside it could copy
# the index without the change, clear the wake, and leave the change to the next resync. kopf runs event
# handlers after the event's indexing, deletions included (whose index entries it drops without a handler).
@kopf.on.event(GROUP, VERSION, "cardpools")
@kopf.on.event(GROUP, VERSION, "trainingjobs")
@kopf.on.event(GROUP, VERSION, "checkpoints")
@kopf.on.event(GROUP, VERSION, "tenantqueues")
@kopf.on.event("policy", "v1", "poddisruptionbudgets")
async def indexed(nodes_index: kopf.Index, jobs_index: kopf.Index, pools_index: kopf.Index,
                  checkpoints_index: kopf.Index, budgets_index: kopf.Index, queues_index: kopf.Index,
                  memo: kopf.Memo, **_: Any) -> None:
    # kopf runs event handlers only once its indexes are populated: from here on they are safe to read
    runtime = _runtime(memo)
    if runtime is None:
        return
    if runtime.indexes is None:
        runtime.indexes = (nodes_index, jobs_index, pools_index, checkpoints_index, budgets_index, queues_index)
    runtime.controller.changed()


@kopf.on.event("nodes")
async def node_indexed(name: str, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    runtime = _runtime(memo)
    if runtime is None:
        return
    if type == "DELETED":
        runtime.seen_nodes.pop(name, None)
        runtime.changed_nodes.discard(name)
        runtime.controller.changed()
    elif name in runtime.changed_nodes:
        runtime.changed_nodes.discard(name)
        runtime.controller.changed()


def _copy(runtime: Runtime) -> Observations:
    """One copy of the indexes, taken in the event loop between two index updates, and of the informers."""
    assert runtime.indexes is not None
    nodes, jobs, pools, checkpoints, budgets, queues = runtime.indexes
    return Observations(nodes=[n for store in nodes.values() for n in store],
                        pods=runtime.own_pods(),
                        jobs={key: list(store) for key, store in jobs.items()},
                        pools={key: next(iter(store)) for key, store in pools.items()},
                        checkpoints={key: tuple(store) for key, store in checkpoints.items()},
                        budgets=tuple(b for store in budgets.values() for b in store),
                        foreign=runtime.foreign_usage(),
                        queues={key: next(iter(store)) for key, store in queues.items()})


async def pass_loop(runtime: Runtime) -> None:
    loop = asyncio.get_running_loop()
    controller = runtime.controller
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.wake.wait(), timeout=controller.sleep_for())
        runtime.wake.clear()
        try:
            if not runtime.elector.leading:
                controller.lost_leadership()
                continue
            if runtime.indexes is None or not (runtime.pods.synced and runtime.foreign.synced):
                continue  # deciding on a partial view could place onto cards that are taken
            if not controller.due():
                continue
            controller.observing()
            observed = _copy(runtime)
            await loop.run_in_executor(runtime.passes, controller.run_pass, observed)
            metrics.APPLY_QUEUE.set(controller.applier.pending())
        except Exception:  # the loop must live on: the next pass starts from what is observed then
            log.exception("pass failed")


async def watch_lag(period: float = 0.5) -> None:
    """The liveness probe is answered on this event loop: how late it wakes is how late the probe is."""
    while True:
        started = time.monotonic()
        await asyncio.sleep(period)
        metrics.LOOP_LAG.set(max(time.monotonic() - started - period, 0.0))
