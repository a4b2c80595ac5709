"""NaN metric values: ``metrics.value`` and ``latest_metrics.value`` may be NULL.

A metric that diverges to NaN is recorded, as MLflow records it. SQLite stores a
NaN float as NULL, so NULL is how NaN is kept on both dialects (PostgreSQL is
given NULL too, so the two read the same); the store reads it back as NaN.
SQLite cannot drop a NOT NULL constraint in place: batch mode copies each table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("metrics", "latest_metrics"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("value", existing_type=sa.Float, nullable=True)


def downgrade() -> None:
    for table in ("metrics", "latest_metrics"):  # NaN has no place under NOT NULL: those points go
        op.execute(f"DELETE FROM {table} WHERE value IS NULL")
        with op.batch_alter_table(table) as batch:
            batch.alter_column("value", existing_type=sa.Float, nullable=False)
