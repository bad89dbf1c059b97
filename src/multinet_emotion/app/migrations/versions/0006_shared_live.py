"""Live state every server process sees: the live view of each session and rate-limit hits
(used with PostgreSQL, where several worker processes may serve the same learners).

Revision ID: 0006
Revises: 0005
Create Date: 2026-01-20
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "live_states",
        sa.Column("session_id", sa.String(32),
                  sa.ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_live_states_last_seen", "live_states", ["last_seen"])
    op.create_table(
        "rate_hits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_rate_hits_name_key_at", "rate_hits", ["name", "key", "at"])


def downgrade() -> None:
    op.drop_index("ix_rate_hits_name_key_at", "rate_hits")
    op.drop_table("rate_hits")
    op.drop_index("ix_live_states_last_seen", "live_states")
    op.drop_table("live_states")
