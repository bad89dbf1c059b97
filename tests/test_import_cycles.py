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
    assert f"{PACKAGE}.training.train" in graph[f"{PACKAGE}.cli"]  # a deferred import counts
    assert f"{PACKAGE}.training.model" in graph[f"{PACKAGE}.training.train"]
    assert f"{PACKAGE}.app" in graph and f"{PACKAGE}.app.store" in graph  # sub-packages too
    assert f"{PACKAGE}.runtime.video.runner" in graph


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_the_package_modules():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


#: The hall (the package root: names, errors, options, files, progress, the command line and
#: the shipped assets) and its three wings, each a sub-package.
RUNTIME, TRAINING, APP = (f"{PACKAGE}.{wing}" for wing in ("runtime", "training", "app"))


def wing(graph: dict[str, set[str]], prefix: str) -> list[str]:
    return sorted(m for m in graph if m == prefix or m.startswith(prefix + "."))


def wing_of(module: str) -> str:
    """``runtime``, ``training``, ``app`` (or a hall module's name; ``""`` for the package)."""
    return (module.split(".") + [""])[1]


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_every_wing_has_its_modules():
    graph = import_graph()
    assert f"{RUNTIME}.detect" in graph and f"{RUNTIME}.video" in graph
    assert f"{TRAINING}.train" in graph and f"{TRAINING}.onnx_weights" in graph
    assert f"{APP}.app" in graph and f"{APP}.migrations.env" in graph


def test_the_runtime_reaches_neither_training_nor_the_app():
    """Detector, classifier, tracking, label filter, ONNX graph helpers and video: none of them
    reaches a training or app module, even through deferred imports."""
    graph = import_graph()
    for module in wing(graph, RUNTIME):
        bad = {m for m in reachable(graph, module)
               if wing_of(m) in ("training", "app")}
        assert not bad, f"{module} reaches {sorted(bad)}"


def test_the_app_and_the_recommender_never_reach_training():
    """The web service, its store and migrations, and the recommender reach no training
    module (the service runs the runtime wing only)."""
    graph = import_graph()
    for module in wing(graph, APP) + wing(graph, f"{PACKAGE}.recommend"):
        bad = {m for m in reachable(graph, module) if wing_of(m) == "training"}
        assert not bad, f"{module} reaches {sorted(bad)}"


def test_the_hall_library_modules_reach_no_wing():
    """emotions, errors, options, files and progress are what the wings share: they import
    none of them (only the command line and the lazy exports of ``__init__`` do)."""
    graph = import_graph()
    for name in ("emotions", "errors", "options", "files", "progress"):
        bad = {m for m in reachable(graph, f"{PACKAGE}.{name}")
               if wing_of(m) in ("runtime", "training", "app")}
        assert not bad, f"{PACKAGE}.{name} reaches {sorted(bad)}"


def test_the_runtime_never_imports_torch():
    """No file under runtime/ imports torch (or torchvision), at the top or deferred, and
    neither does any package module it reaches."""
    graph = import_graph()
    files = module_files()
    for module in wing(graph, RUNTIME):
        for name in {module} | reachable(graph, module):
            tree = ast.parse(files[name].read_text(), str(files[name]))
            found = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names}
            found |= {node.module or "" for node in ast.walk(tree)
                      if isinstance(node, ast.ImportFrom) and not node.level}
            torch = sorted(m for m in found if m.split(".")[0] in ("torch", "torchvision"))
            assert not torch, f"{module} reaches {name}, which imports {torch}"
