"""A private local cluster for the cluster benchmarks: its own folder and ports, a KWOK fleet, the CRDs,
this checkout's operator (holding its lease) and one CardPool. Part of the e2e kit (PYTHONPATH=e2e, as
`make bench` sets it); the installed package never imports it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, config

from cardpool.api.keys import GROUP, VERSION
from localkube import fleet as fleets
from localkube.cluster import NODE_MONITOR_GRACE, Cluster
from localkube.config import FLEETS, REPO, Ports
from localkube.processes import operator_command
from localkube.waiting import NotYet, wait_for

# The operator's own ports, above localkube's six (base .. base+5).
HEALTH_PORT_OFFSET = 45
METRICS_PORT_OFFSET = 46


@dataclass
class _Cluster(Cluster):
    """localkube's cluster, with kube-controller-manager's node monitor grace period as given."""

    node_monitor_grace: str = NODE_MONITOR_GRACE

    def _commands(self, bins: Path) -> list[tuple[str, list[str]]]:
        flag = "--node-monitor-grace-period="
        return [(name, [f"{flag}{self.node_monitor_grace}" if arg.startswith(flag) else arg for arg in args])
                for name, args in super()._commands(bins)]


@dataclass
class BenchCluster:
    cluster: Cluster
    api: client.ApiClient
    node_count: int
    metrics_url: str | None = None
    setup_s: dict[str, float] = field(default_factory=dict)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def operator_pid(self) -> int:
        return self.cluster.processes.get("operator").pid

    def operator_rss_mib(self) -> float:
        return self.cluster.processes.get("operator").rss_bytes() / 2**20

    def operator_metrics(self) -> str:
        """The operator's Prometheus text ('' when it serves none)."""
        if not self.metrics_url:
            return ""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as resp:
            return resp.read().decode()

    def apiserver_metrics(self) -> str:
        """kube-apiserver's /metrics, read with the admin credentials."""
        request = self.api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
        resp = self.api.call_api(*request, _request_timeout=30)
        try:
            return resp.read().decode()
        finally:
            resp.response.release_conn()


def h800_pool(health: dict | None = None) -> dict:
    spec: dict = {"nodeGroups": [{"name": "h800", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H800"},
                                  "accelerator": {"vendor": "nvidia", "model": "H800", "resource": "nvidia.com/gpu",
                                                  "cardsPerNode": 8}}]}
    if health:
        spec["health"] = health
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CardPool", "metadata": {"name": "bench"}, "spec": spec}


