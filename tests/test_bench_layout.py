"""The installed package never imports the e2e kit: the cluster benchmarks live in e2e/clusterbench, and
`python -m cardpool.bench start|recovery|scale` hands over to them only at call time."""

from __future__ import annotations

import ast
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "operator" / "cardpool"
E2E_KIT = {"localkube", "clusterbench"}


def _modules(path: Path, prefix: str) -> list[tuple[str, Path]]:
    """Every module of the package under `path`, found without importing any of it."""
    found = []
    for info in pkgutil.iter_modules([str(path)]):
        name = f"{prefix}.{info.name}"
        if info.ispkg:
            found.append((name, path / info.name / "__init__.py"))
            found += _modules(path / info.name, name)
        else:
            found.append((name, path / f"{info.name}.py"))
    return found


def _module_level_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level module) of every import statement outside a function body (module and class level,
    including under if/try)."""
    out: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.Import):
                out.extend((child.lineno, alias.name.split(".")[0]) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                out.append((child.lineno, child.module.split(".")[0]))
            visit(child)

    visit(tree)
    return out


def test_the_walk_sees_the_whole_package() -> None:
    names = {name for name, _ in _modules(PACKAGE, "cardpool")}
    assert {"cardpool.bench", "cardpool.bench.__main__", "cardpool.core.queue", "cardpool.handlers"} <= names


def test_the_checker_finds_module_level_imports_only() -> None:
    tree = ast.parse("import localkube.fleet\nif True:\n    from clusterbench import scale\n"
                     "def f():\n    import localkube\nclass C:\n    import clusterbench\n")
    assert _module_level_imports(tree) == [(1, "localkube"), (3, "clusterbench"), (7, "clusterbench")]


def test_no_module_of_the_package_imports_the_e2e_kit_at_module_level() -> None:
    offending = []
    for name, path in _modules(PACKAGE, "cardpool"):
        tree = ast.parse(path.read_text(), filename=str(path))
        offending += [f"{name}:{line} imports {module}" for line, module in _module_level_imports(tree)
                      if module in E2E_KIT]
    assert not offending, offending


def test_the_cluster_benchmarks_left_the_package() -> None:
    bench = PACKAGE / "bench"
    assert not {"cluster.py", "start.py", "recovery.py", "scale.py"} & {p.name for p in bench.iterdir()}
    assert {"cluster.py", "start.py", "recovery.py", "scale.py", "__main__.py"} <= {
        p.name for p in (ROOT / "e2e" / "clusterbench").iterdir()}


def test_without_the_kit_a_cluster_benchmark_names_the_command_to_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-m", "cardpool.bench", "scale", "--quick"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "PYTHONPATH=e2e python -m clusterbench scale" in result.stderr
    assert "make bench" in result.stderr
