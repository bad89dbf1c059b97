"""The package's modules import each other without cycles (a cycle means two modules that can
only be understood, tested and loaded together: model.py once imported train.py for its
checkpoint writer, while train.py imports model.py)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "multinet_emotion"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    files = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join([PACKAGE, *parts])] = path
    return files


def imported_modules(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package modules ``name`` imports anywhere in its file: at the top, inside functions
    (a deferred import is still a dependency) and under ``if TYPE_CHECKING`` alike."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from .pkg import mod` imports the module pkg.mod; `from .mod import name`, mod
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` where only a.b is ours
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imported_modules(name, path, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert f"{PACKAGE}.train" in graph[f"{PACKAGE}.cli"]  # a deferred import counts
    assert f"{PACKAGE}.model" in graph[f"{PACKAGE}.train"]
    assert f"{PACKAGE}.server" in graph  # sub-packages are walked


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_the_package_modules():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


#: The training half (PyTorch): what the web app and the runtime never import.
TRAINING = {f"{PACKAGE}.{m}" for m in ("train", "model", "export", "augment", "targets",
                                       "distill", "evaluate", "init_weights", "checkpoint")}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_the_web_app_and_the_runtime_never_import_the_training_half():
    """The server, the store, the recommender and the runtime (detector, tracking, label
    filter, ONNX graph helpers) reach no training module, even through deferred imports."""
    graph = import_graph()
    users = [m for m in graph if m.startswith((f"{PACKAGE}.server", f"{PACKAGE}.store",
                                                f"{PACKAGE}.recommend", f"{PACKAGE}.video"))]
    users += [f"{PACKAGE}.{m}" for m in ("detect", "faces", "blazeface", "classifier",
                                         "tracking", "label_filter", "onnx_graph")]
    for module in users:
        bad = reachable(graph, module) & TRAINING
        assert not bad, f"{module} reaches {sorted(bad)}"
