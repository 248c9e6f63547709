"""The operator image as a real container on this machine.

`build_image()` makes it (image/build.sh, cached by its inputs) and loads it into podman. `PodContainer` runs a
Pod object's container from its image as a kubelet would: the pod's image, command and args, env (fieldRefs
resolved from the pod), user and group, read-only root, capabilities, no privilege escalation, CPU and memory
limits, emptyDir volumes, and the ServiceAccount's token (a TokenRequest bound to the pod, as the kubelet's
projected token is), the cluster's CA (the namespace's kube-root-ca.crt) and the namespace mounted read-only at
/var/run/secrets/kubernetes.io/serviceaccount, with KUBERNETES_SERVICE_HOST/PORT set. What a pod spec asks that
is not carried over (other volume kinds, envFrom, more containers) is refused rather than left out.

Where it differs from a kubelet: the network is the host's, since the local API server listens on 127.0.0.1
only; so the pod's ports are this host's, and a machine-wide lock lets one such container run at a time
(several test sessions share this machine).

podman runs with runc and explicit rlimits here. Debian's default runtime, crun, refuses this machine kind's
cgroup layout: "crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2" (cgroup v1
controllers, with hugetlb left in the unified hierarchy). And podman's default limits are above the hard
limits, which root cannot raise here (its capabilities lack CAP_SYS_RESOURCE): RLIMIT_NOFILE 1048576 gives
"crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted", and podman lowers its own RLIMIT_NPROC to 32768
before it starts the runtime, so the container's may not exceed that.
"""

from __future__ import annotations

import fcntl
import json
import resource
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from kubernetes import client
from kubernetes.utils import parse_quantity

from .config import REPO
from .testing import Kube
from .waiting import NotYet, wait_for

PODMAN = ("podman", "--runtime", "runc")
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
HOST_NETWORK_LOCK = Path(tempfile.gettempdir()) / "cardpool-host-network-container.lock"
TOKEN_SECONDS = 3607  # the kubelet's projected token lifetime
NPROC = 32768  # podman's own RLIMIT_NPROC, the most its containers may have


@dataclass(frozen=True)
class Image:
    name: str
    archive: Path
    size: str
    digest: str


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def build_image() -> Image:
    """The operator image of this checkout (built when its inputs changed), present in podman's storage."""
    out = subprocess.run(["bash", str(REPO / "image" / "build.sh")], stdout=subprocess.PIPE, text=True, check=True,
                         timeout=1800)
    fields = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    image = Image(fields["image"], Path(fields["archive"]), fields["size"], fields["digest"])
    if podman("image", "exists", image.name, check=False).returncode != 0:
        podman("load", "--quiet", "--input", str(image.archive))
    return image


def image_config(name: str) -> dict:
    """The image's OCI config (User, Env, Entrypoint, Cmd, ...)."""
    return json.loads(podman("image", "inspect", name).stdout)[0]["Config"]


