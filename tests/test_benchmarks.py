"""The benchmark scripts are not run in CI (they time things, and some download the sample videos), but what they
import from hub3d must exist: a renamed or moved function breaks them silently otherwise (bench_2017 did)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def hub3d_imports(path: Path) -> list[tuple[str, str]]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # function bodies too
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hub3d":
            names += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            names += [(a.name, "") for a in node.names if a.name.split(".")[0] == "hub3d"]
    return names


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_benchmark_imports_resolve(path):
    missing = []
    for module, name in hub3d_imports(path):
        m = importlib.import_module(module)
        if name and not hasattr(m, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"from {module} import {name}")
    assert not missing, f"{path.name}: {missing}"
