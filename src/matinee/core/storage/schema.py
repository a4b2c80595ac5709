"""The metadata schema, in SQLAlchemy Core: one schema, every dialect.

This module is the reference that the Alembic migrations must produce (a test
compares them). It is imported only to migrate or to compare, never on the hot
path of a run. Times are seconds since the epoch (floats), structured values
JSON text, so the same rows read the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow_name", String(255), nullable=False),
    Column("kind", String(16), nullable=False, server_default="flow"),
    Column("status", String(16), nullable=False),
    Column("user_name", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("heartbeat_at", Float),
    Column("code_hash", String(64)),
    Column("origin_run_id", Integer),
    Column("executor", String(16)),
    Column("pid", Integer),
    Column("hostname", String(255)),
    Column("error", Text),
    Index("ix_runs_flow_name", "flow_name", "id"),
    Index("ix_runs_created_at", "created_at"),
    Index("ix_runs_status", "status", "id"),
    Index("ix_runs_user_name", "user_name", "id"),
)

run_tags = Table(
    "run_tags",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(255), primary_key=True),
    Column("system", Integer, nullable=False, server_default="0"),
    Index("ix_run_tags_tag", "tag"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("value", Text, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("step_name", String(255), nullable=False),
    Column("foreach_key", String(1024), nullable=False, server_default=""),
    Column("foreach_stack", Text, nullable=False, server_default="[]"),
    Column("input_paths", Text, nullable=False, server_default="[]"),
    Column("status", String(16), nullable=False),
    Column("transition", Text),
    Column("cloned_from", Integer),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("started_at", Float),
    Column("finished_at", Float),
    UniqueConstraint("run_id", "step_name", "foreach_key", name="uq_tasks_run_step_foreach"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("task_id", Integer, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("exception", Text),
    Column("traceback", Text),
    Column("stdout_key", String(64)),
    Column("stderr_key", String(64)),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("task_id", Integer, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("key", String(64), nullable=False),
    Column("codec", String(16), nullable=False),
    Column("size", BigInteger, nullable=False),
    Index("ix_artifacts_key", "key"),
)

metrics = Table(
    "metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("task_id", Integer),
    Column("name", String(255), nullable=False),
    Column("step", BigInteger),
    Column("value", Float),  # NULL is NaN (SQLite stores a NaN float as NULL; PostgreSQL is given NULL too)
    Column("ts", Float, nullable=False),
    Index("ix_metrics_run_name", "run_id", "name"),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("run_id", Integer),
    Column("task_id", Integer),
    Column("artifact_key", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("artifact_name", String(255)),
    Column("codec", String(16)),
    Column("size", BigInteger),
    Column("dataset_hash", String(255)),
    Column("code_version", String(64)),
    Column("matinee_version", String(64)),
    Column("package_versions", Text),
    Column("metrics", Text),
    Column("tags", Text),
    Column("description", Text),
    Column("user_name", String(255)),
    Index("ix_model_versions_artifact_key", "artifact_key"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("alias", String(255), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(255), nullable=False),
)

#: Append-only: every set, move, delete, promote and rollback of an alias.
model_alias_history = Table(
    "model_alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("alias", String(255), nullable=False),
    Column("from_version", Integer),
    Column("to_version", Integer),
    Column("action", String(16), nullable=False),
    Column("user_name", String(255), nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_model_alias_history_name", "name", "alias", "id"),
)

#: Online experiments: arms (JSON: alias and weight each), metrics and lifecycle.
experiments = Table(
    "experiments",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("endpoint", String(16), nullable=False),
    Column("model", String(255), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("arms", Text, nullable=False),
    Column("salt", String(255), nullable=False),
    Column("primary_metric", String(64), nullable=False),
    Column("guardrails", Text, nullable=False),
    Column("owner", String(255)),
    Column("description", Text),
    Column("alpha", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("stopped_at", Float),
    Column("extra", Text),
    Index("ix_experiments_status", "status"),
)

#: The last value of each metric of each run (by step, then time), kept by ``log_metrics``:
#: sorting runs by a metric reads this index, never the whole metrics table.
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", Integer, primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("step", BigInteger),
    Column("value", Float),  # NULL is NaN, as in ``metrics``
    Column("ts", Float, nullable=False),
    Index("ix_latest_metrics_name_value", "name", "value"),
)

#: Access tokens for the REST API and the dashboard: only a hash of the secret is kept.
tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
)

#: Append-only: every denied request and every admin action of the web server.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("role", String(16)),
    Column("action", String(64), nullable=False),
    Column("target", Text),
    Column("outcome", String(16), nullable=False),
    Column("status", Integer),
    Column("remote", String(255)),
    Column("detail", Text),
    Index("ix_audit_log_at", "at"),
)
