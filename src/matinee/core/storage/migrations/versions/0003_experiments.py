"""Online experiments.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.String(16), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("arms", sa.Text, nullable=False),
        sa.Column("salt", sa.String(255), nullable=False),
        sa.Column("primary_metric", sa.String(64), nullable=False),
        sa.Column("guardrails", sa.Text, nullable=False),
        sa.Column("owner", sa.String(255)),
        sa.Column("description", sa.Text),
        sa.Column("alpha", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("stopped_at", sa.Float),
        sa.Column("extra", sa.Text),
    )
    op.create_index("ix_experiments_status", "experiments", ["status"])


def downgrade() -> None:
    op.drop_index("ix_experiments_status", table_name="experiments")
    op.drop_table("experiments")
