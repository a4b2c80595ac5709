"""The initial schema: runs, tags, params, tasks, attempts, artifacts, metrics, model versions.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("flow_name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False, server_default="flow"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("heartbeat_at", sa.Float),
        sa.Column("code_hash", sa.String(64)),
        sa.Column("origin_run_id", sa.Integer),
        sa.Column("executor", sa.String(16)),
        sa.Column("pid", sa.Integer),
        sa.Column("hostname", sa.String(255)),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_runs_flow_name", "runs", ["flow_name", "id"])
    op.create_table(
        "run_tags",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(255), primary_key=True),
        sa.Column("system", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_run_tags_tag", "run_tags", ["tag"])
    op.create_table(
        "params",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step_name", sa.String(255), nullable=False),
        sa.Column("foreach_key", sa.String(1024), nullable=False, server_default=""),
        sa.Column("foreach_stack", sa.Text, nullable=False, server_default="[]"),
        sa.Column("input_paths", sa.Text, nullable=False, server_default="[]"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("transition", sa.Text),
        sa.Column("cloned_from", sa.Integer),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.UniqueConstraint("run_id", "step_name", "foreach_key", name="uq_tasks_run_step_foreach"),
    )
    op.create_table(
        "attempts",
        sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("exception", sa.Text),
        sa.Column("traceback", sa.Text),
        sa.Column("stdout_key", sa.String(64)),
        sa.Column("stderr_key", sa.String(64)),
    )
    op.create_table(
        "artifacts",
        sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("codec", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_artifacts_key", "artifacts", ["key"])
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task_id", sa.Integer),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("step", sa.BigInteger),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ix_metrics_run_name", "metrics", ["run_id", "name"])
    op.create_table(
        "model_versions",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer),
        sa.Column("task_id", sa.Integer),
        sa.Column("artifact_key", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_model_versions_artifact_key", "model_versions", ["artifact_key"])


def downgrade() -> None:
    for table in ("model_versions", "metrics", "artifacts", "attempts", "tasks", "params", "run_tags", "runs"):
        op.drop_table(table)
