"""Alembic environment: runs on the connection that Store.migrate() passes in.

For a new migration (developers only): ``alembic -x url=sqlite:////tmp/x.db revision
--autogenerate -m "what changed"`` with script_location set to this folder; hand-check it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import multinet_emotion.app.lti.store  # noqa: F401  (the lti_* tables join Base.metadata)
import multinet_emotion.app.sessions.store  # noqa: F401  (live_states, rate_hits)
from multinet_emotion.app.store import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection) -> None:  # noqa: ANN001
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:  # the alembic command line: a URL from -x url=...
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("pass the database with: alembic -x url=DATABASE_URL ...")
    with create_engine(url).begin() as conn:
        run_migrations(conn)
