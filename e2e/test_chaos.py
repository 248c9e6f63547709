"""Chaos: the control plane and the operator fail under 51 running jobs while more are submitted, and every
job comes through as it was (e2e/chaos.py has the workload and the invariants).

Each scenario reports how long the cluster took to converge after the fault; the figures are written as JSON
to $CARDPOOL_CHAOS_REPORT (default: chaos-report.json in the cluster's state directory) and printed at the end
of the module. `make test` runs one of them (the API server killed at three points); `make chaos`
(CARDPOOL_CHAOS=all) runs them all and prints the figures as its last line.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from cardpool.api.keys import LABEL_JOB
from chaos import CALL, Submitter, converged, random_points, snapshot, start_workload
from jobs import HEALTH, TORCH, drained, make_pool, returned, submit
from localkube import faults
from localkube import fleet as fleets
from localkube.cluster import Cluster
from localkube.config import FLEETS
from localkube.proxy import StallingProxy
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for
from manifests import example

ALL = os.environ.get("CARDPOOL_CHAOS") == "all"
FULL_ONLY = pytest.mark.skipif(not ALL, reason="part of `make chaos` (CARDPOOL_CHAOS=all), not of `make test`")
BURST = fleets.Fleet.load(FLEETS / "burst.yaml")
SLOW_CLIENT = {"CARDPOOL_KUBE_QPS": "20", "CARDPOOL_KUBE_BURST": "5"}
"""The paused leader's budget: its gang's creation outlasts the moment it is paused, so writes are queued."""
SEED = int(os.environ.get("CARDPOOL_CHAOS_SEED", "7"))
REPORT: dict[str, Any] = {}


@pytest.fixture(scope="module")
def cluster(kube: Kube) -> Iterator[Cluster]:
    if os.environ.get("CARDPOOL_KUBECONFIG"):
        pytest.skip("the chaos suite stops and kills the local cluster's processes: not on an existing cluster")
    local = Cluster()
    yield local
    path = Path(os.environ.get("CARDPOOL_CHAOS_REPORT") or local.state_dir / "chaos-report.json")
    if REPORT:
        path.write_text(json.dumps(REPORT, indent=1) + "\n")
        print(f"\nchaos report ({path}):\n{json.dumps(REPORT)}")


@pytest.fixture(autouse=True)
def healed(cluster: Cluster) -> Iterator[None]:
    """Whatever a test did to the control plane, the next test (of this suite or another) finds it whole."""
    yield
    started = cluster.heal()
    assert not started, f"the test left {started} stopped; restarted them"


@pytest.fixture
def pool(kube: Kube, namespace: str, operator: Any) -> Iterator[str]:
    burst = {"name": "burst", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L20"},
             "accelerator": {"vendor": "nvidia", "model": "L20", "resource": "nvidia.com/gpu", "cardsPerNode": 8}}
    groups = example("pool-mixed-vendor.yaml")["spec"]["nodeGroups"]
    yield from make_pool(kube, namespace, {**HEALTH, "spec.nodeGroups": [*groups, burst]})


@pytest.fixture
def watched(operator: Any) -> Iterator[Any]:
    """The operator, its log read after the test: the faults may show in it, a traceback loop may not."""
    offset = operator.log_size()
    yield operator
    logged = operator.log_since(offset)
    assert logged.count("Traceback") <= 2, "the operator logged tracebacks over and over:\n" + logged[-6000:]


def shows(operator: Any, offset: int, *fragments: str) -> None:
    """The operator's log since `offset` shows the fault and the recovery: each fragment is there."""
    logged = operator.log_since(offset)
    missing = [f for f in fragments if f not in logged]
    assert not missing, f"the operator's log does not show {missing}:\n{logged[-4000:]}"


FAULT_SEEN = "retrying in"
"""An informer's watch broke (connection refused, reset, timed out) and is retried."""
RECOVERED = "working again after"
"""The informer lists or watches again after its errors."""
RESTARTED = ("started as operator", "operator is the leader")


def report(scenario: str, **figures: Any) -> None:
    REPORT[scenario] = {k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}


def holder(kube: Kube) -> tuple[str, datetime | None]:
    lease = client.CoordinationV1Api(kube.api).read_namespaced_lease("cardpool-operator", "default", **CALL)
    return lease.spec.holder_identity, lease.spec.acquire_time


