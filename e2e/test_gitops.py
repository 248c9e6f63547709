"""GitOps on the real local cluster: kstatus (sigs.k8s.io/cli-utils, built from e2e/kstatus) and the Argo CD
health checks (manifests/argocd/, in a real Lua interpreter) agree on every state of every kind (a table over
live jobs, pools and queues where the operator can produce the state, statuses as cardpool.api.phases writes them for
the rest); `kubectl diff` of an applied manifest shows no drift once the operator has reconciled (it writes
only status); the kustomize base and overlays build, their admission policy naming the operator they install."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cardpool.api.keys import GROUP, VERSION
from cardpool.api.phases import KSTATUS, NEEDS_A_PERSON, conditions_for_phase
from cardpool.api.trainingjob import Phase
from jobs import POOL, TORCH, get_job, make_pool, submit, wait_phase
from localkube import faults
from localkube.config import REPO
from localkube.testing import Kube
from localkube.waiting import NotYet, WaitTimeout, wait_for
from manifests import edit, example

HEALTH = yaml.safe_load((REPO / "manifests" / "argocd" / "argocd-cm-health.yaml").read_text())["data"]


@pytest.fixture
def pool(kube: Kube, quiet_operator: Any, namespace: str) -> Iterator[str]:
    yield from make_pool(kube, namespace)


def lua(value: object) -> str:
    """A JSON value as a Lua table constructor (lists 1-indexed, as Argo CD's conversion makes them)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{json.dumps(k)}] = {lua(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(lua(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value)


def argo_health(kind: str, obj: dict, tmp_path: Path) -> tuple[str, str]:
    script = tmp_path / f"{kind}.lua"
    script.write_text(HEALTH[f"resource.customizations.health.cardpool.io_{kind}"])
    runner = tmp_path / "run.lua"
    runner.write_text(f"obj = {lua(obj)}\nlocal hs = dofile({json.dumps(str(script))})\n"
                      "print(hs.status)\nprint(hs.message)\n")
    out = subprocess.run(["lua5.4", str(runner)], capture_output=True, text=True, timeout=30, check=True).stdout
    status, message = out.split("\n", 1)
    return status, message.strip()


def kstatus(kube: Kube, *objects: dict) -> list[tuple[str, str]]:
    lines = "".join(json.dumps(o) + "\n" for o in objects)
    done = subprocess.run([str(kube.bindir / "kstatus")], input=lines, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"kstatus exited {done.returncode}: {done.stderr}"
    return [tuple(line.split("\t", 1)) for line in done.stdout.splitlines()]


# kstatus result -> the Argo CD health statuses that mean the same
AGREES = {"Current": {"Healthy", "Suspended"}, "InProgress": {"Progressing"}, "Failed": {"Degraded"}}
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class Row:
    """One object state, the verdicts both tools must give, and (once judged) what they gave."""

    state: str
    kind: str
    body: dict
    kstatus: str
    argo: str
    argo_says: str = ""
    """A fragment the Argo CD message must contain (the deciding reason and message)."""
    missed: str = ""
    """For a live state: what the cluster showed instead when the wait for that state timed out."""
    got: tuple[str, str, str] = ("", "", "")

    def problems(self) -> list[str]:
        ks, argo, message = self.got
        out = [self.missed] if self.missed else []
        if ks != self.kstatus:
            out.append(f"kstatus {ks}, expected {self.kstatus}")
        if argo != self.argo:
            out.append(f"Argo CD {argo} ({message}), expected {self.argo}")
        if self.argo_says not in message:
            out.append(f"Argo CD message {message!r} lacks {self.argo_says!r}")
        if argo not in AGREES.get(ks, set()):
            out.append(f"they disagree: kstatus {ks} vs Argo CD {argo}")
        return out


def synthetic(body: dict, phase: Phase, reason: str, message: str) -> dict:
    """`body` with the status the operator writes for `phase` and `reason` (cardpool.api.phases)."""
    generation = body["metadata"]["generation"]
    conditions = conditions_for_phase([], phase, reason, message, NOW, generation)
    return {**body, "status": {"phase": phase.value, "observedGeneration": generation,
                               "conditions": [c.wire() for c in conditions]}}


def live(kube: Kube, what: str, read: Callable[[], dict], reached: Callable[[dict], bool]) -> tuple[dict, str]:
    """The object once it shows `what`; after the deadline, as it is, with what it showed instead."""
    def check() -> dict:
        body = read()
        if not reached(body):
            raise NotYet(json.dumps(body.get("status", {}).get("conditions", []))[:600])
        return body

    try:
        return wait_for(what, check, timeout=STATE_TIMEOUT), ""
    except WaitTimeout as exc:
        return read(), str(exc)


def phase_is(phase: str) -> Callable[[dict], bool]:
    return lambda body: (body.get("status") or {}).get("phase") == phase


def stalled_by(reason: str) -> Callable[[dict], bool]:
    return lambda body: any(c["type"] == "Stalled" and c["status"] == "True" and c["reason"] == reason
                            for c in (body.get("status") or {}).get("conditions", []))


STATE_TIMEOUT = 30


def test_kstatus_and_argo_cd_agree_on_every_state_of_every_kind(kube: Kube, namespace: str, pool: str,
                                                                 tmp_path: Path) -> None:
    """A table: object state -> kstatus -> Argo CD, over live objects where the operator can produce the state
    and statuses written as cardpool.api.phases writes them for the rest."""
    custom = client.CustomObjectsApi(kube.api)
    small = {"spec.workers.size": {"min": 1, "max": 1}}
    a100 = {"spec.placement.accelerators": ["A100"]}
    jobs = {
        "running": submit(kube, namespace, pool, TORCH, **small, **a100),
        "done": submit(kube, namespace, pool, TORCH, **small, **{"metadata.name": "done"}),
        "failed": submit(kube, namespace, pool, TORCH, **small, **{"metadata.name": "failed"}),  # exit 2: Fail
    }
    for name in jobs.values():
        wait_phase(kube, namespace, name, "Running")
    jobs |= {
        # all four A100 nodes, one of which `running` holds: it waits (no move frees a whole A100 node)
        "queued": submit(kube, namespace, pool, TORCH, **a100, **{"metadata.name": "queued"}),
        # no node has 1000 CPUs: the gang's pods stay Pending until the startup timeout
        "starting": submit(kube, namespace, pool, TORCH, **small, **{
            "metadata.name": "starting", "spec.startupTimeoutSeconds": 3600,
            "spec.workers.template.spec.containers.0.resources": {"requests": {"cpu": "1000"}}}),
        "suspended": submit(kube, namespace, pool, TORCH, **small, **{"metadata.name": "suspended",
                                                                      "spec.suspend": True}),
        "no-pool": submit(kube, namespace, f"{pool}-missing", TORCH, **small, **{"metadata.name": "no-pool"}),
        "too-big": submit(kube, namespace, pool, TORCH, **{"metadata.name": "too-big",
                                                           "spec.workers.size": {"min": 100, "max": 100}}),
    }
    empty_pool = edit(example(POOL), {"metadata.name": f"{pool}-empty", "spec.nodeGroups": [
        {**example(POOL)["spec"]["nodeGroups"][0], "name": "nowhere",
         "nodeSelector": {"cardpool.io/e2e-no-such-label": "x"}}]})
    # as the API server serves them before the operator writes anything: the CRDs default status to
    # {observedGeneration: 0} (cardpool.api.crdgen.status_schema)
    created = {"TrainingJob": custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", edit(
                   example(TORCH), {"spec.pool": pool, "metadata.name": "fresh", "spec.suspend": True, **small})),
               "CardPool": custom.create_cluster_custom_object(GROUP, VERSION, "cardpools", empty_pool)}
    queues = {f"{pool}-q": {"quotas": [{"model": "H800", "guaranteed": 8}]},
              f"{pool}-q-orphan": {"parent": f"{pool}-q-nobody"}}
    try:
        faults.complete_pod(kube.core, namespace, f"{jobs['done']}-a1-0")
        faults.fail_pod(kube.core, namespace, f"{jobs['failed']}-a1-0", exit_code=2)

        def job(key: str) -> Callable[[], dict]:
            return lambda: get_job(kube, namespace, jobs[key])

        def cardpool(name: str) -> Callable[[], dict]:
            return lambda: custom.get_cluster_custom_object(GROUP, VERSION, "cardpools", name)

        def tenantqueue(name: str) -> Callable[[], dict]:
            return lambda: custom.get_cluster_custom_object(GROUP, VERSION, "tenantqueues", name)

        rows: list[Row] = []
        for key, state, reached, ks, argo, says in [
            ("running", "Running", phase_is("Running"), "Current", "Healthy", "Running ("),
            ("done", "Succeeded", phase_is("Succeeded"), "Current", "Healthy", "Succeeded ("),
            ("failed", "Failed (exit code 2, a Fail rule)", phase_is("Failed"), "Failed", "Degraded", "Failed ("),
            ("queued", "Queued behind a running job", phase_is("Queued"), "InProgress", "Progressing", "Queued ("),
            ("starting", "Starting (pods Pending)", phase_is("Starting"), "InProgress", "Progressing", "Starting ("),
            ("suspended", "Suspended", phase_is("Suspended"), "Current", "Suspended", "Suspended ("),
            ("no-pool", "naming a missing pool", stalled_by("PoolNotFound"), "Failed", "Degraded", "(PoolNotFound: "),
            ("too-big", "bigger than the pool", stalled_by("Unplaceable"), "Failed", "Degraded", "(Unplaceable: "),
        ]:
            body, missed = live(kube, f"TrainingJob {jobs[key]}: {state}", job(key), reached)
            rows.append(Row(f"live job: {state}", "TrainingJob", body, ks, argo, says, missed))
        body, missed = live(kube, f"CardPool {pool}: Ready", cardpool(pool), lambda b: any(
            c["type"] == "Ready" and c["status"] == "True" for c in (b.get("status") or {}).get("conditions", [])))
        rows.append(Row("live pool: every group has nodes", "CardPool", body, "Current", "Healthy",
                        "NodesObserved: ", missed))
        pool_body = body
        body, missed = live(kube, f"CardPool {pool}-empty: Stalled", cardpool(f"{pool}-empty"),
                            stalled_by("GroupWithoutNodes"))
        rows.append(Row("live pool: a group no node matches", "CardPool", body, "Failed", "Degraded",
                        "GroupWithoutNodes: no node matches the selector of group(s) nowhere", missed))

        for name, spec in queues.items():
            custom.create_cluster_custom_object(GROUP, VERSION, "tenantqueues", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "TenantQueue", "metadata": {"name": name}, "spec": spec})
        body, missed = live(kube, f"TenantQueue {pool}-q: Ready", tenantqueue(f"{pool}-q"), lambda b: any(
            c["type"] == "Ready" and c["status"] == "True" for c in (b.get("status") or {}).get("conditions", [])))
        rows.append(Row("live queue: usable", "TenantQueue", body, "Current", "Healthy", "Admitting: ", missed))
        body, missed = live(kube, f"TenantQueue {pool}-q-orphan: Stalled", tenantqueue(f"{pool}-q-orphan"),
                            stalled_by("InvalidSpec"))
        rows.append(Row("live queue: its parent does not exist", "TenantQueue", body, "Failed", "Degraded",
                        f"InvalidSpec: spec.parent: no TenantQueue named {pool}-q-nobody", missed))

        running = rows[0].body
        for phase in Phase:  # every phase as the operator writes it, Restarting included
            ks = KSTATUS[phase]
            argo = {"Current": "Suspended" if phase == Phase.SUSPENDED else "Healthy", "InProgress": "Progressing",
                    "Failed": "Degraded"}[ks]
            rows.append(Row(f"job {phase.value}", "TrainingJob", synthetic(running, phase, "Why", "because"), ks,
                            argo, f"{phase.value} (Why: because)"))
            for reason in sorted(NEEDS_A_PERSON):  # a person must act, whatever the phase
                rows.append(Row(f"job {phase.value}, {reason}", "TrainingJob",
                                synthetic(running, phase, reason, "a person must act"), "Failed", "Degraded",
                                f"{phase.value} ({reason}: a person must act)"))
        for kind, body in (("TrainingJob", running), ("CardPool", pool_body)):
            meta = body["metadata"]
            rows.append(Row(f"{kind} whose latest spec the operator has not seen", kind,
                            {**body, "metadata": {**meta, "generation": meta["generation"] + 1}},
                            "InProgress", "Progressing", "has not seen the latest spec"))
        for kind, body in created.items():
            status = body.get("status") or {}
            assert status.get("observedGeneration") == 0 and not status.get("conditions"), (kind, status)
            rows.append(Row(f"live {kind} as created, before the operator writes", kind, body, "InProgress",
                            "Progressing", "has not seen the latest spec"))
        unready = [{"type": "Ready", "status": "False", "reason": "GroupWithoutNodes", "message": "no node"}]
        rows.append(Row("pool Ready=False, not Stalled (an older operator's status)", "CardPool",
                        {**pool_body, "status": {**pool_body["status"], "conditions": unready}},
                        "InProgress", "Progressing", "GroupWithoutNodes: no node"))

        verdicts = kstatus(kube, *(r.body for r in rows))
        for row, (ks, _) in zip(rows, verdicts, strict=True):
            row.got = (ks, *argo_health(row.kind, row.body, tmp_path))
        table = "\n".join(f"{'FAIL' if r.problems() else 'ok  '} {r.kind:<11} {r.state:<58} -> {r.got[0]:<10} "
                          f"-> {r.got[1]:<11} {'; '.join(r.problems())}" for r in rows)
        assert not [r for r in rows if r.problems()], "state -> kstatus -> Argo CD:\n" + table
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "cardpools", f"{pool}-empty")
        for name in queues:
            with contextlib.suppress(ApiException):  # not created if the test failed before
                custom.delete_cluster_custom_object(GROUP, VERSION, "tenantqueues", name)


