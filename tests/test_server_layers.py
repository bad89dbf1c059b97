"""The web service keeps its layers: routes call the service, only the store (the core in
app/store/ and each feature's store.py) writes SQL, and no file of the service or the store
outgrows a sitting's reading (500 lines)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "multinet_emotion"
APP = SRC / "app"
ROUTES = [APP / "api.py", APP / "sessions" / "routes.py", APP / "sessions" / "http.py",
          APP / "classes" / "routes.py", APP / "learners" / "routes.py", APP / "reports" / "routes.py"]


def _imports(path: Path) -> set[str]:
    """The modules a file imports (relative ones with their dots)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


def test_only_the_store_writes_sql() -> None:
    for path in sorted(SRC.rglob("*.py")):
        inside = path.is_relative_to(SRC / "app" / "store") or path.is_relative_to(
            SRC / "app" / "migrations") or (path.is_relative_to(SRC / "app")
                                            and path.name == "store.py")  # a feature's tables
        if not inside:
            sql = {m for m in _imports(path) if m.split(".")[0] in ("sqlalchemy", "alembic")}
            assert not sql, f"{path.relative_to(SRC)} imports {sorted(sql)}"


def test_routes_call_the_service_never_the_store() -> None:
    for path in ROUTES:
        tree = ast.parse(path.read_text(), str(path))
        touched = [node.lineno for node in ast.walk(tree)
                   if isinstance(node, ast.Attribute) and node.attr in ("store", "engine")]
        assert not touched, f"{path.name} reaches into the store at lines {touched}"
        assert not {m for m in _imports(path) if m.lstrip(".").split(".")[-1] == "store"
                    or m.endswith("multinet_emotion.app.store")}, path.name


def test_service_and_store_files_stay_short() -> None:
    for folder in (APP / "service", APP / "store"):
        for path in sorted(folder.rglob("*.py")):
            n = len(path.read_text().splitlines())
            assert n <= 500, f"{path.relative_to(SRC)} has {n} lines (at most 500)"


def test_every_api_route_states_its_answer(tmp_path) -> None:
    """Typed contracts: every JSON answer in the API's schema is a named model (pages and
    files answer HTML or bytes; the WebSocket's schema is itself a JSON Schema document)."""
    import random

    from multinet_emotion.app import Settings, create_app

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}",
                              instructor_token="x" * 20), analyzer_factory=None,
                     rng=random.Random(0))
    try:
        untyped, n = [], 0
        for path, ops in app.openapi()["paths"].items():
            for method, op in ops.items():
                for code, answer in op["responses"].items():
                    schema = answer.get("content", {}).get("application/json", {}).get("schema")
                    if not code.startswith("2") or schema is None:
                        continue
                    n += 1
                    named = "$ref" in schema or "$ref" in schema.get("items", {})
                    if not named and path != "/api/ws-schema":
                        untyped.append((method, path, schema))
        assert not untyped, untyped
        assert n > 30
    finally:
        app.state.context.service.store.close()


def test_app_state_holds_only_the_context(tmp_path) -> None:
    """Routes, the WebSocket and middleware share one typed AppContext, the only attribute on
    ``app.state``; its fields are set once, but for those named mutable."""
    import dataclasses

    import pytest
    from fastapi.testclient import TestClient

    from multinet_emotion.app import Settings, create_app
    from multinet_emotion.app.context import AppContext

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}",
                              instructor_token="x" * 20), analyzer_factory=None)
    try:
        assert set(app.state._state) == {"context"}
        context = app.state.context
        assert isinstance(context, AppContext)
        assert context.analysis_mode == "off" and context.analyzer_factory is None
        with pytest.raises(dataclasses.FrozenInstanceError):
            context.service = None
        with TestClient(app) as client:  # the lifespan makes the analysis slots again
            assert client.get("/api/health").json()["analysis"] is False
            assert set(app.state._state) == {"context"}
        assert AppContext.MUTABLE == {"analysis_slots"}
    finally:
        app.state.context.service.store.close()