@contextmanager
def bench_cluster(name: str, fleet: str | fleets.Fleet, port_offset: int, pool: dict,
                  operator_env: Mapping[str, str] | None = None, metrics: bool = False,
                  fleet_timeout: float = 600, node_monitor_grace: str = NODE_MONITOR_GRACE,
                  log=lambda *_: None) -> Iterator[BenchCluster]:
    """`fleet`: a file name in e2e/fleets or a Fleet. With `metrics`, the operator serves Prometheus metrics
    on a port of this cluster's range (BenchCluster.metrics_url). `node_monitor_grace`: how long a node's
    lease may go unrenewed before it turns Unknown (localkube's 40 s by default). Stops every process it
    started on exit."""
    fleet = fleet if isinstance(fleet, fleets.Fleet) else fleets.Fleet.load(FLEETS / fleet)
    with tempfile.TemporaryDirectory(prefix=f"cardpool-bench-{name}-") as tmp:
        cluster = _Cluster(state_dir=Path(tmp), ports=Ports(base=Ports().base + port_offset),
                           node_monitor_grace=node_monitor_grace)
        setup: dict[str, float] = {}
        started = time.monotonic()
        try:
            setup["control_plane_s"] = cluster.up(log=lambda *_: None).get("total", 0.0)
            log(f"control plane up in {setup['control_plane_s']:.1f} s")
            api = config.new_client_from_config(str(cluster.kubeconfig))
            step = time.monotonic()
            fleets.apply(client.CoreV1Api(api), fleet, timeout=fleet_timeout)
            setup["fleet_ready_s"] = round(time.monotonic() - step, 1)
            log(f"{fleet.node_count} nodes Ready in {setup['fleet_ready_s']:.1f} s")
            step = time.monotonic()
            wait_schedulable(client.CoreV1Api(api), fleet.node_count, timeout=fleet_timeout, log=log)
            setup["fleet_schedulable_s"] = round(time.monotonic() - step, 1)
            log(f"not-ready taints lifted in {setup['fleet_schedulable_s']:.1f} s more")
            kubectl = [str(Path(cluster.processes.get("kube-apiserver").program).parent / "kubectl"),
                       "--kubeconfig", str(cluster.kubeconfig)]
            subprocess.run([*kubectl, "apply", "--server-side", "-k", str(REPO / "crds")], check=True,
                           capture_output=True)
            subprocess.run([*kubectl, "wait", "--for", "condition=Established", "--timeout=60s", "crd", "--all"],
                           check=True, capture_output=True)
            health = f"http://127.0.0.1:{cluster.ports.base + HEALTH_PORT_OFFSET}/healthz"
            metrics_port = cluster.ports.base + METRICS_PORT_OFFSET if metrics else 0
            step = time.monotonic()
            cluster.processes.start("operator", operator_command(health), ready_url=health, timeout=120,
                                    env={"KUBECONFIG": str(cluster.kubeconfig), "CARDPOOL_IDENTITY": "bench",
                                         "CARDPOOL_METRICS_PORT": str(metrics_port), **(operator_env or {})})
            client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, "cardpools", pool)

            def leading() -> bool:
                lease = client.CoordinationV1Api(api).read_namespaced_lease("cardpool-operator", "default")
                if lease.spec.holder_identity != "bench":
                    raise NotYet(f"holder {lease.spec.holder_identity}")
                return True

            wait_for("the operator to hold its lease", leading, timeout=60)
            setup["operator_s"] = round(time.monotonic() - step, 1)
            setup["total_s"] = round(time.monotonic() - started, 1)
            log(f"operator leading in {setup['operator_s']:.1f} s; setup took {setup['total_s']:.1f} s")
            yield BenchCluster(cluster, api, fleet.node_count,
                               f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else None, setup)
        finally:
            cluster.down(log=lambda *_: None)
            if keep := os.environ.get("CLUSTERBENCH_KEEP_LOGS"):  # debugging: the logs outlive the temp folder
                shutil.copytree(cluster.processes.logs, Path(keep) / name, dirs_exist_ok=True)


NOT_READY_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def wait_schedulable(core: client.CoreV1Api, count: int, timeout: float, log=lambda *_: None) -> None:
    """Until no node carries a not-ready/unreachable taint. A new node is born tainted; KWOK reports it Ready
    at once, but kube-controller-manager's node lifecycle controller lifts the taints only a few nodes a
    second (its 20 requests a second): until then kube-scheduler refuses pods bound to those nodes, and a
    benchmark started early would measure that instead."""
    last = [0.0]

    def lifted() -> bool:
        resp = core.list_node(_preload_content=False, _request_timeout=60)
        try:
            nodes = json.loads(resp.data)["items"]
        finally:
            resp.release_conn()
        tainted = [n["metadata"]["name"] for n in nodes
                   if any(t.get("key") in NOT_READY_TAINTS for t in n.get("spec", {}).get("taints") or [])]
        if time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            log(f"  {len(tainted)} of {len(nodes)} nodes still tainted not-ready")
        if len(nodes) < count or tainted:
            raise NotYet(f"{len(nodes)} nodes, {len(tainted)} tainted not-ready, e.g. {tainted[:5]}")
        return True

    wait_for(f"the not-ready taints of all {count} nodes to be lifted (kube-controller-manager's node lifecycle "
             "controller)", lifted, timeout=timeout, interval=1.0)


def new_namespace(bench: BenchCluster, name: str) -> None:
    bench.core.create_namespace({"metadata": {"name": name}})
    wait_for(f"ServiceAccount default in {name}", lambda: bench.core.read_namespaced_service_account(
        "default", name), timeout=60)
