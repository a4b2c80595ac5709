"""The model registry: lineage on model versions, aliases and their history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NEW_COLUMNS: list[tuple[str, sa.types.TypeEngine[Any]]] = [
    ("artifact_name", sa.String(255)),
    ("codec", sa.String(16)),
    ("size", sa.BigInteger()),
    ("dataset_hash", sa.String(255)),
    ("code_version", sa.String(64)),
    ("matinee_version", sa.String(64)),
    ("package_versions", sa.Text()),
    ("metrics", sa.Text()),
    ("tags", sa.Text()),
    ("description", sa.Text()),
    ("user_name", sa.String(255)),
]


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        for name, type_ in NEW_COLUMNS:
            batch.add_column(sa.Column(name, type_))
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("alias", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
    )
    op.create_table(
        "model_alias_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("alias", sa.String(255), nullable=False),
        sa.Column("from_version", sa.Integer),
        sa.Column("to_version", sa.Integer),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_model_alias_history_name", "model_alias_history", ["name", "alias", "id"])


def downgrade() -> None:
    op.drop_table("model_alias_history")
    op.drop_table("model_aliases")
    with op.batch_alter_table("model_versions") as batch:
        for name, _type in reversed(NEW_COLUMNS):
            batch.drop_column(name)
