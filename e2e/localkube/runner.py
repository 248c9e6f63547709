"""A kubelet without containers, for tests: runs the trainer container of each Running pod that asks for it
(annotation localkube.cardpool.io/run=process) as a local process with the pod's env, and plays the
kubelet's part around it:
- the process's exit turns the pod Succeeded or Failed with its exit code (through KWOK's stages);
- deleting the pod sends SIGTERM; the pod is removed once the process has ended, or killed after the pod's
  grace period (KWOK leaves these pods to the runner);
- a node that turns NotReady kills the processes on it, and like a dead kubelet the runner then never
  confirms the deletion of its pods;
- when the runner stops, it removes its pods being deleted and hands the others back to KWOK.
Each process authenticates with a token bound to its pod (TokenRequest), as a ServiceAccount token mounted
in a real pod does, so RBAC and admission apply to the trainer exactly as in a cluster.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import faults
from .config import REPO

ANNOTATION = "localkube.cardpool.io/run"
log = logging.getLogger("localkube.runner")


@dataclass
class Run:
    pod: str
    uid: str
    node: str
    proc: subprocess.Popen
    output: Path
    grace: int
    term_sent_at: float | None = None
    node_dead: bool = False


@dataclass
class Runner:
    core: client.CoreV1Api
    namespace: str
    workdir: Path
    server: str
    ca_file: str
    interval: float = 0.2
    runs: dict[str, Run] = field(default_factory=dict)
    finished: dict[str, Run] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="localkube-runner", daemon=True)

    def __enter__(self) -> Runner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for run in self.runs.values():
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait(timeout=10)
        # KWOK leaves the deletion of these pods to the runner: once it is gone, nobody would end them. A pod
        # deleted later (say the operator stops the other ranks of a job that just succeeded, a moment after the
        # test's last wait) would stay Terminating for ever, and the namespace's teardown would wait in vain.
        # So each pod is removed if it is being deleted, and otherwise handed back to KWOK.
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            if (pod.metadata.annotations or {}).get(ANNOTATION) != "process":
                continue
            if pod.metadata.deletion_timestamp:
                self._remove(pod)
            else:
                self._hand_back(pod)

    def outputs(self, pod_prefix: str) -> list[tuple[str, str]]:
        """(pod, stdout) of every process whose pod name starts with the prefix."""
        every = {**self.finished, **self.runs}
        return [(r.pod, r.output.read_text()) for r in every.values() if r.pod.startswith(pod_prefix)]

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._step()
            except Exception as exc:  # a test reads these: a runner that stops silently would look like a hang
                log.exception("runner step failed")
                self.errors.append(repr(exc))

    def _step(self) -> None:
        ready = {n.metadata.name: next((c.status for c in n.status.conditions or [] if c.type == "Ready"), "Unknown")
                 for n in self.core.list_node().items}
        pods = {p.metadata.uid: p for p in self.core.list_namespaced_pod(self.namespace).items
                if (p.metadata.annotations or {}).get(ANNOTATION) == "process"}
        for uid, run in list(self.runs.items()):
            pod = pods.get(uid)
            if ready.get(run.node) != "True" and not run.node_dead:
                run.node_dead = True  # the machine is gone: its processes die with it
                if run.proc.poll() is None:
                    run.proc.kill()
            code = run.proc.poll()
            if run.node_dead:
                if code is not None:
                    self.finished[uid] = self.runs.pop(uid)
                continue  # a dead kubelet reports nothing and confirms no deletion
            if pod is None:
                if code is None:
                    run.proc.kill()
                    run.proc.wait(timeout=10)
                self.finished[uid] = self.runs.pop(uid)
            elif pod.metadata.deletion_timestamp is not None:
                if code is None and run.term_sent_at is None:
                    run.term_sent_at = time.monotonic()
                    run.proc.send_signal(signal.SIGTERM)
                elif code is None and time.monotonic() - run.term_sent_at > run.grace:
                    run.proc.kill()
                elif code is not None:
                    self._remove(pod)
                    self.finished[uid] = self.runs.pop(uid)
            elif code is not None:
                if code == 0:
                    faults.complete_pod(self.core, self.namespace, pod.metadata.name)
                else:
                    faults.fail_pod(self.core, self.namespace, pod.metadata.name, exit_code=code)
                self.finished[uid] = self.runs.pop(uid)
        for uid, pod in pods.items():
            if uid in self.runs:
                continue
            node_up = ready.get(pod.spec.node_name or "") == "True"
            if pod.metadata.deletion_timestamp is not None:
                if node_up or not pod.spec.node_name:
                    self._remove(pod)  # no process (any more): nothing to wait for
            elif uid not in self.finished and pod.status.phase == "Running" and node_up:
                self.runs[uid] = self._start(pod)

    def _hand_back(self, pod: client.V1Pod) -> None:
        """KWOK plays the pod's kubelet from now on, deletion included (the annotation is what kept it away)."""
        try:
            self.core.patch_namespaced_pod(pod.metadata.name, self.namespace,
                                           {"metadata": {"annotations": {ANNOTATION: None}}})
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _remove(self, pod: client.V1Pod) -> None:
        try:
            self.core.delete_namespaced_pod(pod.metadata.name, self.namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _start(self, pod: client.V1Pod) -> Run:
        name = pod.metadata.name
        container = pod.spec.containers[0]
        env = {e.name: e.value or "" for e in container.env or []}
        env |= {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO / "operator"),
                "KUBECONFIG": str(self._kubeconfig(pod)), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable if c in ("python", "python3") else c
                   for c in [*(container.command or []), *(container.args or [])]]
        output = self.workdir / f"{name}.out"
        with open(output, "w") as out:
            proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        log.info("started %s on %s: %s", name, pod.spec.node_name, " ".join(command))
        return Run(name, pod.metadata.uid, pod.spec.node_name, proc, output,
                   pod.spec.termination_grace_period_seconds or 30)

    def _kubeconfig(self, pod: client.V1Pod) -> Path:
        """A kubeconfig with a token bound to the pod, as its mounted ServiceAccount token would be."""
        request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=3600,
            bound_object_ref=client.V1BoundObjectReference(api_version="v1", kind="Pod", name=pod.metadata.name,
                                                           uid=pod.metadata.uid)))
        token = self.core.create_namespaced_service_account_token(pod.spec.service_account_name or "default",
                                                                   self.namespace, request).status.token
        path = self.workdir / f"{pod.metadata.name}.kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "pod",
            "clusters": [{"name": "local", "cluster": {"server": self.server, "certificate-authority": self.ca_file}}],
            "users": [{"name": "pod", "user": {"token": token}}],
            "contexts": [{"name": "pod", "context": {"cluster": "local", "user": "pod",
                                                     "namespace": self.namespace}}]}))
        return path
