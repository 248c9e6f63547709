"""kubectl finds `kubectl cardpool` on PATH as pip puts it there (a console script in a bin folder: pip install
--user's ~/.local/bin, or pipx's links), and passes its arguments and the kubeconfig through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from localkube.config import bindir
from localkube.testing import Kube


def test_kubectl_runs_cardpool_as_a_plugin(kube: Kube, crds: list[str], namespace: str, tmp_path: Path) -> None:
    bin_ = tmp_path / "bin"  # only the plugin, as ~/.local/bin would hold it
    bin_.mkdir()
    (bin_ / "kubectl-cardpool").symlink_to(Path(sys.executable).parent / "kubectl-cardpool")
    env = {**os.environ, "PATH": f"{bin_}:{bindir()}:/usr/bin:/bin", "KUBECONFIG": str(kube.kubeconfig)}

    def kubectl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env, timeout=120)

    listed = kubectl("plugin", "list")
    assert str(bin_ / "kubectl-cardpool") in listed.stdout, listed.stdout + listed.stderr
    version = kubectl("cardpool", "version")
    assert version.returncode == 0 and version.stdout.startswith("cardpool "), version.stdout + version.stderr
    usage = kubectl("cardpool", "--help")
    assert usage.returncode == 0 and usage.stdout.startswith("usage: kubectl cardpool "), usage.stdout
    # a command that talks to the cluster, through the KUBECONFIG kubectl was given
    jobs = kubectl("cardpool", "jobs", "-n", namespace, "-o", "json")
    assert jobs.returncode == 0 and json.loads(jobs.stdout) == [], jobs.stdout + jobs.stderr
    elsewhere = kubectl("cardpool", "jobs", "-n", namespace, "--kubeconfig", str(tmp_path / "none"))
    assert elsewhere.returncode == 1, elsewhere.stdout + elsewhere.stderr  # the flag wins over KUBECONFIG
