"""e2e fixtures: one real local cluster per session (reused if already up), a fresh namespace per test,
and a dump of the namespace's objects when a test fails.

Set CARDPOOL_KUBECONFIG to run against an existing cluster instead; it must run KWOK with
e2e/cluster/kwok.yaml's stages for the fleet and fault tests. CARDPOOL_KEEP_CLUSTER=1 leaves a cluster this
session started running afterwards.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from localkube import fleet as fleets
from localkube.cluster import Cluster
from localkube.config import FLEETS, REPO, bindir
from localkube.testing import Kube, dump
from localkube.waiting import wait_for

SMALL_FLEET = FLEETS / "small.yaml"
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
    try:
        yield Kube(kubeconfig=kubeconfig, api=api, bindir=bindir())
    finally:
        api.close()
        if cluster and started and os.environ.get("CARDPOOL_KEEP_CLUSTER") != "1":
            cluster.down()


@pytest.fixture(scope="session")
def crds(kube: Kube) -> list[str]:
    """cardpool's CRDs from crds/, installed with server-side apply and Established, and its admission policy."""
    files = sorted(CRDS.glob("*.yaml"))
    kube.run("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    kube.run("wait", "--for", "condition=Established", "--timeout=60s", "-f", str(CRDS))
    kube.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests" / "admission"))
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
