"""Samples keep the stable label that was shown for them (dwell time and hysteresis).

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: rows stored before show the top class of their probabilities
    op.add_column("samples", sa.Column("label", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("samples") as batch:  # SQLite rebuilds the table
        batch.drop_column("label")