def test_the_api_server_killed_at_three_points_while_jobs_are_submitted(
        kube: Kube, namespace: str, pool: str, cluster: Cluster, watched: Any) -> None:
    start_workload(kube, namespace, pool)
    before = snapshot(kube, namespace)
    restarts = []
    offset = watched.log_size()
    with Submitter(kube, namespace, pool, count=6, every=1.0) as late:
        for i, jitter in enumerate(random_points(SEED, 3, 0.0, 2.0)):
            # a fault at an arbitrary moment of the passes the submissions cause: after the i-th job went in
            wait_for(f"late job {i} to be submitted", lambda i=i: len(late.names) > i, timeout=60, interval=0.05)
            time.sleep(jitter)
            cluster.kill("kube-apiserver")
            restarts.append(cluster.start("kube-apiserver"))
        wait_for("the six late jobs to be submitted", lambda: len(late.names) == 6, timeout=60)
    took = converged(kube, namespace, before, extra=late.names)
    shows(watched, offset, FAULT_SEEN, RECOVERED)
    report("apiserver_sigkill_x3", converge_s=took, apiserver_restart_s=max(restarts), jobs=len(before.jobs) + 6)


@FULL_ONLY
def test_etcd_killed_and_restarted(kube: Kube, namespace: str, pool: str, cluster: Cluster, watched: Any) -> None:
    start_workload(kube, namespace, pool)
    before = snapshot(kube, namespace)
    with Submitter(kube, namespace, pool, count=4, every=1.0) as late:
        wait_for("a late job to be submitted", lambda: late.names, timeout=60, interval=0.05)
        cluster.kill("etcd")
        down = cluster.start("etcd")
        wait_for("the four late jobs to be submitted", lambda: len(late.names) == 4, timeout=120)
    took = converged(kube, namespace, before, extra=late.names)
    # nothing to show: the API server's watch cache hides etcd's restart from its clients
    report("etcd_sigkill", converge_s=took, etcd_restart_s=down, jobs=len(before.jobs) + 4)


@pytest.fixture
def burst_nodes(kube: Kube, namespace: str) -> Iterator[list[str]]:
    names = [n["metadata"]["name"] for n in BURST.node_objects()]
    kube.run("delete", "node", "--ignore-not-found", "--wait=true", "--timeout=60s", *names)  # an earlier run's
    fleets.apply(kube.core, BURST, prune=False)
    yield names
    # the jobs' pods go while their nodes still run them (a deleted node leaves its pods to the garbage collector)
    kube.run("delete", "trainingjobs.cardpool.io", "--all", "-n", namespace, "--wait=false")
    on_burst = set(names)

    def gone() -> bool:
        left = [p.metadata.name for p in kube.core.list_namespaced_pod(namespace, **CALL).items
                if p.spec.node_name in on_burst]
        if left:
            raise NotYet(f"{len(left)} pods left on the burst nodes, e.g. {left[0]}")
        return True

    wait_for("the pods on the burst nodes to be gone", gone, timeout=180)
    kube.run("delete", "node", "--ignore-not-found", "--wait=true", "--timeout=120s", *names)


