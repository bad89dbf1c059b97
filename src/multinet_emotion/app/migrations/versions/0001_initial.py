"""Initial schema: learners, sessions, samples, recommendations, outcomes, feedback.

Revision ID: 0001
Revises:
Create Date: 2025-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "learners",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("learner_id", sa.String(64),
                  sa.ForeignKey("learners.id", ondelete="CASCADE"), nullable=False),
        sa.Column("class_id", sa.String(64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_sessions_learner_id", "sessions", ["learner_id"])
    op.create_index("ix_sessions_class_id", "sessions", ["class_id"])
    op.create_table(
        "samples",
        sa.Column("id", _big_id, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(32),
                  sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("learner_id", sa.String(64),
                  sa.ForeignKey("learners.id", ondelete="CASCADE"), nullable=False),
        sa.Column("t", sa.Float(), nullable=False),
        sa.Column("face", sa.Boolean(), nullable=False),
        *(sa.Column(e, sa.Float(), nullable=True)
          for e in ("angry", "fear", "happy", "neutral", "sad", "surprise")),
        sa.Column("confidence", sa.Float(), nullable=True),
    )
    op.create_index("ix_samples_t", "samples", ["t"])
    op.create_index("ix_samples_session_t", "samples", ["session_id", "t"])
    op.create_index("ix_samples_learner_t", "samples", ["learner_id", "t"])
    op.create_table(
        "recommendations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("learner_id", sa.String(64),
                  sa.ForeignKey("learners.id", ondelete="CASCADE"), nullable=False),
        sa.Column("session_id", sa.String(32),
                  sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("rule", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("item_id", sa.String(80), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("responded_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_recommendations_learner_id", "recommendations", ["learner_id"])
    op.create_index("ix_recommendations_session_id", "recommendations", ["session_id"])
    op.create_table(
        "outcomes",
        sa.Column("id", _big_id, primary_key=True, autoincrement=True),
        sa.Column("recommendation_id", sa.String(32),
                  sa.ForeignKey("recommendations.id", ondelete="CASCADE"), nullable=False,
                  unique=True),
        sa.Column("computed_at", sa.Float(), nullable=False),
        sa.Column("before", sa.Float(), nullable=True),
        sa.Column("after", sa.Float(), nullable=True),
        sa.Column("delta", sa.Float(), nullable=True),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("samples_before", sa.Integer(), nullable=False),
        sa.Column("samples_after", sa.Integer(), nullable=False),
    )
    op.create_table(
        "feedback",
        sa.Column("id", _big_id, primary_key=True, autoincrement=True),
        sa.Column("recommendation_id", sa.String(32),
                  sa.ForeignKey("recommendations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("learner_id", sa.String(64),
                  sa.ForeignKey("learners.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("value", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.String(500), nullable=True),
        sa.UniqueConstraint("recommendation_id", name="uq_feedback_recommendation"),
    )
    op.create_index("ix_feedback_learner_id", "feedback", ["learner_id"])


def downgrade() -> None:
    for table in ("feedback", "outcomes", "recommendations", "samples", "sessions",
                  "learners"):
        op.drop_table(table)
