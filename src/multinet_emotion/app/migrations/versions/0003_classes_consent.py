"""Classes created by an instructor with join codes; learner consent recorded at sign-up.

Every class id already named by a session gets a class row (named after its id, with a
fresh join code), so the classes of an existing database stay listed and their data
visible. Learners stored before keep no consent time (NULL): they signed up under the
earlier consent screen.

Revision ID: 0003
Revises: 0002
Create Date: 2026-01-10
"""
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: As store.classes.JOIN_ALPHABET at the time of writing (no 0/O, 1/I/L).
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def upgrade() -> None:
    op.create_table(
        "classes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("join_code", sa.String(16), nullable=False, unique=True),
        sa.Column("code_expires_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
    )
    op.add_column("learners", sa.Column("consent_at", sa.Float(), nullable=True))
    op.add_column("learners", sa.Column("consent_version", sa.String(40), nullable=True))
    conn = op.get_bind()
    sessions = sa.table("sessions", sa.column("class_id", sa.String),
                        sa.column("started_at", sa.Float))
    classes = sa.table("classes", sa.column("id", sa.String), sa.column("name", sa.String),
                       sa.column("join_code", sa.String), sa.column("created_at", sa.Float))
    rows = conn.execute(sa.select(sessions.c.class_id, sa.func.min(sessions.c.started_at))
                        .group_by(sessions.c.class_id)).all()
    codes: set[str] = set()
    for class_id, first in rows:
        code = ""
        while not code or code in codes:
            code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        codes.add(code)
        conn.execute(classes.insert().values(id=class_id, name=class_id[:100], join_code=code,
                                             created_at=first))


def downgrade() -> None:
    with op.batch_alter_table("learners") as batch:  # SQLite rebuilds the table
        batch.drop_column("consent_version")
        batch.drop_column("consent_at")
    op.drop_table("classes")