def burst_gang(name: str, workers: int) -> dict:
    return {"metadata.name": name, "spec.workers.cardsPerWorker": 1,
            "spec.workers.size": {"min": workers, "max": workers}, "spec.placement.accelerators": ["L20"],
            "spec.workers.template.spec.containers.0.resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}


def creating(kube: Kube, namespace: str, prefix: str, total: int) -> int:
    """How many pods of the jobs named `prefix`* exist, while between a tenth and four fifths of `total`."""
    count = sum(1 for p in kube.core.list_namespaced_pod(namespace, **CALL).items
                if (p.metadata.labels or {}).get(LABEL_JOB, "").startswith(prefix))
    if not total // 10 <= count < total * 4 // 5:
        raise NotYet(f"{count} of {total} pods exist")
    return count


@FULL_ONLY
def test_the_operator_killed_during_a_500_pod_creation_burst(
        kube: Kube, namespace: str, pool: str, burst_nodes: list[str], watched: Any) -> None:
    start_workload(kube, namespace, pool)
    before = snapshot(kube, namespace)
    gangs = [submit(kube, namespace, pool, TORCH, **burst_gang(f"burst-{i}", 125)) for i in range(4)]
    created = wait_for("the burst's pods to be in creation", lambda: creating(kube, namespace, "burst-", 500),
                       timeout=120, interval=0.05)
    offset = watched.log_size()
    watched.stop(sig=signal.SIGKILL)
    watched.start()
    took = converged(kube, namespace, before, timeout=300, extra=gangs)
    shows(watched, offset, *RESTARTED)
    report("operator_sigkill_mid_burst", converge_s=took, pods_when_killed=created, burst_pods=500)


@FULL_ONLY
def test_the_operator_killed_during_a_drain(kube: Kube, namespace: str, pool: str, watched: Any) -> None:
    start_workload(kube, namespace, pool)
    before = snapshot(kube, namespace)
    victim = next(p.spec.node_name for p in kube.core.list_namespaced_pod(namespace, **CALL).items
                  if p.metadata.labels[LABEL_JOB] == "one-00")
    struck = {p.metadata.labels[LABEL_JOB] for p in kube.core.list_namespaced_pod(namespace, **CALL).items
              if p.spec.node_name == victim}
    faults.make_node_not_ready(kube.core, victim)
    try:
        wait_for(f"node {victim} to be drained", lambda: drained(kube, victim), timeout=90, interval=0.05)
        offset = watched.log_size()
        watched.stop(sig=signal.SIGKILL)  # the drain recorded, its jobs' restarts in flight
        watched.start()
        took = converged(kube, namespace, before, consequences=dict.fromkeys(struck, 1))
        shows(watched, offset, *RESTARTED)
    finally:
        faults.make_node_ready(kube.core, victim)
        wait_for(f"node {victim} to be returned after its probation", lambda: returned(kube, victim), timeout=90)
    report("operator_sigkill_mid_drain", converge_s=took, jobs_on_the_node=len(struck))


@FULL_ONLY
def test_a_paused_leader_writes_nothing_after_its_lease_passed_on(
        kube: Kube, namespace: str, pool: str, cluster: Cluster, burst_nodes: list[str], watched: Any) -> None:
    """The leader is stopped (SIGSTOP) in the middle of creating a 125-pod gang at 20 requests a second, so
    it holds writes it has not sent yet; the standby takes the lease and finishes the work; the leader wakes
    up. The API server's audit log is the judge: no write of the first replica after the takeover."""
    watched.stop()
    watched.start(env=SLOW_CLIENT)
    leader = watched.table.get("operator")
    wait_for("the first replica to lead", lambda: holder(kube)[0] == "operator", timeout=30)
    watched.start("standby", health_port=watched.health_port + 1)
    try:
        start_workload(kube, namespace, pool)
        before = snapshot(kube, namespace)
        assert holder(kube)[0] == "operator"
        gang = submit(kube, namespace, pool, TORCH, **burst_gang("gang", 125))
        queued = wait_for("the gang's pods to be in creation", lambda: creating(kube, namespace, "gang", 125),
                          timeout=120, interval=0.05)
        offset = watched.log_size()
        os.killpg(leader.pid, signal.SIGSTOP)
        paused = time.monotonic()
        try:
            wait_for("the standby to take the lease", lambda: holder(kube)[0] == "standby", timeout=40)
            took_over = holder(kube)[1]
            converged(kube, namespace, before, extra=[gang])  # the standby finishes the gang
        finally:
            os.killpg(leader.pid, signal.SIGCONT)
        paused_s = time.monotonic() - paused
        # the woken replica's elector finds the lease taken: from then on it surely writes nothing
        wait_for("the resumed replica to see it lost the lease",
                 lambda: "lost leadership to standby" in watched.log_since(offset), timeout=30)
        took = converged(kube, namespace, before, extra=[gang])
        shows(watched, offset, "lost leadership to standby", "leadership lost:")
        writes = zombie_writes(cluster, "operator", took_over)
    finally:
        watched.stop("standby")  # SIGTERM: it hands the lease back on the way out
        watched.stop()
        watched.start()
    wait_for("the first replica to lead again", lambda: holder(kube)[0] == "operator", timeout=30)
    gap = last_write_gap(cluster, "operator", took_over)
    report("paused_leader", zombie_writes=len(writes), paused_s=paused_s, converge_s=took,
           gang_pods_when_paused=queued, last_write_before_takeover_s=gap)
    # the audit log does see this replica's writes (it made the gang's first pods): zero after is a finding
    assert gap is not None, f"no write of replica 'operator' in {cluster.audit_log}: the measurement is blind"
    assert not writes, f"the paused leader wrote after losing the lease: {writes[:5]}"


def _audit(cluster: Cluster, identity: str) -> Iterator[tuple[datetime, str, str]]:
    """(received, verb, object) of each write the replica `identity` sent, from the API server's audit log."""
    for line in cluster.audit_log.read_text().splitlines():
        event = json.loads(line)
        if f"({identity})" not in event.get("userAgent", ""):
            continue
        ref = event.get("objectRef") or {}
        if ref.get("resource") == "leases":
            continue  # the elector's own writes: those are how leadership is decided
        received = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        yield received, event["verb"], f"{ref.get('resource')}/{ref.get('namespace', '')}/{ref.get('name', '')}"


def zombie_writes(cluster: Cluster, identity: str, took_over: datetime) -> list[tuple[datetime, str, str]]:
    return [w for w in _audit(cluster, identity) if w[0] >= took_over]


def last_write_gap(cluster: Cluster, identity: str, took_over: datetime) -> float | None:
    """Seconds between the replica's last write before the takeover and the takeover."""
    before = [w[0] for w in _audit(cluster, identity) if w[0] < took_over]
    return (took_over - max(before)).total_seconds() if before else None


@FULL_ONLY
def test_the_api_server_unreachable_for_60_s(kube: Kube, namespace: str, pool: str, cluster: Cluster,
                                             watched: Any) -> None:
    start_workload(kube, namespace, pool)
    before = snapshot(kube, namespace)
    with Submitter(kube, namespace, pool, count=4, every=1.0) as late:
        wait_for("a late job to be submitted", lambda: late.names, timeout=60, interval=0.05)
        offset = watched.log_size()
        cluster.pause("kube-apiserver")
        try:
            time.sleep(60)  # the fault itself: the API server answers nothing for a minute
        finally:
            cluster.resume("kube-apiserver")
        wait_for("the four late jobs to be submitted", lambda: len(late.names) == 4, timeout=120)
    took = converged(kube, namespace, before, timeout=240, extra=late.names)
    # (the informers' watches may ride the outage out inside urllib3's retries, so they need not log anything)
    shows(watched, offset, "leader election round failed", "leadership lost:", "operator is the leader")
    report("apiserver_sigstop_60s", converge_s=took, jobs=len(before.jobs) + 4)


@pytest.fixture
def proxied(kube: Kube, cluster: Cluster, watched: Any, tmp_path: Path) -> Iterator[tuple[Any, StallingProxy]]:
    """The operator talking to the API server through a StallingProxy, with stalled watches dropped after 15 s."""
    proxy = StallingProxy(cluster.ports.apiserver)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kube.kubeconfig.read_text().replace(cluster.server, f"https://127.0.0.1:{proxy.port}"))
    watched.stop()
    watched.start(kubeconfig=kubeconfig, env={"CARDPOOL_WATCH_STALL_SECONDS": str(STALL_S)})
    try:
        yield watched, proxy
    finally:
        watched.stop()
        proxy.close()
        watched.start()


