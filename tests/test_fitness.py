"""The package's modules and functions stay small enough to read whole: no module over
MAX_MODULE_LINES lines, no function or method over MAX_FUNCTION_LINES (from its ``def`` to
its last line). A long one is split into named steps, a long module into modules that each
say what they are for. Alembic's migration files (migrations/versions) are written once and
never grow, so they are left out."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "multinet_emotion"
ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / PACKAGE
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
EXEMPT = (Path("app") / "migrations" / "versions",)


def module_files() -> list[Path]:
    """The package's Python files, the exempt folders left out."""
    return [path for path in sorted(SRC.rglob("*.py"))
            if not any(path.relative_to(SRC).is_relative_to(folder) for folder in EXEMPT)]


def function_lengths(path: Path) -> list[tuple[str, int, int]]:
    """(qualified name, first line, lines) of every function and method in the file, nested
    ones too."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                found.append((name, child.lineno, child.end_lineno - child.lineno + 1))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(), str(path)), "")
    return found


def test_the_rules_see_the_package():
    files = module_files()
    assert SRC / "cli.py" in files and SRC / "app" / "app.py" in files  # sub-packages too
    assert not any("versions" in path.relative_to(SRC).parts for path in files)
    names = {name for name, _, _ in function_lengths(SRC / "app" / "app.py")}
    assert "create_app" in names and "BodyLimit.__call__" in names  # methods too


def test_no_module_is_over_the_limit():
    long = [f"{path.relative_to(ROOT)}: {n} lines" for path in module_files()
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, (f"modules over {MAX_MODULE_LINES} lines (split them by what they do): "
                      + "; ".join(long))


def test_no_function_is_over_the_limit():
    long = [f"{path.relative_to(ROOT)}:{line} {name}: {n} lines"
            for path in module_files() for name, line, n in function_lengths(path)
            if n > MAX_FUNCTION_LINES]
    assert not long, (f"functions over {MAX_FUNCTION_LINES} lines (split them into named "
                      "steps): " + "; ".join(long))
