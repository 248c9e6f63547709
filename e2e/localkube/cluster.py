"""Start, check and stop the local control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, as processes on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .config import KWOK_CONFIG, Ports, bindir, default_state_dir
from .pki import Pki
from .processes import ProcessDied, ProcessTable
from .waiting import wait_for

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# KWOK manages only nodes carrying this label. A label (not an annotation) because KWOK filters labels on the
# server: a node whose label changes drops out of KWOK's watch, KWOK releases its lease and stops renewing
# it, which is how faults.vanish_node() simulates a lost machine. (With an annotation selector KWOK filters
# on the client and keeps renewing the lease of a node that no longer matches.)
KWOK_NODE_LABEL = ("kwok.x-k8s.io/node", "fake")
NODE_LEASE_SECONDS = 40
NODE_MONITOR_GRACE = "40s"
START_TIMEOUT = 120.0
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
"""
"""Who wrote what, when, as the API server saw it (user agent included): how the chaos tests count a
replica's writes after it lost its lease. Metadata only, writes only: reads are most requests."""


@dataclass
class Cluster:
    state_dir: Path = field(default_factory=default_state_dir)
    ports: Ports = field(default_factory=Ports)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def pki(self) -> Pki:
        return Pki(self.state_dir / "pki")

    @property
    def processes(self) -> ProcessTable:
        return ProcessTable(self.state_dir)

    # ---- queries -------------------------------------------------------------------------------------

    def is_up(self) -> bool:
        """Every control-plane process we recorded is alive and the API server is ready."""
        recorded = {p.name: p for p in self.processes.load()}
        if not all(name in recorded and recorded[name].alive() for name in CONTROL_PLANE):
            return False
        try:
            return self._get(f"{self.server}/readyz", self._client_tls()) == "ok"
        except OSError:
            return False

    def memory(self) -> dict[str, int]:
        """Resident memory (bytes) of each running process we started."""
        return {p.name: p.rss_bytes() for p in self.processes.load() if p.alive()}

    # ---- lifecycle -----------------------------------------------------------------------------------

    def up(self, log=print) -> dict[str, float]:
        """Start the control plane unless it is already up. Returns seconds per start step (empty if reused)."""
        if self.is_up():
            log(f"cluster already up ({self.server}); kubeconfig {self.kubeconfig}")
            return {}
        self.down(log=lambda *_: None)  # leftovers of a half-started or crashed cluster
        self._check_ports_free()
        bins = bindir()
        started = time.monotonic()
        timings: dict[str, float] = {}

        self.pki.ensure()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for client in ("admin", "controller-manager", "scheduler", "kwok"):
            path = self.kubeconfig if client == "admin" else self.state_dir / f"{client}.kubeconfig"
            path.write_text(self.pki.kubeconfig(client, self.server))
            path.chmod(0o600)
        # A fresh etcd every start: a started cluster is always the same clean cluster.
        shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)

        for name, args in self._commands(bins):
            step = time.monotonic()
            proc = self.processes.start(name, args)
            self._wait_healthy(name, proc)
            timings[name] = round(time.monotonic() - step, 2)
            log(f"{name} ready in {timings[name]:.1f}s")

        step = time.monotonic()
        kubectl = str(bins / "kubectl")
        # The service-account controller creates "default" in each namespace; pods are rejected before it.
        wait_for(
            "the default ServiceAccount in namespace default (kube-controller-manager's serviceaccount controller)",
            lambda: subprocess.run([kubectl, "--kubeconfig", str(self.kubeconfig), "get", "serviceaccount",
                                    "default", "-n", "default"], capture_output=True).returncode == 0,
            timeout=START_TIMEOUT,
        )
        timings["service-accounts"] = round(time.monotonic() - step, 2)
        timings["total"] = round(time.monotonic() - started, 2)
        log(f"cluster up in {timings['total']:.1f}s: {self.server}; kubeconfig {self.kubeconfig}")
        return timings

    def down(self, log=print) -> None:
        stopped = self.processes.stop_all()
        log(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")

    # ---- faults of the control plane (the chaos tests) -------------------------------------------------

    def kill(self, name: str) -> None:
        """SIGKILL one control-plane process (its state stays: etcd's data, the certificates)."""
        if name not in CONTROL_PLANE:
            raise ValueError(f"{name} is not one of {CONTROL_PLANE}")
        if not self.processes.stop(name, signal.SIGKILL):
            raise RuntimeError(f"{name} was not running")

    def start(self, name: str) -> float:
        """Start one control-plane process again with its usual command; returns seconds until healthy."""
        started = time.monotonic()
        args = dict(self._commands(bindir()))[name]
        self._wait_healthy(name, self.processes.start(name, args))
        return time.monotonic() - started

    def heal(self) -> list[str]:
        """After a chaos test, whatever happened in it: every control-plane process running and not stopped.
        Returns the ones it had to start."""
        started = []
        for name in CONTROL_PLANE:
            entry = self.processes.get(name)
            if entry is not None and entry.alive():
                self.resume(name)  # a no-op unless it was left stopped
            else:
                self.start(name)
                started.append(name)
        return started

    def pause(self, name: str) -> None:
        """SIGSTOP: the process keeps its sockets open and answers nothing (a hung server, not a dead one)."""
        self._signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self._signal(name, signal.SIGCONT)

    def _signal(self, name: str, sig: signal.Signals) -> None:
        entry = self.processes.get(name)
        if entry is None or not entry.alive():
            raise RuntimeError(f"{name} is not running")
        os.kill(entry.pid, sig)

    @property
    def audit_log(self) -> Path:
        """The API server's audit log: one JSON line per write request (see AUDIT_POLICY)."""
        return self.state_dir / "logs" / "audit.log"

    # ---- internals -----------------------------------------------------------------------------------

    def _commands(self, bins: Path) -> list[tuple[str, list[str]]]:
        d, p, pki = self.state_dir, self.ports, self.pki
        etcd_url = f"http://127.0.0.1:{p.etcd_client}"
        return [
            ("etcd", [
                str(bins / "etcd"), "--name=cardpool", f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-cluster=cardpool=http://127.0.0.1:{p.etcd_peer}",
                "--unsafe-no-fsync", "--log-level=warn", "--quota-backend-bytes=4294967296",
            ]),
            ("kube-apiserver", [
                str(bins / "kube-apiserver"), f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={p.apiserver}",
                f"--tls-cert-file={pki.cert('apiserver')}", f"--tls-private-key-file={pki.key('apiserver')}",
                f"--client-ca-file={pki.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}", f"--service-account-signing-key-file={pki.sa_key}",
                "--service-cluster-ip-range=10.96.0.0/16", "--authorization-mode=Node,RBAC",
                "--endpoint-reconciler-type=none", "--profiling=false", "--v=1",
                f"--audit-policy-file={self._audit_policy()}", f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json", "--audit-log-maxsize=100", "--audit-log-maxbackup=1",
            ]),
            ("kube-controller-manager", [
                str(bins / "kube-controller-manager"), f"--kubeconfig={d / 'controller-manager.kubeconfig'}",
                "--controllers=*", "--use-service-account-credentials", "--leader-elect=false",
                "--bind-address=127.0.0.1", f"--secure-port={p.controller_manager}",
                f"--root-ca-file={pki.ca_cert}", f"--service-account-private-key-file={pki.sa_key}",
                "--node-monitor-period=5s", f"--node-monitor-grace-period={NODE_MONITOR_GRACE}",
                "--profiling=false", "--v=1",
            ]),
            ("kube-scheduler", [
                str(bins / "kube-scheduler"), f"--kubeconfig={d / 'scheduler.kubeconfig'}",
                "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={p.scheduler}",
                "--profiling=false", "--v=1",
            ]),
            ("kwok", [
                str(bins / "kwok"), f"--kubeconfig={d / 'kwok.kubeconfig'}", f"--config={KWOK_CONFIG}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-label-selector={'='.join(KWOK_NODE_LABEL)}",
                f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
                f"--server-address=127.0.0.1:{p.kwok}",
            ]),
        ]

    def _audit_policy(self) -> Path:
        path = self.state_dir / "audit-policy.yaml"
        path.write_text(AUDIT_POLICY)
        return path

    def _health_url(self, name: str) -> tuple[str, ssl.SSLContext | None, str]:
        p = self.ports
        return {
            "etcd": (f"http://127.0.0.1:{p.etcd_client}/health", None, '"health":"true"'),
            "kube-apiserver": (f"{self.server}/readyz", self._client_tls(), "ok"),
            # Their serving certificates are self-signed at start; /healthz needs no credentials.
            "kube-controller-manager": (f"https://127.0.0.1:{p.controller_manager}/healthz", _no_verify(), "ok"),
            "kube-scheduler": (f"https://127.0.0.1:{p.scheduler}/healthz", _no_verify(), "ok"),
            "kwok": (f"http://127.0.0.1:{p.kwok}/healthz", None, "ok"),
        }[name]

    def _wait_healthy(self, name: str, proc: subprocess.Popen) -> None:
        url, tls, expect = self._health_url(name)
        recorded = self.processes.get(name)

        def healthy() -> bool:
            if proc.poll() is not None:
                tail = recorded.log_tail() if recorded else ""
                raise ProcessDied(f"{name} exited with code {proc.returncode}; its log ends:\n{tail}")
            return expect in self._get(url, tls)

        wait_for(f"{name} to answer {url}", healthy, timeout=START_TIMEOUT, interval=0.2, fatal=(ProcessDied,))

    def _client_tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.cert("admin")), str(self.pki.key("admin")))
        return ctx

    @staticmethod
    def _get(url: str, tls: ssl.SSLContext | None) -> str:
        with urllib.request.urlopen(url, context=tls, timeout=5) as resp:
            return resp.read().decode()

    def _check_ports_free(self) -> None:
        import socket

        for name, port in self.ports.all().items():
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError as exc:
                    raise RuntimeError(
                        f"port {port} ({name}) on 127.0.0.1 is taken: another cluster or program uses it; "
                        f"stop it or choose another base (CARDPOOL_PORT_BASE)") from exc


def _no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx

