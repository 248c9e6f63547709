"""The core stays pure: the import-linter contracts in pyproject.toml hold for the whole package."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_core_contract_forbids_kopf_and_the_kubernetes_client() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    core = next(c for c in contracts if c.get("source_modules") == ["cardpool.core"])
    assert {"kopf", "kubernetes", "cardpool.kube"} <= set(core["forbidden_modules"])


def test_no_package_named_operator_shadows_the_standard_library() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    import operator

    assert hasattr(operator, "itemgetter")  # the standard library's, not ours
