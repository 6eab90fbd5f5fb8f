"""The package's import graph, read from the source with ``ast``: no import circles, and every import runs down
the layers that ARCHITECTURE.md describes (never up, never sideways between parts of one layer)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

PACKAGE = "mask2former_rankseg"
SOURCE = Path(__file__).resolve().parents[1] / PACKAGE

LAYERS: Tuple[Tuple[str, ...], ...] = (
    ("constants",),
    ("structures", "layers", "ops", "config"),
    ("utils",),
    ("data",),
    ("modeling", "evaluation"),
    ("engine",),
    ("cli", "model_zoo"),
)
"""Bottom to top: a part imports only from lower layers (or from within itself)."""


def _modules() -> Dict[str, Tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``)."""
    modules = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _type_checking_only(tree: ast.AST) -> Set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (never executed)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def _targets(module: str, is_package: bool, node: ast.AST, modules: Dict) -> List[str]:
    """The package modules an import statement of ``module`` loads (explicitly; not the implicit parents)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    elif node.module and node.module.split(".")[0] == PACKAGE:
        target = node.module
    else:
        return []
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]


def import_graph() -> Dict[str, Set[str]]:
    """Module -> the package modules it imports (at the top or inside functions)."""
    modules = _modules()
    graph: Dict[str, Set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skipped = _type_checking_only(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped:
                graph[name].update(t for t in _targets(name, is_package, node, modules) if t != name)
    return graph


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle (as a closed path) per strongly connected component of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_closed_path(graph, set(c)) for c in components]


def _closed_path(graph: Dict[str, Set[str]], component: Set[str]) -> List[str]:
    """A cycle through the component's smallest module, by breadth-first search inside the component."""
    start = min(component)
    previous = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    return sorted(component)


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _layer(part: str) -> int:
    for rank, parts in enumerate(LAYERS):
        if part in parts:
            return rank
    raise AssertionError(f"{PACKAGE}.{part} is in no layer of LAYERS; add it (and to ARCHITECTURE.md).")


def test_graph_reading_on_a_hand_made_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e2"}, "e2": {"e"}}
    assert sorted(find_cycles(graph)) == [["a", "b", "c", "a"], ["e", "e2", "e"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_relative_imports_are_resolved():
    graph = import_graph()
    assert f"{PACKAGE}.data.catalog" in graph[f"{PACKAGE}.data.datasets.sem_seg"]
    assert f"{PACKAGE}.constants" in graph[f"{PACKAGE}.data.synthetic.categories"]
    assert f"{PACKAGE}.data.synthetic.semantic" in graph[f"{PACKAGE}.data.synthetic"]


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_run_down_the_layers():
    wrong = []
    for module, targets in sorted(import_graph().items()):
        part = _part(module)
        if not part:  # the package's own __init__
            continue
        for target in sorted(targets):
            other = _part(target)
            if other and other != part and _layer(other) >= _layer(part):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports that run up or across the layers:\n" + "\n".join(wrong)
