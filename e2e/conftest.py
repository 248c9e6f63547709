"""e2e fixtures: one real local cluster per session (reused if already up), a fresh namespace per test,
and a dump of the namespace's objects when a test fails.

Set CARDPOOL_KUBECONFIG to run against an existing cluster instead; it must run KWOK with
e2e/cluster/kwok.yaml's stages for the fleet and fault tests. CARDPOOL_KEEP_CLUSTER=1 leaves a cluster this
session started running afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from localkube import fleet as fleets
from localkube.cluster import Cluster
from localkube.config import FLEETS, REPO, Ports, bindir
from localkube.processes import ProcessTable, operator_command
from localkube.testing import Kube, dump
from localkube.waiting import NotYet, wait_for

SMALL_FLEET = FLEETS / "small.yaml"
METRICS_OFFSET = 10  # the operator's metrics port, from its health port
CRDS = REPO / "crds"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    item.stash.setdefault(_failed, False)
    if report.failed:
        item.stash[_failed] = True
    return report


_failed = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    existing = os.environ.get("CARDPOOL_KUBECONFIG")
    cluster, started = None, False
    if existing:
        kubeconfig = Path(existing)
    else:
        cluster = Cluster()
        started = bool(cluster.up())
        kubeconfig = cluster.kubeconfig
    api = config.new_client_from_config(str(kubeconfig))
    fleets.apply(client.CoreV1Api(api), fleets.Fleet.load(SMALL_FLEET))
    handle = Kube(kubeconfig=kubeconfig, api=api, bindir=bindir())
    if cluster and not started:
        # a cluster from `make up` is the tests' own: its operator (maybe older code) stops, and its demo
        # jobs and pools go, since they hold cards the tests expect free
        cluster.processes.stop("operator")
        reset_cardpool_objects(handle)
    try:
        yield handle
    finally:
        api.close()
        if cluster and started and os.environ.get("CARDPOOL_KEEP_CLUSTER") != "1":
            cluster.down()


@pytest.fixture(scope="session")
def crds(kube: Kube) -> list[str]:
    """cardpool's CRDs from crds/, installed with server-side apply and Established, and its admission policy."""
    files = sorted(CRDS.glob("cardpool.io_*.yaml"))
    kube.run("apply", "--server-side", "--force-conflicts", "-k", str(CRDS))
    kube.run("wait", "--for", "condition=Established", "--timeout=60s", *(f"-f{f}" for f in files))
    kube.run("apply", "--server-side", "--force-conflicts", "-k", str(REPO / "manifests" / "admission"))
    return [f.name for f in files]


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace, with its default ServiceAccount present (pods are rejected before it exists)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:5]}"
    core = kube.core
    core.create_namespace({"metadata": {"name": name, "labels": {"cardpool.io/e2e": "true"}}})
    wait_for(f"ServiceAccount default in namespace {name}",
             lambda: core.read_namespaced_service_account("default", name), timeout=60)
    yield name
    if request.node.stash.get(_failed, False):
        print(dump(kube, name))
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def reset_cardpool_objects(kube: Kube) -> None:
    """Delete every TrainingJob and CardPool and wait until their pods are gone."""
    installed = kube.run("get", "crd", "-o", "name").stdout
    for kind in ("trainingjobs", "cardpools"):
        if f"{kind}.cardpool.io" not in installed:  # e.g. a kept cluster whose CRD failed to install
            continue
        kube.run("delete", f"{kind}.cardpool.io", "--all", "--all-namespaces", "--wait=false")

    def no_cardpool_pods() -> bool:
        left = kube.core.list_pod_for_all_namespaces(label_selector="app.kubernetes.io/managed-by=cardpool").items
        if left:
            raise NotYet(f"{len(left)} pods left, e.g. {left[0].metadata.namespace}/{left[0].metadata.name}")
        return True

    wait_for("pods of earlier cardpool jobs to be garbage-collected", no_cardpool_pods, timeout=120)


class Operator:
    """This checkout's operator as a local process against the test cluster (kopf run), by name."""

    def __init__(self, kube: Kube, table: ProcessTable, health_port: int):
        self.kube, self.table, self.health_port = kube, table, health_port

    def start(self, name: str = "operator", health_port: int | None = None, kubeconfig: Path | None = None,
              namespace: str = "default", env: dict[str, str] | None = None) -> None:
        """`env`: settings on top (e.g. CARDPOOL_KUBE_QPS)."""
        port = health_port or self.health_port
        url = f"http://127.0.0.1:{port}/healthz"
        self.table.start(name, operator_command(url), ready_url=url,
                         env={"KUBECONFIG": str(kubeconfig or self.kube.kubeconfig), "CARDPOOL_IDENTITY": name,
                              "CARDPOOL_NAMESPACE": namespace, "CARDPOOL_METRICS_PORT": str(port + METRICS_OFFSET),
                              **(env or {})})

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port + METRICS_OFFSET}/metrics"

    def stop(self, name: str = "operator", sig: signal.Signals = signal.SIGTERM) -> None:
        self.table.stop(name, sig)

    def log(self, name: str = "operator") -> str:
        entry = self.table.get(name)
        return entry.log_tail(60) if entry else ""

    def log_size(self, name: str = "operator") -> int:
        entry = self.table.get(name)
        try:
            return Path(entry.log).stat().st_size if entry else 0
        except OSError:
            return 0

    def log_since(self, offset: int, name: str = "operator") -> str:
        """What the operator logged after `offset` (a `log_size()` taken earlier)."""
        entry = self.table.get(name)
        if entry is None:
            return ""
        with open(entry.log, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")


@pytest.fixture(scope="session")
def operator(kube: Kube, crds: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """The operator of this checkout, running from its first use to the end of the session (an operator
    from `make up` was stopped by the `kube` fixture, so exactly this one holds the lease)."""
    op = Operator(kube, ProcessTable(tmp_path_factory.mktemp("operator")), Ports().base + 40)
    op.start()
    try:
        yield op
    finally:
        op.table.stop_all()


@pytest.fixture
def quiet_operator(operator: Operator) -> Iterator[Operator]:
    """The operator, checked after the test: nothing it logged meanwhile is a traceback."""
    start = operator.log_size()
    yield operator
    logged = operator.log_since(start)
    assert "Traceback" not in logged, "the operator logged a traceback during the test:\n" + logged[-6000:]
