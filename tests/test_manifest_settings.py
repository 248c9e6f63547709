"""Every CARDPOOL_* setting the install manifests and the Helm chart give the operator is one it reads: a
misspelt or retired name would be ignored without a word (the dev overlay once set CARDPOOL_POOL_INTERVAL,
which nothing read)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SETTING = re.compile(r"\bCARDPOOL_[A-Z0-9_]+\b")
READ = "".join(p.read_text() for p in (REPO / "operator" / "cardpool").rglob("*.py"))
GIVEN = sorted({(path.relative_to(REPO).as_posix(), name)
                for folder in ("manifests", "charts")
                for path in (REPO / folder).rglob("*") if path.suffix in (".yaml", ".yml", ".tpl")
                for name in SETTING.findall(path.read_text())})


def test_the_manifests_give_settings() -> None:
    assert any(name == "CARDPOOL_METRICS_PORT" for _, name in GIVEN)  # the scan finds what it looks for


@pytest.mark.parametrize(("path", "name"), GIVEN, ids=[f"{p}:{n}" for p, n in GIVEN])
def test_each_setting_given_is_read_by_the_operator(path: str, name: str) -> None:
    assert f'"{name}"' in READ, f"{path} sets {name}, which no module of cardpool reads"