def test_an_applied_job_shows_no_drift_once_the_operator_has_reconciled(kube: Kube, namespace: str,
                                                                        pool: str, tmp_path: Path) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(edit(example(TORCH), {"spec.pool": pool, "metadata.namespace": namespace})))
    kube.run("apply", "-f", str(manifest))
    wait_phase(kube, namespace, example(TORCH)["metadata"]["name"], "Running")
    diff = kube.run("diff", "-f", str(manifest), check=False)
    assert diff.returncode == 0, diff.stdout  # 1 would mean drift
    kube.run("apply", "--server-side", "--force-conflicts", "-f", str(manifest))
    diff = kube.run("diff", "--server-side", "--force-conflicts", "-f", str(manifest), check=False)
    assert diff.returncode == 0, diff.stdout


@pytest.mark.parametrize(("overlay", "replicas"), [("manifests", 2), ("manifests/overlays/dev", 1),
                                                   ("manifests/overlays/ha", 3)])
def test_the_kustomize_base_and_overlays_build(kube: Kube, overlay: str, replicas: int) -> None:
    objects = list(yaml.safe_load_all(kube.run("kustomize", str(REPO / overlay)).stdout))
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "Namespace",
                     "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount",
                     "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == replicas
    # the status-writers policy names the very ServiceAccount the build installs and the operator runs as
    account = next(o["metadata"] for o in objects if o["kind"] == "ServiceAccount")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["name"]
    assert deployment["metadata"]["namespace"] == account["namespace"]
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ValidatingAdmissionPolicy"}
    bindings = {o["spec"]["policyName"] for o in objects if o["kind"] == "ValidatingAdmissionPolicyBinding"}
    assert sorted(policies) == sorted(bindings) == ["status-writers.cardpool.io", "trainer-progress.cardpool.io",
                                                    "trainingjob-accelerators.cardpool.io"]
    writer = {v["name"]: v["expression"] for v in policies["status-writers.cardpool.io"]["spec"]["variables"]}
    assert writer["operator"] == f"'system:serviceaccount:{account['namespace']}:{account['name']}'"
