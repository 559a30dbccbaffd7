"""The import contract: every module imports only from its own layer or below, and no import cycle exists.

The layers (bottom first) are those of ``docs/overview.md``. Imports inside functions count too: a lazy import
is still a dependency. The test reads the source (AST), so it needs no import of the package.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import synthseq

PACKAGE = Path(synthseq.__file__).parent

#: Bottom first. A module's group is its first two dotted parts (``synthseq.data``, ``synthseq.metrics``).
LAYERS: list[set[str]] = [
    {"_version", "errors", "utils", "codes", "stats"},
    {"io", "config", "perceptual", "web"},
    {"data", "phantom"},
    {"metrics"},
    {"losses"},
    {"models"},
    {"checkpoint", "baselines", "provenance", "dicom_out", "erasure", "engines"},
    {"synthesis"},
    {"training", "export"},
    {"evaluation", "downstream", "reader_study", "demo"},
    {"cli", ""},  # "" = the package's own __init__ (the public API)
]
LAYER = {name: i for i, group in enumerate(LAYERS) for name in group}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: {imported synthseq modules}}`` (names relative to the package, "" for the package itself)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, path in modules.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        if mod == "":
            package = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
                elif node.module and node.module.split(".")[0] == "synthseq":
                    base = node.module.split(".")[1:]
                else:
                    continue
                target = ".".join(base)
                subs = [f"{target}.{a.name}".lstrip(".") for a in node.names]
                hits = [s for s in subs if s in modules]  # "from . import x": the module x, else the package
                graph[mod].update(hits or [target])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "synthseq":
                        graph[mod].add(".".join(alias.name.split(".")[1:]))
        graph[mod].discard(mod)
    return graph


def _group(mod: str) -> str:
    return mod.split(".")[0]


def test_every_module_belongs_to_a_layer():
    unknown = sorted({_group(m) for m in import_graph()} - set(LAYER))
    assert not unknown, f"add these to LAYERS (and docs/overview.md): {unknown}"


def test_imports_point_down_the_layers():
    upward = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                    if LAYER[_group(b)] > LAYER[_group(a)])
    assert not upward, f"imports against the documented direction: {upward}"


def test_no_import_cycles():
    """Tarjan's strongly connected components over modules and over top-level groups."""
    graph = import_graph()
    groups: dict[str, set[str]] = defaultdict(set)
    for a, targets in graph.items():
        groups[_group(a)].update(_group(b) for b in targets if _group(b) != _group(a))
    for g, what in ((graph, "modules"), (groups, "packages")):
        cycles = [c for c in _components(g) if len(c) > 1]
        assert not cycles, f"import cycles between {what}: {cycles}"


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_a_planted_cycle_and_an_upward_import():
    planted = {"a": {"b"}, "b": {"a"}, "c": set()}
    assert [c for c in _components(planted) if len(c) > 1] == [["a", "b"]]
    assert LAYER["metrics"] > LAYER["data"]  # so an import data -> metrics would be reported as upward
