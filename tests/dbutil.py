"""Databases for tests: SQLite always; PostgreSQL when MULTINET_TEST_POSTGRES_URL is reachable.

Each PostgreSQL test gets a fresh database, created and dropped on the server the variable
points to (``.ci/run`` starts a throwaway one).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BACKENDS = ["sqlite", "postgresql"]


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'multinet.db'}"
        return
    url = os.environ.get("MULTINET_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("MULTINET_TEST_POSTGRES_URL is not set (bash .ci/run starts PostgreSQL)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError
    try:
        admin = create_engine(url, isolation_level="AUTOCOMMIT",
                              connect_args={"connect_timeout": 3})
        conn = admin.connect()
    except (OperationalError, ModuleNotFoundError) as e:
        pytest.skip(f"PostgreSQL at {url} is unreachable: {type(e).__name__}")
    name = f"multinet_test_{uuid.uuid4().hex[:12]}"
    conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.close()
        admin.dispose()
