"""LTI 1.3: registered platforms, launch state (nonces, launch data), and the learners and
classes that LTI users and courses are.

Revision ID: 0005
Revises: 0004
Create Date: 2026-01-12
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lti_platforms",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("deployment_ids", sa.JSON(), nullable=False),
        sa.Column("auth_login_url", sa.String(1000), nullable=False),
        sa.Column("auth_token_url", sa.String(1000), nullable=False),
        sa.Column("key_set_url", sa.String(1000), nullable=False),
        sa.Column("frame_origins", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("issuer", "client_id", name="uq_lti_platform"),
    )
    op.create_table(
        "lti_values",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_lti_values_expires_at", "lti_values", ["expires_at"])
    op.create_table(
        "lti_users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("sub", sa.String(255), nullable=False),
        sa.Column("learner_id", sa.String(64),
                  sa.ForeignKey("learners.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("issuer", "sub", name="uq_lti_user"),
    )
    op.create_index("ix_lti_users_learner_id", "lti_users", ["learner_id"])
    op.create_table(
        "lti_contexts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("context_id", sa.String(255), nullable=False),
        sa.Column("class_id", sa.String(64),
                  sa.ForeignKey("classes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("issuer", "context_id", name="uq_lti_context"),
    )
    op.create_index("ix_lti_contexts_class_id", "lti_contexts", ["class_id"])


def downgrade() -> None:
    op.drop_index("ix_lti_contexts_class_id", "lti_contexts")
    op.drop_table("lti_contexts")
    op.drop_index("ix_lti_users_learner_id", "lti_users")
    op.drop_table("lti_users")
    op.drop_index("ix_lti_values_expires_at", "lti_values")
    op.drop_table("lti_values")
    op.drop_table("lti_platforms")
