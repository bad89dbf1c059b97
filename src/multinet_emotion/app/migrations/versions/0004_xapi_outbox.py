"""xAPI: the durable outbox of statements for the LRS, and each learner's choice to share
per-minute emotion summaries with it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-01-12
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "xapi_outbox",
        sa.Column("statement_id", sa.String(36), primary_key=True),
        sa.Column("learner_id", sa.String(64),
                  sa.ForeignKey("learners.id", ondelete="CASCADE"), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_xapi_outbox_learner_id", "xapi_outbox", ["learner_id"])
    op.create_index("ix_xapi_outbox_state_next", "xapi_outbox", ["state", "next_attempt_at"])
    # learners who signed up before: not shared until they choose to
    op.add_column("learners", sa.Column("share_emotions", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("learners") as batch:  # SQLite rebuilds the table
        batch.drop_column("share_emotions")
    op.drop_index("ix_xapi_outbox_state_next", "xapi_outbox")
    op.drop_index("ix_xapi_outbox_learner_id", "xapi_outbox")
    op.drop_table("xapi_outbox")
