"""hub3d's import graph: no cycle, counting imports inside functions too (a lazy import must never be the thing
that keeps two modules from importing each other), and the weights layers import only what their role needs."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hub3d"


# What the weights layers may import inside hub3d (module level or in functions). None of them imports
# hub3d.models (loader and publish build models through the registry): that is what lets models.base import
# loader and publish at module level. sources finds files and never builds a model; checkpoint only does formats.
ALLOWED = {
    "hub3d.errors": set(),
    "hub3d.version": set(),
    "hub3d.registry": {"hub3d.errors", "hub3d.pretrained", "hub3d.zoo_stats"},
    "hub3d.checkpoint": {"hub3d.errors", "hub3d.io", "hub3d.version"},
    "hub3d.sources": {"hub3d.checkpoint", "hub3d.errors", "hub3d.io", "hub3d.pretrained",
                      "hub3d.version"},  # io: the atomic write of the hash index
    "hub3d.loader": {"hub3d.checkpoint", "hub3d.errors", "hub3d.io", "hub3d.pretrained", "hub3d.registry", "hub3d.sources",
                     "hub3d.specs"},
    "hub3d.publish": {"hub3d.checkpoint", "hub3d.errors", "hub3d.loader", "hub3d.pretrained", "hub3d.registry",
                      "hub3d.sources"},
}


def modules() -> dict[str, Path]:
    found = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return found


def imported_names(module: str, is_package: bool, node: ast.AST) -> list[str]:
    """Every dotted name an import statement may refer to (``from a import b``: a, and a.b if a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:  # relative: from the module's package, one level up per extra dot
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{a.name}" for a in node.names]


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), str(f))):  # ast.walk: function bodies too
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in imported_names(m, f.name == "__init__.py", node):
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                # A package and its own submodules (re-exports, `from . import x`) are one unit, not a cycle.
                if name and name != m and not m.startswith(name + ".") and not name.startswith(m + "."):
                    graph[m].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_relative_imports_resolve_like_python(tmp_path):
    tree = ast.parse("from ..loader import load\nfrom . import base\nimport hub3d.sources\n")
    names = [imported_names("hub3d.models.resnet3d", False, n) for n in tree.body]
    assert names == [["hub3d.loader", "hub3d.loader.load"], ["hub3d.models", "hub3d.models.base"], ["hub3d.sources"]]


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "hub3d.inference" in graph["hub3d.cli.predict"]  # imported inside the command functions
    assert {"hub3d.loader", "hub3d.publish"} <= graph["hub3d.models.base"]


def test_no_import_cycle_in_hub3d():
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_weights_layers_import_only_their_dependencies(module):
    extra = import_graph()[module] - ALLOWED[module] - {"hub3d"}
    assert not extra, f"{module} must not import {sorted(extra)}"
