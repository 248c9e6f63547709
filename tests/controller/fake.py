"""A recording fake of the API calls cardpool's acting layer makes, with interceptors that inject faults
(in the spirit of Kueue's fake client with interceptor funcs), and a `World` that plays the watches (with
lag on demand), the scheduler and the kubelet, so a test can drive the real Controller through passes.

It is not a model of the API server's behaviour beyond what these calls promise (resourceVersion
preconditions on status writes, AlreadyExists, NotFound): claims about Kubernetes itself are tested in e2e/.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException
from tenacity import wait_none

from cardpool.api.keys import LABEL_MANAGED_BY, MANAGED_BY
from cardpool.controller.loop import Controller, Observations
from cardpool.core.observed import ObservedNode
from cardpool.kube import observe
from cardpool.kube.budget import RequestBudget
from cardpool.kube.client import Kube

from ..examples import EXAMPLES

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POOL_BODY = yaml.safe_load((EXAMPLES / "pool-mixed-vendor.yaml").read_text())
JOB_BODY = yaml.safe_load((EXAMPLES / "job-pytorch-homogeneous.yaml").read_text())


def api_error(status: int, reason: str = "", retry_after: float | None = None) -> ApiException:
    exc = ApiException(status=status, reason=reason or {409: "Conflict", 404: "NotFound", 429: "TooManyRequests",
                                                        422: "Invalid"}.get(status, "Error"))
    exc.headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    exc.body = f'{{"reason": "{exc.reason}"}}'
    return exc


class Down(ConnectionError):
    """The operator process is gone (a crash): nothing it sends arrives."""


Interceptor = Callable[[str, tuple, dict], None]
"""Called before every call with (method name, args, kwargs); raises to inject a fault."""


class FakeServer:
    """The objects, with resourceVersions from one counter, and a log of every write that arrived."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.rv = 1000
        self.jobs: dict[tuple[str, str], dict] = {}
        self.pools: dict[str, dict] = {}
        self.queues: dict[str, dict] = {}
        self.pods: dict[tuple[str, str], dict] = {}
        self.services: dict[tuple[str, str], dict] = {}
        self.config_maps: dict[tuple[str, str], dict] = {}
        self.events: list[dict] = []
        self.writes: list[tuple[str, str]] = []
        self.interceptors: list[Interceptor] = []
        self.down = False

    def next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def intercept(self, name: str, args: tuple, kwargs: dict) -> None:
        if self.down:
            raise Down(f"{name}: the process that sent it is gone")
        for interceptor in list(self.interceptors):
            interceptor(name, args, kwargs)

    def add_job(self, name: str, namespace: str = "ns", **spec: Any) -> dict:
        body = copy.deepcopy(JOB_BODY)
        body["metadata"] = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1,
                            "creationTimestamp": (START + timedelta(seconds=len(self.jobs))).isoformat(),
                            "resourceVersion": self.next_rv()}
        body["spec"].update(spec)
        self.jobs[(namespace, name)] = body
        return body

    def add_pool(self) -> dict:
        body = copy.deepcopy(POOL_BODY)
        body["metadata"] = {"name": body["metadata"]["name"], "generation": 1, "resourceVersion": self.next_rv()}
        self.pools[body["metadata"]["name"]] = body
        return body

    def add_queue(self, name: str, **spec: Any) -> dict:
        body = {"apiVersion": "cardpool.io/v1alpha1", "kind": "TenantQueue",
                "metadata": {"name": name, "generation": 1, "resourceVersion": self.next_rv()}, "spec": spec}
        self.queues[name] = body
        return body

    def job_status(self, name: str, namespace: str = "ns") -> dict:
        return self.jobs[(namespace, name)].get("status") or {}

    def pods_of(self, job: str) -> list[dict]:
        return [p for p in self.pods.values() if p["metadata"]["labels"].get("cardpool.io/job") == job]


