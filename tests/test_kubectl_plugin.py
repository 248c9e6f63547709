"""`kubectl cardpool`: the package installs a console script named kubectl-cardpool, which kubectl runs as a
plugin when it is on PATH (e2e/test_kubectl_plugin.py asks a real kubectl), and its usage says what was typed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

from cardpool.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_declares_kubectl_cardpool_as_the_cardpool_command() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-cardpool"] == scripts["cardpool"] == "cardpool.cli.main:main"
    installed = {e.name: e for e in entry_points(group="console_scripts") if e.name.endswith("cardpool")}
    assert installed["kubectl-cardpool"].load() is main.main


def test_the_installed_script_runs_help_as_kubectl_cardpool() -> None:
    script = Path(sys.executable).parent / "kubectl-cardpool"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: kubectl cardpool ") and "jobs" in out.stdout, out.stdout
    plain = subprocess.run([str(script.with_name("cardpool")), "--help"], capture_output=True, text=True, timeout=60)
    assert plain.stdout.startswith("usage: cardpool "), plain.stdout