class PodContainer:
    """`pod`'s one container, run from its image with podman (see the module's doc); a context manager."""

    def __init__(self, kube: Kube, pod: client.V1Pod, workdir: Path, lock_timeout: float = 900):
        if len(pod.spec.containers) != 1 or pod.spec.init_containers:
            raise NotImplementedError(f"pod {pod.metadata.name}: only a pod of one container is run")
        self.kube, self.pod, self.workdir, self.lock_timeout = kube, pod, workdir, lock_timeout
        self.container = pod.spec.containers[0]
        self.name = f"cardpool-e2e-{pod.metadata.name}"
        self._lock: IO[str] | None = None

    @property
    def ports(self) -> dict[str, int]:
        return {p.name: p.container_port for p in self.container.ports or []}

    def __enter__(self) -> PodContainer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def start(self) -> None:
        argv = self.argv()  # refuses what it cannot carry over before anything is held
        self._take_host_network()
        try:
            podman("rm", "--force", "--ignore", self.name)
            podman("run", "--detach", "--name", self.name, *argv)
        except BaseException:
            self._release_host_network()
            raise

    def argv(self) -> list[str]:
        """podman run's arguments after --name: options, image, then the command line."""
        pod, c = self.pod, self.container
        options = ["--network", "host", "--ulimit", f"nofile={_hard(resource.RLIMIT_NOFILE)}",
                   "--ulimit", f"nproc={min(_hard(resource.RLIMIT_NPROC), NPROC)}",
                   "--stop-timeout", str(pod.spec.termination_grace_period_seconds or 30)]
        for name, value in self.env().items():
            options += ["--env", f"{name}={value}"]
        options += self._security()
        limits = (c.resources.limits if c.resources else None) or {}
        if "memory" in limits:
            options += ["--memory", str(int(parse_quantity(limits["memory"])))]
        if "cpu" in limits:
            options += ["--cpus", str(float(parse_quantity(limits["cpu"])))]
        options += self._volumes()
        if c.command:
            options += ["--entrypoint", json.dumps(c.command)]
        return [*options, c.image, *(c.args or [])]

    def env(self) -> dict[str, str]:
        """The container's env as the kubelet gives it: the API server's service variables, then its own."""
        server = urlsplit(self.kube.api.configuration.host)
        env = {"KUBERNETES_SERVICE_HOST": server.hostname, "KUBERNETES_SERVICE_PORT": str(server.port),
               "KUBERNETES_SERVICE_PORT_HTTPS": str(server.port)}
        if self.container.env_from:
            raise NotImplementedError(f"pod {self.pod.metadata.name}: envFrom is not carried over")
        for var in self.container.env or []:
            if var.value_from is None:
                env[var.name] = var.value or ""
            elif var.value_from.field_ref is not None:
                env[var.name] = self._field(var.value_from.field_ref.field_path)
            else:
                raise NotImplementedError(f"pod {self.pod.metadata.name}: env {var.name} from {var.value_from}")
        return env

    def _field(self, path: str) -> str:
        pod = self.pod
        fields = {"metadata.name": pod.metadata.name, "metadata.namespace": pod.metadata.namespace,
                  "metadata.uid": pod.metadata.uid, "spec.serviceAccountName": pod.spec.service_account_name,
                  "spec.nodeName": pod.spec.node_name or "", "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1"}
        if path not in fields:
            raise NotImplementedError(f"pod {pod.metadata.name}: fieldRef {path}")
        return fields[path]

    def _security(self) -> list[str]:
        pod_ctx = self.pod.spec.security_context or client.V1PodSecurityContext()
        ctx = self.container.security_context or client.V1SecurityContext()
        uid = ctx.run_as_user if ctx.run_as_user is not None else pod_ctx.run_as_user
        gid = ctx.run_as_group if ctx.run_as_group is not None else pod_ctx.run_as_group
        non_root = ctx.run_as_non_root if ctx.run_as_non_root is not None else pod_ctx.run_as_non_root
        if uid is None:
            user = image_config(self.container.image).get("User", "")
            uid = int(user.split(":")[0]) if user.split(":")[0].isdigit() else None
        if non_root and not uid:  # the kubelet refuses to start it, as here
            raise AssertionError(f"pod {self.pod.metadata.name}: runAsNonRoot, but uid {uid} is root or not numeric")
        options = ["--user", f"{uid}:{gid}" if gid is not None else str(uid)] if uid is not None else []
        if ctx.read_only_root_filesystem:
            options += ["--read-only", "--read-only-tmpfs=false"]  # writable: only what is mounted
        if ctx.allow_privilege_escalation is False:
            options += ["--security-opt", "no-new-privileges"]
        if ctx.privileged:
            options += ["--privileged"]
        for cap in (ctx.capabilities.drop or []) if ctx.capabilities else []:
            options += ["--cap-drop", cap]
        for cap in (ctx.capabilities.add or []) if ctx.capabilities else []:
            options += ["--cap-add", cap]
        seccomp = ctx.seccomp_profile or pod_ctx.seccomp_profile
        if seccomp and seccomp.type == "Unconfined":
            options += ["--security-opt", "seccomp=unconfined"]  # RuntimeDefault is podman's own default
        return options

    def _volumes(self) -> list[str]:
        pod, options = self.pod, []
        volumes = {v.name: v for v in pod.spec.volumes or []}
        for mount in self.container.volume_mounts or []:
            if mount.mount_path == SERVICE_ACCOUNT_DIR:
                continue  # the API server's own projected volume; mounted below as the kubelet does
            volume = volumes[mount.name]
            if volume.empty_dir is None:
                raise NotImplementedError(f"pod {pod.metadata.name}: volume {mount.name} is not an emptyDir")
            source = self.workdir / "volumes" / mount.name
            source.mkdir(parents=True, exist_ok=True)
            source.chmod(0o777)  # as the kubelet makes an emptyDir
            options += ["--volume", f"{source}:{mount.mount_path}:{'ro' if mount.read_only else 'rw'}"]
        if pod.spec.automount_service_account_token is not False:
            options += ["--volume", f"{self._service_account()}:{SERVICE_ACCOUNT_DIR}:ro"]
        return options

    def _service_account(self) -> Path:
        pod, core = self.pod, self.kube.core
        request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=TOKEN_SECONDS,
            bound_object_ref=client.V1BoundObjectReference(api_version="v1", kind="Pod", name=pod.metadata.name,
                                                           uid=pod.metadata.uid)))
        token = core.create_namespaced_service_account_token(pod.spec.service_account_name or "default",
                                                             pod.metadata.namespace, request).status.token
        ca = core.read_namespaced_config_map("kube-root-ca.crt", pod.metadata.namespace).data["ca.crt"]
        folder = self.workdir / "serviceaccount"
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in (("token", token), ("ca.crt", ca), ("namespace", pod.metadata.namespace)):
            (folder / name).write_text(text)
            (folder / name).chmod(0o644)  # readable by the container's user, as the kubelet's defaultMode
        return folder

    def _take_host_network(self) -> None:
        lock = open(HOST_NETWORK_LOCK, "a")  # noqa: SIM115 - held until remove()

        def taken() -> bool:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                raise NotYet(f"{HOST_NETWORK_LOCK} is held by another test's container") from None

        try:
            wait_for("the host network's pod ports to be free of other tests' containers", taken,
                     timeout=self.lock_timeout, interval=2)
        except BaseException:
            lock.close()
            raise
        self._lock = lock
        busy = [f"{name} {port}" for name, port in self.ports.items() if _listening(port)]
        if busy:
            self._release_host_network()
            raise AssertionError(f"pod {self.pod.metadata.name}'s ports are taken on this host: {', '.join(busy)}")

    def _release_host_network(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *argv: str) -> subprocess.CompletedProcess:
        return podman("exec", self.name, *argv, check=False)

    def running(self) -> bool:
        state = podman("inspect", "--format", "{{.State.Status}}", self.name, check=False).stdout.strip()
        return state == "running"

    def stop(self) -> int:
        """SIGTERM, as a deleted pod gets, then SIGKILL after the grace period; the container's exit code."""
        grace = self.pod.spec.termination_grace_period_seconds or 30
        podman("stop", "--time", str(grace), self.name, timeout=grace + 60)
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())

    def remove(self) -> None:
        try:
            podman("rm", "--force", "--ignore", "--time", "5", self.name, timeout=120)
        finally:
            self._release_host_network()


def _hard(limit: int) -> int:
    hard = resource.getrlimit(limit)[1]
    return hard if hard != resource.RLIM_INFINITY else 1 << 20


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0