class _Core:
    def __init__(self, server: FakeServer):
        self.s = server

    def create_namespaced_pod(self, namespace: str, body: dict, **kw: Any) -> dict:
        if kw.get("dry_run") == "All":  # validated and admitted, never stored; faults can aim at it alone
            self.s.intercept("dry_run_pod", (namespace, body), kw)
            with self.s.lock:
                self.s.writes.append(("dry run pod", body["metadata"]["name"]))
                return copy.deepcopy(body)
        self.s.intercept("create_namespaced_pod", (namespace, body), kw)
        with self.s.lock:
            key = (namespace, body["metadata"]["name"])
            if key in self.s.pods:
                raise api_error(409, "AlreadyExists")
            pod = copy.deepcopy(body)
            pod["metadata"]["resourceVersion"] = self.s.next_rv()
            pod["status"] = {"phase": "Pending"}
            self.s.pods[key] = pod
            self.s.writes.append(("create pod", key[1]))
            return pod

    def delete_namespaced_pod(self, name: str, namespace: str, **kw: Any) -> None:
        self.s.intercept("delete_namespaced_pod", (name, namespace), kw)
        with self.s.lock:
            if self.s.pods.pop((namespace, name), None) is None:
                raise api_error(404)
            self.s.writes.append(("delete pod", name))

    def create_namespaced_service(self, namespace: str, body: dict, **kw: Any) -> None:
        self._put("create_namespaced_service", self.s.services, namespace, body, kw, create=True)

    def patch_namespaced_service(self, name: str, namespace: str, body: dict, **kw: Any) -> None:
        self.s.intercept("patch_namespaced_service", (name, namespace, body), kw)
        with self.s.lock:
            self.s.services[(namespace, name)].update(body)

    def create_namespaced_config_map(self, namespace: str, body: dict, **kw: Any) -> None:
        self._put("create_namespaced_config_map", self.s.config_maps, namespace, body, kw, create=True)

    def replace_namespaced_config_map(self, name: str, namespace: str, body: dict, **kw: Any) -> None:
        self._put("replace_namespaced_config_map", self.s.config_maps, namespace, body, kw, create=False)

    def create_namespaced_event(self, namespace: str, body: dict, **kw: Any) -> None:
        self.s.intercept("create_namespaced_event", (namespace, body), kw)
        with self.s.lock:
            self.s.events.append(body)

    def _put(self, name: str, store: dict, namespace: str, body: dict, kw: dict, create: bool) -> None:
        self.s.intercept(name, (namespace, body), kw)
        with self.s.lock:
            key = (namespace, body["metadata"]["name"])
            if create and key in store:
                raise api_error(409, "AlreadyExists")
            store[key] = copy.deepcopy(body)


class _Custom:
    def __init__(self, server: FakeServer):
        self.s = server

    def patch_namespaced_custom_object_status(self, group: str, version: str, namespace: str, plural: str,
                                              name: str, body: dict, **kw: Any) -> dict:
        self.s.intercept("patch_namespaced_custom_object_status", (group, version, namespace, plural, name, body), kw)
        with self.s.lock:
            if plural != "trainingjobs":
                return {"metadata": {"resourceVersion": self.s.next_rv()}}
            obj = self.s.jobs.get((namespace, name))
            if obj is None:
                raise api_error(404)
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != obj["metadata"]["resourceVersion"]:
                raise api_error(409)
            obj["status"] = copy.deepcopy(body["status"])
            obj["metadata"]["resourceVersion"] = self.s.next_rv()
            self.s.writes.append(("job status", name))
            return copy.deepcopy(obj)

    def patch_cluster_custom_object_status(self, group: str, version: str, plural: str, name: str, body: dict,
                                           **kw: Any) -> dict:
        self.s.intercept("patch_cluster_custom_object_status", (group, version, plural, name, body), kw)
        with self.s.lock:
            obj = (self.s.queues if plural == "tenantqueues" else self.s.pools)[name]
            obj["status"] = copy.deepcopy(body["status"])
            obj["metadata"]["resourceVersion"] = self.s.next_rv()
            self.s.writes.append(("queue status" if plural == "tenantqueues" else "pool status", name))
            return copy.deepcopy(obj)

    def delete_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str,
                                        **kw: Any) -> None:
        self.s.intercept("delete_namespaced_custom_object", (group, version, namespace, plural, name), kw)
        with self.s.lock:
            if self.s.jobs.pop((namespace, name), None) is None:
                raise api_error(404)


class FakeKube(Kube):
    """The real Kube (its retries, budget, idempotent create/delete) over the fake server."""

    def __init__(self, server: FakeServer):
        self.slept: list[float] = []
        self._now = 0.0

        def sleep(seconds: float) -> None:  # the budget's time passes without the test waiting
            self.slept.append(seconds)
            self._now += seconds

        super().__init__(api=object(), budget=RequestBudget(0, 1, clock=lambda: self._now, sleep=sleep))  # type: ignore[arg-type]
        self.core = _Core(server)  # type: ignore[assignment]
        self.custom = _Custom(server)  # type: ignore[assignment]


def fast_retries(monkeypatch: Any) -> None:
    """The client's retries without their waits (their back-off is the budget's, measured in FakeKube.slept)."""
    monkeypatch.setattr(Kube.call.retry, "wait", wait_none())


NODES = [ObservedNode(f"h800-{i}", {"nvidia.com/gpu.product": "NVIDIA-H800"}, {"nvidia.com/gpu": 8},
                      {"nvidia.com/gpu": 8}, {"Ready": "True"}) for i in range(8)]


class World:
    """Plays the watches (a copy of the server's objects, optionally lagging), the scheduler and the kubelet
    (pods with a node run), and the clocks, around a real Controller."""

    def __init__(self, server: FakeServer, nodes: list[ObservedNode] = NODES):
        self.server, self.nodes = server, list(nodes)
        self.now = START
        self.mono = 0.0
        self.lagging: Observations | None = None
        self._parsed: dict[tuple[str, str, str], Any] = {}
        self.leading = True

    def controller(self, **kw: Any) -> Controller:
        return Controller(FakeKube(self.server), leading=lambda: self.leading, workers=4, min_interval=0,
                          clock=lambda: self.mono, **kw)

    def observe(self) -> Observations:
        """What the watches hold now (each job parsed once per resourceVersion, as the index does)."""
        s = self.server
        with s.lock:
            jobs: dict[str, list] = {}
            for (ns, name), body in s.jobs.items():
                key = (ns, name, body["metadata"]["resourceVersion"])
                if key not in self._parsed:
                    self._parsed[key] = observe.job(copy.deepcopy(body))
                jobs.setdefault(body["spec"]["pool"], []).append(self._parsed[key])
            pods: dict[tuple[str, str], tuple] = {}
            for body in s.pods.values():
                if body["metadata"]["labels"].get(LABEL_MANAGED_BY) == MANAGED_BY:
                    pod = observe.pod(body)
                    if pod is not None:
                        pods[(pod.namespace, pod.job)] = (*pods.get((pod.namespace, pod.job), ()), pod)
            pools = {name: copy.deepcopy(body) for name, body in s.pools.items()}
            queues = {name: copy.deepcopy(body) for name, body in s.queues.items()}
        return Observations(nodes=list(self.nodes), pods=pods, jobs=jobs, pools=pools, queues=queues)

    def kubelet(self) -> None:
        """Every pod bound to a node runs."""
        with self.server.lock:
            for pod in self.server.pods.values():
                if pod["status"]["phase"] == "Pending":
                    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
                    pod["metadata"]["resourceVersion"] = self.server.next_rv()

    def step(self, controller: Controller, seconds: float = 1.0, lag: bool = False) -> None:
        """One pass on what the watches show (the previous pass's view when `lag`), its effects carried out,
        then the kubelet, then time moves on."""
        controller.observing()
        observed = self.lagging if lag and self.lagging is not None else self.observe()
        controller.run_pass(observed, self.now)
        settle(controller)
        if not lag:
            self.lagging = observed
        self.kubelet()
        self.now += timedelta(seconds=seconds)
        self.mono += seconds

    def converge(self, controller: Controller, steps: int = 30) -> None:
        for _ in range(steps):
            self.step(controller)


def settle(controller: Controller, timeout: float = 10.0) -> None:
    """Wait (with a deadline) until the applier has carried out everything handed to it."""
    deadline = time.monotonic() + timeout
    while controller.applier.pending():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the applier still has {controller.applier.pending()} tasks after {timeout} s")
        time.sleep(0.002)
