"""Fault tolerance on the real local cluster: node and card faults drain the node and restart the job from
its checkpoint (shrunk when capacity is short, grown back after probation), failure policy, hang detection,
a fault storm held to the drain cap, and a real trainer run as local processes through a node fault.

Faults are injected through KWOK (NotReady) and node status (allocatable); every test puts its nodes back.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cardpool.api.keys import ANNOTATION_PROGRESS, GROUP, TAINT_DRAIN, VERSION
from jobs import (
    HEALTH,
    PROBATION_S,
    TIMEOUT,
    TORCH,
    checkpoint,
    drained,
    env_of,
    get_job,
    make_pool,
    pods_of,
    rank_nodes,
    returned,
    submit,
    wait_attempt,
    wait_phase,
)
from localkube import faults
from localkube.config import REPO
from localkube.runner import Runner
from localkube.testing import Kube
from localkube.waiting import NotYet, wait_for

H800_ONLY = {"spec.placement.accelerators": ["H800"]}
ELASTIC = {"spec.workers.size": {"min": 2, "max": 4, "growAfterSeconds": 2}}


@pytest.fixture
def pool(kube: Kube, operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace, HEALTH)


@pytest.fixture
def storm_pool(kube: Kube, operator: Any, namespace: str) -> Iterator[str]:
    """A pool that drains at most 20% of a group at once: 1 of the 6 H800 nodes."""
    yield from make_pool(kube, namespace, {"spec.health": {**HEALTH["spec.health"], "maxDrainedPercent": 20}})


@pytest.fixture
def broken(kube: Kube) -> Iterator[list[str]]:
    """Nodes a test breaks; afterwards they are healed and the test waits until cardpool has returned them."""
    nodes: list[str] = []
    yield nodes
    for node in nodes:
        faults.make_node_ready(kube.core, node)
        for resource in ("nvidia.com/gpu",):
            faults.restore_cards(kube.core, node, resource)
    for node in nodes:
        wait_for(f"node {node} to be returned by cardpool", lambda n=node: returned(kube, n), timeout=TIMEOUT)







def test_a_node_fault_drains_the_node_restarts_shrunk_from_the_checkpoint_and_grows_back_after_probation(
        kube: Kube, namespace: str, pool: str, broken: list[str]) -> None:
    # 6 H800 nodes: a 2-node job holds two, the elastic job (2..4) the other four
    holder = submit(kube, namespace, pool, TORCH, **H800_ONLY, **{"metadata.name": "holder",
                                                                  "spec.workers.size": {"min": 2, "max": 2}})
    wait_phase(kube, namespace, holder, "Running")
    job = submit(kube, namespace, pool, TORCH, **H800_ONLY, **ELASTIC)
    wait_attempt(kube, namespace, job, 1)
    checkpoint(kube, namespace, job, 1, 100, 32)
    victim = rank_nodes(kube, namespace, job, 1)[1]
    broken.append(victim)

    faults.make_node_not_ready(kube.core, victim)
    record = wait_for(f"node {victim} to be drained", lambda: drained(kube, victim), timeout=TIMEOUT)
    assert record["reason"] == "NodeNotReady" and record["taint"] == ("NodeNotReady", "NoSchedule")
    status = wait_attempt(kube, namespace, job, 2)
    assert status["workers"] == 3 and status["size"] == "3/4"  # shrunk: only 3 healthy H800 nodes are free
    assert status["lastFailure"]["reason"] == "NodeNotReady" and status["restarts"]["uncounted"] == 1
    assert status["restarts"]["counted"] == 0
    nodes = rank_nodes(kube, namespace, job, 2)
    assert victim not in nodes.values() and len(nodes) == 3
    pod = next(p for p in pods_of(kube, namespace, job) if p.metadata.labels["cardpool.io/attempt"] == "2")
    env = env_of(pod)
    assert (env["CARDPOOL_RESUME_STEP"], env["CARDPOOL_RESUME_WORLD_SIZE"], env["CARDPOOL_WORLD_SIZE"]) == (
        "100", "32", "24")
    assert [(h["attempt"], h["workers"], h.get("endReason"), h.get("resumedFromStep")) for h in status["history"]] \
        == [(1, 4, "NodeNotReady", None), (2, 3, None, 100)]

    faults.make_node_ready(kube.core, victim)
    healed = time.monotonic()
    wait_for(f"node {victim} to pass probation and be returned", lambda: returned(kube, victim), timeout=TIMEOUT)
    assert time.monotonic() - healed >= PROBATION_S - 1  # not before the probation (1 s of clock granularity)

    def waiting_for_save() -> bool:
        ready = next((c for c in get_job(kube, namespace, job)["status"]["conditions"] if c["type"] == "Ready"), {})
        if ready.get("reason") != "WaitingForCheckpoint":
            raise NotYet(f"{ready.get('reason')}: {ready.get('message')}")
        return True

    # growing stops attempt 2 with SIGTERM; the next attempt waits for the save a trainer makes then
    wait_for("the job to stop attempt 2 and wait for its graceful save", waiting_for_save, timeout=TIMEOUT)
    checkpoint(kube, namespace, job, 2, 150, 24)
    status = wait_attempt(kube, namespace, job, 3)
    assert status["workers"] == 4 and status["restarts"]["scaling"] == 1
    assert status["history"][1]["endReason"] == "GrowTo4" and status["history"][2]["resumedFromStep"] == 150
    env = env_of(next(p for p in pods_of(kube, namespace, job) if p.metadata.labels["cardpool.io/attempt"] == "3"))
    assert (env["CARDPOOL_RESUME_STEP"], env["CARDPOOL_RESUME_WORLD_SIZE"], env["CARDPOOL_WORLD_SIZE"]) == (
        "150", "24", "32")
    reasons = [e.reason for e in kube.core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={job}").items]
    assert {"NodeNotReady", "Resized", "Growing", "GangPlaced"} <= set(reasons)


def test_a_card_fault_drains_the_node_and_evicts_other_pods_within_their_budgets(
        kube: Kube, namespace: str, pool: str, broken: list[str], operator: Any) -> None:
    job = submit(kube, namespace, pool, TORCH, **H800_ONLY)
    wait_attempt(kube, namespace, job, 1)
    victim = rank_nodes(kube, namespace, job, 1)[0]
    broken.append(victim)
    # two other pods on the node (no cards): one free to go, one protected by a PodDisruptionBudget
    for name, labels in (("free", {"app": "free"}), ("guarded", {"app": "guarded"})):
        kube.core.create_namespaced_pod(namespace, {"metadata": {"name": name, "labels": labels}, "spec": {
            "nodeName": victim, "containers": [{"name": "c", "image": "busybox"}]}})
    client.PolicyV1Api(kube.api).create_namespaced_pod_disruption_budget(namespace, {
        "metadata": {"name": "guarded"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}})
    wait_for("the two pods to run", lambda: all(kube.core.read_namespaced_pod(n, namespace).status.phase == "Running"
                                                for n in ("free", "guarded")), timeout=TIMEOUT)

    faults.drop_cards(kube.core, victim, "nvidia.com/gpu", lost=1)
    assert wait_for(f"node {victim} to be drained", lambda: drained(kube, victim), timeout=TIMEOUT)["reason"] \
        == "CardFault"
    status = wait_attempt(kube, namespace, job, 2)
    assert status["lastFailure"]["reason"] == "CardFault" and status["workers"] == 4
    assert victim not in rank_nodes(kube, namespace, job, 2).values()

    def free_gone() -> bool:
        try:
            kube.core.read_namespaced_pod("free", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        raise NotYet("pod free still exists")

    wait_for("the unprotected pod to be evicted", free_gone, timeout=TIMEOUT)
    wait_for("the operator to report that the budget holds the guarded pod",
             lambda: f"eviction of {namespace}/guarded waits for its PodDisruptionBudget" in operator.log(),
             timeout=TIMEOUT)
    guarded = kube.core.read_namespaced_pod("guarded", namespace)
    assert guarded.metadata.deletion_timestamp is None  # the budget was honoured

    faults.restore_cards(kube.core, victim, "nvidia.com/gpu")
    wait_for(f"node {victim} to pass probation and be returned", lambda: returned(kube, victim), timeout=TIMEOUT)
    client.PolicyV1Api(kube.api).delete_namespaced_pod_disruption_budget("guarded", namespace)
    kube.core.delete_namespaced_pod("guarded", namespace)


def test_exit_codes_follow_the_failure_policy_and_a_spent_budget_fails_the_job(
        kube: Kube, namespace: str, pool: str) -> None:
    policy = {"spec.failurePolicy": {"maxRestarts": 1, "backoffSeconds": 1, "rules": [
        {"action": "Fail", "onExitCodes": {"operator": "In", "values": [3]}},
        {"action": "RestartIgnoringBudget", "onExitCodes": {"operator": "In", "values": [143]}}]}}
    size = {"spec.workers.size": {"min": 1, "max": 1}}
    job = submit(kube, namespace, pool, TORCH, **policy, **size)
    permanent = submit(kube, namespace, pool, TORCH, **policy, **size, **{"metadata.name": "permanent"})
    wait_attempt(kube, namespace, job, 1)
    wait_attempt(kube, namespace, permanent, 1)

    faults.fail_pod(kube.core, namespace, f"{permanent}-a1-0", exit_code=3)
    status = wait_phase(kube, namespace, permanent, "Failed")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "FailedByPolicy" and "rule 0 says Fail" in ready["message"]
    assert status["lastFailure"]["reason"] == "ExitCode3" and status["restarts"]["counted"] == 0

    faults.fail_pod(kube.core, namespace, f"{job}-a1-0", exit_code=143)  # retryable, outside the budget
    status = wait_attempt(kube, namespace, job, 2)
    assert (status["restarts"]["counted"], status["restarts"]["uncounted"]) == (0, 1)
    faults.fail_pod(kube.core, namespace, f"{job}-a2-0", exit_code=1)  # counts: the budget's only restart
    status = wait_attempt(kube, namespace, job, 3)
    assert (status["restarts"]["counted"], status["lastFailure"]["reason"]) == (1, "ExitCode1")
    faults.fail_pod(kube.core, namespace, f"{job}-a3-0", exit_code=1)
    status = wait_phase(kube, namespace, job, "Failed")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "RestartBudgetSpent" and "maxRestarts 1" in ready["message"]
    assert not [p for p in pods_of(kube, namespace, job) if p.metadata.deletion_timestamp is None
                and p.status.phase in ("Pending", "Running")]


def test_no_progress_for_longer_than_the_timeout_restarts_the_job(kube: Kube, namespace: str, pool: str) -> None:
    job = submit(kube, namespace, pool, TORCH, **{"spec.failurePolicy": {"progressTimeoutSeconds": 10},
                                                  "spec.workers.size": {"min": 2, "max": 2}})
    wait_attempt(kube, namespace, job, 1)
    report = {"step": 7, "totalSteps": 1000, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    kube.core.patch_namespaced_pod(f"{job}-a1-0", namespace, {"metadata": {"annotations": {
        ANNOTATION_PROGRESS: json.dumps(report)}}})

    def progress() -> dict:
        seen = (get_job(kube, namespace, job).get("status") or {}).get("progress") or {}
        if seen.get("step") != 7:
            raise NotYet(f"progress {seen}")
        return seen

    assert wait_for("rank 0's progress in the job status", progress, timeout=TIMEOUT)["totalSteps"] == 1000
    reported = time.monotonic()
    status = wait_attempt(kube, namespace, job, 2, timeout=TIMEOUT)
    assert time.monotonic() - reported >= 9  # not before the timeout after the last report
    assert status["lastFailure"]["reason"] == "Hang" and "last at step 7" in status["lastFailure"]["message"]
    assert status["restarts"]["counted"] == 1


def test_a_fault_storm_drains_no_more_than_the_cap_and_every_job_resumes_from_its_checkpoint(
        kube: Kube, namespace: str, storm_pool: str, broken: list[str]) -> None:
    pool = storm_pool
    jobs = [submit(kube, namespace, pool, TORCH, **H800_ONLY, **{
        "metadata.name": f"job-{i}", "spec.workers.size": {"min": 1, "max": 2}}) for i in range(3)]
    for i, job in enumerate(jobs):
        wait_attempt(kube, namespace, job, 1)
        checkpoint(kube, namespace, job, 1, 10 * (i + 1), 16)
    victims = [rank_nodes(kube, namespace, jobs[0], 1)[0], rank_nodes(kube, namespace, jobs[1], 1)[1]]
    broken.extend(victims)
    for victim in victims:  # two of six nodes at once: a third of the group
        faults.make_node_not_ready(kube.core, victim)

    def cap_reported() -> list[str]:
        events = kube.core.list_namespaced_event("default", field_selector=f"involvedObject.name={pool}").items
        if not any(e.reason == "DrainCapReached" for e in events):
            raise NotYet(f"pool events {[e.reason for e in events]}")
        return [e.message for e in events if e.reason == "DrainCapReached"]

    assert "cap 1" in wait_for("the pool to report its drain cap", cap_reported, timeout=TIMEOUT)[0]
    for i, job in enumerate(jobs[:2]):
        status = wait_attempt(kube, namespace, job, 2)
        assert status["restarts"]["uncounted"] == 1 and status["lastCheckpoint"]["step"] == 10 * (i + 1)
        env = env_of(next(p for p in pods_of(kube, namespace, job)
                          if p.metadata.labels["cardpool.io/attempt"] == "2"))
        assert env["CARDPOOL_RESUME_STEP"] == str(10 * (i + 1))
        assert not set(rank_nodes(kube, namespace, job, 2).values()) & set(victims)
    assert get_job(kube, namespace, jobs[2])["status"]["attempt"] == 1  # untouched by the storm
    tainted = [n.metadata.name for n in kube.core.list_node().items
               if any(t.key == TAINT_DRAIN for t in n.spec.taints or [])]
    assert len(tainted) == 1 and tainted[0] in victims
    status = client.CustomObjectsApi(kube.api).get_cluster_custom_object(GROUP, VERSION, "cardpools", pool)
    h800 = next(g for g in status["status"]["groups"] if g["name"] == "h800")
    assert h800["drainingNodes"] == 1


def test_a_real_trainer_resumes_from_its_checkpoints_through_a_node_fault_and_growing_back(
        kube: Kube, namespace: str, pool: str, broken: list[str], tmp_path: Path, operator: Any) -> None:
    """The trainer (e2e/trainers/linear_regression.py) runs as local processes with each pod's env and a token
    bound to its pod; it checkpoints to a local folder and reports over the API. Rank 0's node fails: the
    job restarts on 2 workers from the last reported checkpoint. The node comes back: after probation the job
    stops with a graceful save and restarts on 3 workers from that save, and ends with the model of an
    uninterrupted run."""
    kube.run("apply", "-f", str(REPO / "manifests" / "operator" / "trainer-role.yaml"))
    kube.run("create", "rolebinding", "trainer", "--clusterrole", "cardpool-trainer", "--serviceaccount",
             f"{namespace}:default", "-n", namespace)
    steps, ckpt = 250, tmp_path / "ckpt"
    trainer_env = [{"name": "TRAIN_STEPS", "value": str(steps)}, {"name": "TRAIN_STEP_SECONDS", "value": "0.15"},
                   {"name": "TRAIN_CHECKPOINT_EVERY", "value": "10"},
                   {"name": "CARDPOOL_PROGRESS_INTERVAL_SECONDS", "value": "1"}]
    template = {"metadata": {"annotations": {"localkube.cardpool.io/run": "process"}},
                "spec": {"terminationGracePeriodSeconds": 20, "containers": [{
                    "name": "trainer", "image": "python:3.12", "env": trainer_env,
                    "command": ["python", "e2e/trainers/linear_regression.py"]}]}}
    # 4 A100 nodes: one held by another job, so after losing one the trainer restarts on 2 (of 2..3)
    holder = submit(kube, namespace, pool, TORCH, **{"metadata.name": "holder", "spec.placement.accelerators":
                                                     ["A100"], "spec.workers.size": {"min": 1, "max": 1}})
    wait_phase(kube, namespace, holder, "Running")
    runner_dir = tmp_path / "runner"
    runner_dir.mkdir()
    configuration = kube.api.configuration
    with Runner(kube.core, namespace, runner_dir, configuration.host, configuration.ssl_ca_cert) as runner:
        job = submit(kube, namespace, pool, TORCH, **{
            "spec.placement.accelerators": ["A100"],
            "spec.workers.size": {"min": 2, "max": 3, "growAfterSeconds": 2},
            "spec.workers.template": template, "spec.checkpoint": {"uri": ckpt.as_uri(), "gracefulSaveSeconds": 15},
            "spec.failurePolicy": {"progressTimeoutSeconds": 30}})
        wait_attempt(kube, namespace, job, 1)

        def reported() -> int:
            last = (get_job(kube, namespace, job).get("status") or {}).get("lastCheckpoint") or {}
            if not last.get("step"):
                raise NotYet(f"lastCheckpoint {last}; runner errors {runner.errors}")
            return last["step"]

        wait_for("the trainer's first checkpoint to be recorded", reported, timeout=TIMEOUT)
        victim = rank_nodes(kube, namespace, job, 1)[0]  # rank 0's node: the trainer dies with it
        broken.append(victim)
        faults.make_node_not_ready(kube.core, victim)
        status = wait_attempt(kube, namespace, job, 2)
        assert status["workers"] == 2 and status["lastFailure"]["reason"] == "NodeNotReady"
        resumed_at = status["history"][-1]["resumedFromStep"]

        def force_removed() -> bool:
            try:
                pod = kube.core.read_namespaced_pod(f"{job}-a1-0", namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return True
                raise
            raise NotYet(f"pod {pod.metadata.name} deleting since {pod.metadata.deletion_timestamp}")

        # rank 0's pod stays Terminating on the dead node (its kubelet never confirms): removed after 10 s
        wait_for(f"the operator to force-remove {job}-a1-0", force_removed, timeout=TIMEOUT)
        assert f"force-removing pod {namespace}/{job}-a1-0" in operator.log()
        faults.make_node_ready(kube.core, victim)  # back after probation; then the job grows to 3
        status = wait_attempt(kube, namespace, job, 3)
        assert status["workers"] == 3 and status["restarts"]["scaling"] == 1
        grown_at = status["history"][-1]["resumedFromStep"]
        status = wait_phase(kube, namespace, job, "Succeeded", timeout=120)
        assert status["progress"]["totalSteps"] == steps
        assert not runner.errors

        events = {pod: [json.loads(line) for line in out.splitlines()] for pod, out in runner.outputs(f"{job}-a")}
    first, second, third = events[f"{job}-a1-0"], events[f"{job}-a2-0"], events[f"{job}-a3-0"]
    assert any(e["event"] == "checkpoint" and e["step"] == resumed_at for e in first)  # reported by attempt 1
    assert first[-1]["event"] in ("step", "checkpoint")  # killed with its node: no clean end
    assert second[0] == {"event": "resumed", "step": resumed_at, "from_world_size": 24, "world_size": 16}
    assert second[1] == {"event": "step", "step": resumed_at + 1}
    assert second[-1]["event"] == "saved" and second[-1]["step"] == grown_at  # the graceful save on SIGTERM
    assert third[0] == {"event": "resumed", "step": grown_at, "from_world_size": 16, "world_size": 24}
    assert third[-1]["event"] == "done" and third[-1]["step"] == steps

    reference = subprocess.run(
        [sys.executable, str(REPO / "e2e" / "trainers" / "linear_regression.py")], capture_output=True, text=True,
        timeout=120, check=True, env={"PATH": "", "PYTHONPATH": str(REPO / "operator"), "TRAIN_STEPS": str(steps),
                                      "CARDPOOL_JOB": "ref", "CARDPOOL_NAMESPACE": "ref", "CARDPOOL_ATTEMPT": "1",
                                      "CARDPOOL_RANK": "0", "CARDPOOL_WORKERS": "3", "CARDPOOL_CARDS_PER_WORKER": "8",
                                      "CARDPOOL_WORLD_SIZE": "24",
                                      "CARDPOOL_CHECKPOINT_URI": (tmp_path / "ref").as_uri()})
    expected = json.loads(reference.stdout.splitlines()[-1])["w"]
    np.testing.assert_allclose(third[-1]["w"], expected, rtol=1e-12, atol=1e-12)
    assert re.fullmatch(rf"file://.*/step-0+{steps}", third[-1]["uri"])
