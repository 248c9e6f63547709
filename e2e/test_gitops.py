"""GitOps on the real local cluster: kstatus (sigs.k8s.io/cli-utils, built from e2e/kstatus) and the Argo CD
health checks (manifests/argocd/, in a real Lua interpreter) over the statuses of live jobs in every phase
and of a pool, and `kubectl diff` of an applied manifest shows no drift once the operator has reconciled
(it writes only status)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from cardpool.api.keys import GROUP, VERSION
from jobs import TORCH, get_job, make_pool, submit, wait_phase
from localkube import faults
from localkube.config import REPO
from localkube.testing import Kube
from manifests import edit, example

HEALTH = yaml.safe_load((REPO / "manifests" / "argocd" / "argocd-cm-health.yaml").read_text())["data"]


@pytest.fixture
def pool(kube: Kube, operator: Any, namespace: str) -> Iterator[str]:
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


def test_kstatus_and_argo_cd_read_jobs_in_every_phase_and_the_pool(kube: Kube, namespace: str, pool: str,
                                                                   tmp_path: Path) -> None:
    small = {"spec.workers.size": {"min": 1, "max": 1}}
    running = submit(kube, namespace, pool, TORCH, **small)
    done = submit(kube, namespace, pool, TORCH, **small, **{"metadata.name": "done"})
    failed = submit(kube, namespace, pool, TORCH, **small, **{"metadata.name": "failed"})  # exit 2: Fail rule
    queued = submit(kube, namespace, pool, TORCH, **{"metadata.name": "queued",
                                                     "spec.workers.size": {"min": 100, "max": 100}})
    suspended = submit(kube, namespace, pool, TORCH, **small, **{"metadata.name": "suspended", "spec.suspend": True})
    for name in (running, done, failed):
        wait_phase(kube, namespace, name, "Running")
    faults.complete_pod(kube.core, namespace, f"{done}-a1-0")
    faults.fail_pod(kube.core, namespace, f"{failed}-a1-0", exit_code=2)
    expected = {running: ("Running", "Healthy"), done: ("Succeeded", "Healthy"), failed: ("Failed", "Degraded"),
                queued: ("Queued", "Progressing"), suspended: ("Suspended", "Suspended")}
    # kstatus: Current once reconciled and settled; InProgress while it works toward the spec; Failed when
    # the job failed (Stalled); a suspended job is Current (settled as asked)
    kstatus_of = {"Running": "Current", "Succeeded": "Current", "Failed": "Failed", "Queued": "InProgress",
                  "Suspended": "Current"}
    for name, (phase, health) in expected.items():
        wait_phase(kube, namespace, name, phase)
        body = get_job(kube, namespace, name)
        status, message = argo_health("TrainingJob", body, tmp_path)
        assert (status, message.split(" ")[0]) == (health, phase), message
        assert kstatus(kube, body)[0][0] == kstatus_of[phase], (phase, kstatus(kube, body))
    fresh = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob", "metadata": {"generation": 1}}
    assert argo_health("TrainingJob", fresh, tmp_path)[0] == "Progressing"
    body = client.CustomObjectsApi(kube.api).get_cluster_custom_object(GROUP, VERSION, "cardpools", pool)
    assert argo_health("CardPool", body, tmp_path)[0] == "Healthy"
    assert kstatus(kube, body)[0][0] == "Current"
    stale = {**body, "metadata": {**body["metadata"], "generation": body["metadata"]["generation"] + 1}}
    assert kstatus(kube, stale)[0][0] == "InProgress"  # the operator has not seen the latest spec
    unready = {**body, "status": {**body["status"], "conditions": [
        {"type": "Ready", "status": "False", "reason": "GroupWithoutNodes", "message": "no node matches"}]}}
    assert argo_health("CardPool", unready, tmp_path) == ("Degraded", "GroupWithoutNodes: no node matches")


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
                     "Role", "RoleBinding", "ServiceAccount", "ValidatingAdmissionPolicy",
                     "ValidatingAdmissionPolicyBinding"]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == replicas
