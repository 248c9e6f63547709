"""Where the local cluster lives (state folder, binaries) and which ports it listens on."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "e2e" / "cluster" / "build-binaries.sh"
KWOK_CONFIG = REPO / "e2e" / "cluster" / "kwok.yaml"
FLEETS = REPO / "e2e" / "fleets"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "kstatus",
            "helm")


@dataclass(frozen=True)
class Ports:
    """Every port the cluster binds, all on 127.0.0.1, derived from one base so two clusters can coexist."""

    base: int = field(default_factory=lambda: int(os.environ.get("CARDPOOL_PORT_BASE", "16440")))

    @property
    def apiserver(self) -> int:
        return self.base

    @property
    def etcd_client(self) -> int:
        return self.base + 1

    @property
    def etcd_peer(self) -> int:
        return self.base + 2

    @property
    def controller_manager(self) -> int:
        return self.base + 3

    @property
    def scheduler(self) -> int:
        return self.base + 4

    @property
    def kwok(self) -> int:
        return self.base + 5

    def all(self) -> dict[str, int]:
        names = ("apiserver", "etcd_client", "etcd_peer", "controller_manager", "scheduler", "kwok")
        return {name: getattr(self, name) for name in names}


def default_state_dir() -> Path:
    return Path(os.environ.get("CARDPOOL_CLUSTER_DIR", REPO / ".cluster")).resolve()


def bindir() -> Path:
    """The folder of the built binaries: $CARDPOOL_BINDIR, or the cached build (built first if missing)."""
    if env := os.environ.get("CARDPOOL_BINDIR"):
        path = Path(env)
    else:
        out = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
        path = Path(out.stdout.strip().splitlines()[-1])
    missing = [b for b in BINARIES if not (path / b).exists()]
    if missing:
        raise FileNotFoundError(f"{path} lacks {', '.join(missing)}; run e2e/cluster/build-binaries.sh")
    return path


def openssl() -> str:
    found = shutil.which("openssl")
    if not found:
        raise FileNotFoundError("openssl is not installed (apt-get install openssl)")
    return found
