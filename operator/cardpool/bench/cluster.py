"""A private local cluster for the cluster benchmarks: its own folder and ports, a KWOK fleet, the CRDs,
this checkout's operator (holding its lease) and one CardPool. Needs the e2e kit (PYTHONPATH=e2e, as
`make bench` sets it)."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config

from cardpool.api.keys import GROUP, VERSION


@dataclass
class BenchCluster:
    cluster: Any
    api: client.ApiClient
    node_count: int

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def operator_rss_mib(self) -> float:
        return self.cluster.processes.get("operator").rss_bytes() / 2**20


def h800_pool(health: dict | None = None) -> dict:
    spec: dict = {"nodeGroups": [{"name": "h800", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H800"},
                                  "accelerator": {"vendor": "nvidia", "model": "H800", "resource": "nvidia.com/gpu",
                                                  "cardsPerNode": 8}}]}
    if health:
        spec["health"] = health
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CardPool", "metadata": {"name": "bench"}, "spec": spec}


@contextmanager
def bench_cluster(name: str, fleet_file: str, port_offset: int, pool: dict) -> Iterator[BenchCluster]:
    try:
        from localkube import fleet as fleets
        from localkube.cluster import Cluster
        from localkube.config import FLEETS, REPO, Ports
        from localkube.processes import operator_command
        from localkube.waiting import NotYet, wait_for
    except ImportError as exc:
        raise SystemExit(f"python -m cardpool.bench {name} needs the e2e kit: run it with PYTHONPATH=e2e "
                         "(make bench does)") from exc

    with tempfile.TemporaryDirectory(prefix=f"cardpool-bench-{name}-") as tmp:
        cluster = Cluster(state_dir=Path(tmp), ports=Ports(base=Ports().base + port_offset))
        try:
            cluster.up(log=lambda *_: None)
            api = config.new_client_from_config(str(cluster.kubeconfig))
            fleet = fleets.Fleet.load(FLEETS / fleet_file)
            fleets.apply(client.CoreV1Api(api), fleet, timeout=600)
            kubectl = [str(Path(cluster.processes.get("kube-apiserver").program).parent / "kubectl"),
                       "--kubeconfig", str(cluster.kubeconfig)]
            subprocess.run([*kubectl, "apply", "--server-side", "-k", str(REPO / "crds")], check=True,
                           capture_output=True)
            subprocess.run([*kubectl, "wait", "--for", "condition=Established", "--timeout=60s", "crd", "--all"],
                           check=True, capture_output=True)
            health = f"http://127.0.0.1:{cluster.ports.base + 45}/healthz"
            cluster.processes.start("operator", operator_command(health), ready_url=health,
                                    env={"KUBECONFIG": str(cluster.kubeconfig), "CARDPOOL_IDENTITY": "bench",
                                         "CARDPOOL_METRICS_PORT": "0"})
            client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, "cardpools", pool)

            def leading() -> bool:
                lease = client.CoordinationV1Api(api).read_namespaced_lease("cardpool-operator", "default")
                if lease.spec.holder_identity != "bench":
                    raise NotYet(f"holder {lease.spec.holder_identity}")
                return True

            wait_for("the operator to hold its lease", leading, timeout=30)
            yield BenchCluster(cluster, api, fleet.node_count)
        finally:
            cluster.down(log=lambda *_: None)


def new_namespace(bench: BenchCluster, name: str) -> None:
    from localkube.waiting import wait_for

    bench.core.create_namespace({"metadata": {"name": name}})
    wait_for(f"ServiceAccount default in {name}", lambda: bench.core.read_namespaced_service_account(
        "default", name), timeout=60)