STALL_S = 15


@FULL_ONLY
def test_watches_that_go_silent_are_noticed_and_resumed(kube: Kube, namespace: str, pool: str,
                                                        proxied: tuple[Any, StallingProxy]) -> None:
    """Every connection of the operator goes silent at once, its watches among them (open, delivering nothing):
    jobs submitted afterwards still run, once the watches are dropped after CARDPOOL_WATCH_STALL_SECONDS
    without an event and resumed, and the requests on silent connections time out and are retried."""
    operator, proxy = proxied
    start_workload(kube, namespace, pool)
    before = snapshot(kube, namespace)
    offset = operator.log_size()
    silenced = proxy.stall()
    stalled = time.monotonic()
    with Submitter(kube, namespace, pool, count=4, every=0.5) as late:
        wait_for("the four late jobs to be submitted", lambda: len(late.names) == 4, timeout=60)
    converged(kube, namespace, before, timeout=120, extra=late.names)
    took = time.monotonic() - stalled
    assert silenced > 0, "no connection of the operator went through the proxy"
    # the new jobs could only be seen once the silent watches were dropped: not before the stall timeout
    assert took >= STALL_S, f"converged {took:.1f}s after the stall, before any watch could time out"
    shows(operator, offset, "ReadTimeoutError", RECOVERED)
    report("stalled_watches", recover_s=took, connections_silenced=silenced, stall_timeout_s=STALL_S)
