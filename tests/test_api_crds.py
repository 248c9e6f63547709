"""crds/ and docs/api.md are generated from the models; the schemas are structural and fully described."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cardpool.api import crdgen
from cardpool.api.cardpool import CardPool
from cardpool.api.trainingjob import TrainingJob

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", sorted(crdgen.generated()), ids=lambda p: p.name)
def test_generated_files_match_the_models(path: Path) -> None:
    assert path.exists(), f"{path} missing: run python -m cardpool.api.crdgen"
    assert path.read_text() == crdgen.generated()[path], (
        f"{path.relative_to(ROOT)} drifted from cardpool.api: run python -m cardpool.api.crdgen")


def schemas() -> list[tuple[str, dict]]:
    return [(k.kind, crdgen.crd(k)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]) for k in crdgen.KINDS]


def walk(node: dict, path: str):
    yield path, node
    for name, prop in node.get("properties", {}).items():
        yield from walk(prop, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize(("kind", "schema"), schemas(), ids=lambda v: v if isinstance(v, str) else "")
def test_schema_is_structural(kind: str, schema: dict) -> None:
    for path, node in walk(schema, kind):
        assert "$ref" not in node and "allOf" not in node and "oneOf" not in node, path
        assert "title" not in node and node.get("type") != "null", path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), path
        else:
            assert "type" in node, f"{path} has no type"
        assert node.get("additionalProperties") is not False, path
        assert not isinstance(node.get("exclusiveMinimum"), int | float) or isinstance(
            node["exclusiveMinimum"], bool), path


@pytest.mark.parametrize(("kind", "schema"), schemas(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_field_is_described_and_in_the_reference(kind: str, schema: dict) -> None:
    reference = (ROOT / "docs" / "api.md").read_text()
    for path, node in walk(schema, kind.lower()):
        envelope = path.count(".") == 1 and path.endswith((".apiVersion", ".kind", ".metadata"))
        if envelope or path.count(".") == 0 or path.endswith(("{}", "[]")):
            continue
        assert node.get("description"), f"{path} has no description"
        if ".template." not in path:
            assert f"`{path}`" in reference, f"{path} missing from docs/api.md"


def test_example_manifests_parse_with_the_models() -> None:
    kinds = {"CardPool": CardPool, "TrainingJob": TrainingJob}
    seen = set()
    for path in EXAMPLES:
        obj = yaml.safe_load(path.read_text())
        kinds[obj["kind"]].model_validate(obj)
        seen.add(obj["kind"])
        if obj["kind"] == "TrainingJob":
            seen.add(obj["spec"]["placement"].get("mode", "Homogeneous") + obj["spec"].get("framework", ""))
    assert {"CardPool", "TrainingJob", "HomogeneousPyTorch", "HomogeneousMindSpore", "MixedDeepSpeed"} <= seen


def test_trainingjob_has_scale_status_printer_columns_and_category() -> None:
    crd = crdgen.crd(next(k for k in crdgen.KINDS if k.kind == "TrainingJob"))
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.workers.size.desired"
    assert "status" in version["subresources"]
    assert [c["name"] for c in version["additionalPrinterColumns"]][:7] == [
        "Pool", "Accelerator", "Size", "Phase", "Restarts", "Checkpoint", "Age"]
    assert crd["spec"]["names"]["categories"] == ["cardpool-all"]


def test_check_mode_reports_drift(tmp_path, monkeypatch) -> None:
    target = next(iter(crdgen.generated()))
    monkeypatch.setattr(crdgen, "generated", lambda: {tmp_path / target.name: "changed\n"})
    (tmp_path / target.name).write_text("original\n")
    assert crdgen.main(["--check"]) == 1
    assert (tmp_path / target.name).read_text() == "original\n"
    assert crdgen.main([]) == 0
    assert (tmp_path / target.name).read_text() == "changed\n"


def test_a_chart_copy_whose_source_went_away_is_stale_and_removed(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "files" / "admission"
    folder.mkdir(parents=True)
    (folder / "kept.yaml").write_text("kept\n")
    (folder / "dropped.yaml").write_text("a policy no longer in manifests/admission\n")
    monkeypatch.setattr(crdgen, "CHART_FILES", tmp_path / "files")
    monkeypatch.setattr(crdgen, "generated", lambda: {folder / "kept.yaml": "kept\n"})
    assert crdgen.main(["--check"]) == 1 and (folder / "dropped.yaml").exists()
    assert crdgen.main([]) == 0 and sorted(p.name for p in folder.iterdir()) == ["kept.yaml"]
    assert crdgen.main(["--check"]) == 0


def test_the_chart_copies_every_crd_admission_policy_and_role_of_the_kustomize_install() -> None:
    copies = {p.relative_to(crdgen.CHART_FILES).as_posix(): text for p, text in crdgen.generated().items()
              if p.is_relative_to(crdgen.CHART_FILES)}
    assert sorted(copies) == [
        "admission/status-writers.yaml", "admission/trainer-progress.yaml", "admission/trainingjob-accelerators.yaml",
        "crds/cardpool.io_cardpools.yaml", "crds/cardpool.io_checkpoints.yaml", "crds/cardpool.io_tenantqueues.yaml",
        "crds/cardpool.io_trainingjobs.yaml",
        "rbac/rbac.yaml", "rbac/trainer-role.yaml", "rbac/user-roles.yaml"]
    source = ROOT / "manifests" / "operator" / "rbac.yaml"
    assert copies["rbac/rbac.yaml"].endswith(source.read_text()) and "edit that file" in copies["rbac/rbac.yaml"]


def cells(row: str) -> list[str]:
    """The cells of a Markdown table row: split at every `|` not escaped as `\\|`."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def tables(text: str) -> list[list[str]]:
    """Every table of a Markdown text: its lines, from the header to the first line that is not a row."""
    out, current = [], None
    for line in text.splitlines():
        if current is not None and line.strip():
            current.append(line)
            continue
        current = None
        if line.startswith("| ") and line.rstrip().endswith("|"):
            current = [line]
            out.append(current)
    return out


def test_every_reference_table_row_is_one_line_with_the_headers_columns() -> None:
    found = tables((ROOT / "docs" / "api.md").read_text())
    assert len(found) >= 5
    for table in found:
        header, rule_, *rows = table
        assert set(rule_.replace("|", "")) == {"-"}, f"no separator under {header}"
        assert rows, header
        for row in rows:
            assert row.startswith("| ") and row.endswith(" |"), f"row broken across lines: {row!r}"
            assert len(cells(row)) == len(cells(header)), f"{len(cells(row))} cells, header has " \
                f"{len(cells(header))}: {row!r}"


def test_a_cell_with_pipes_and_newlines_stays_in_its_row() -> None:
    row = crdgen._row(["`a|b`", "multi\nline\n\ntext", crdgen._default("x|y"), crdgen._default({"k": [1, 2]})])
    assert "\n" not in row and cells(row) == ["`a\\|b`", "multi line text", "`x\\|y`", '`{"k": [1, 2]}`']
