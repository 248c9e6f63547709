"""kubectl finds `kubectl cardpool` on PATH as pip puts it there (a console script in a bin folder: pip install
--user's ~/.local/bin, or pipx's links), and passes its arguments and the kubeconfig through; and as krew
installs it from packaging/krew's archive (which fetches the pinned wheels from PyPI, as `make image` does)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

from localkube.config import REPO, bindir
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


def test_the_krew_archive_runs_as_krew_installs_it(kube: Kube, crds: list[str], namespace: str,
                                                  tmp_path: Path) -> None:
    """packaging/krew/build.py's archive unpacked and linked as krew does (its store, a link in ~/.krew/bin), run
    by this machine's python3 with nothing of the checkout or its venv on PATH or sys.path."""
    spec = importlib.util.spec_from_file_location("krew_build", REPO / "packaging" / "krew" / "build.py")
    krew = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(krew)
    uri = "https://releases.example/cardpool/v0.1.0/cardpool-linux-amd64.tar.gz"
    archive, manifest = krew.build(uri, "https://cardpool.example", tmp_path / "dist")
    plugin = yaml.safe_load(manifest.read_text())
    assert plugin["kind"] == "Plugin" and plugin["metadata"]["name"] == "cardpool"
    [platform] = plugin["spec"]["platforms"]
    assert platform["uri"] == uri and platform["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert plugin["spec"]["version"].startswith("v") and "$" not in manifest.read_text()

    store, bin_ = tmp_path / "store", tmp_path / "krew-bin"
    store.mkdir()
    bin_.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(store, filter="data")
    (bin_ / "kubectl-cardpool").symlink_to(store / platform["bin"])
    env = {"PATH": f"{bin_}:{bindir()}:/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(kube.kubeconfig)}

    def kubectl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env, timeout=120)

    version = kubectl("cardpool", "version")
    assert version.returncode == 0 and version.stdout.startswith("cardpool "), version.stdout + version.stderr
    jobs = kubectl("cardpool", "jobs", "-n", namespace, "-o", "json")
    assert jobs.returncode == 0 and json.loads(jobs.stdout) == [], jobs.stdout + jobs.stderr
    usage = kubectl("cardpool", "--help")
    assert usage.stdout.startswith("usage: kubectl cardpool "), usage.stdout + usage.stderr
