"""The dashboard and the REST API: latest metric values, access tokens, the audit log.

``latest_metrics`` holds the last value of each metric of each run, kept by
``log_metrics``, so sorting thousands of runs by a metric is one index scan.
It is filled here from the metrics already stored.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "latest_metrics",
        sa.Column("run_id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("step", sa.BigInteger),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ix_latest_metrics_name_value", "latest_metrics", ["name", "value"])
    op.execute(
        "INSERT INTO latest_metrics (run_id, name, step, value, ts)"
        " SELECT m.run_id, m.name, m.step, m.value, m.ts FROM metrics m"
        " WHERE m.id = (SELECT m2.id FROM metrics m2 WHERE m2.run_id = m.run_id AND m2.name = m.name"
        " ORDER BY COALESCE(m2.step, -1) DESC, m2.ts DESC, m2.id DESC LIMIT 1)"
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_index("ix_runs_status", "runs", ["status", "id"])
    op.create_index("ix_runs_user_name", "runs", ["user_name", "id"])
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
        sa.Column("last_used_at", sa.Float),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("remote", sa.String(255)),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("tokens")
    op.drop_index("ix_runs_user_name", table_name="runs")
    op.drop_index("ix_runs_status", table_name="runs")
    op.drop_index("ix_runs_created_at", table_name="runs")
    op.drop_index("ix_latest_metrics_name_value", table_name="latest_metrics")
    op.drop_table("latest_metrics")
