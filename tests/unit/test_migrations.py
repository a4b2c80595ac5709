"""The Alembic migrations build exactly the schema in ``matinee.core.storage.schema``.

The tests taking ``engine`` run on SQLite and on PostgreSQL (an empty database each).
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Connection, Engine

from matinee.core.storage import db as dbmod
from matinee.core.storage.db import SCHEMA_REVISION, SCHEMA_VERSION, SqliteDatabase, migrate
from matinee.core.storage.schema import metadata

MIGRATIONS = Path(dbmod.__file__).parent / "migrations"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database (no table at all) of each dialect."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
        yield engine
        engine.dispose()
        return
    server = request.getfixturevalue("postgres")
    name = server.database(empty=True)
    engine = create_engine(server.url(name).replace("postgresql://", "postgresql+psycopg://"))
    yield engine
    engine.dispose()
    server.release(name, reuse=False)


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def differences(connection: Connection) -> list[Any]:
    """Alembic's autogenerate diff (tables, columns, types, nullability, indexes, keys) plus defaults."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return [*compare_metadata(context, metadata), *default_differences(connection)]


def default_differences(connection: Connection) -> list[tuple[str, str, Any, Any]]:
    """Server defaults, compared here: Alembic's SQLite comparison misreads the default ''."""
    found = []
    inspector = inspect(connection)
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        reflected = {c["name"]: c.get("default") for c in inspector.get_columns(table.name)}
        for column in table.columns:
            want = None if column.server_default is None else str(column.server_default.arg)  # type: ignore[attr-defined]
            have = reflected.get(column.name)
            if have is not None:  # SQLite: '' or "x"; PostgreSQL: ''::character varying
                have = re.sub(r"::[\w ]+$", "", have).strip("'\"")
            if want is None and have is not None and have.startswith("nextval("):
                continue  # PostgreSQL: an autoincrementing key is a column with a sequence as its default
            if column.name in reflected and want != have:
                found.append((table.name, column.name, want, have))
    return found


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def test_the_migrations_produce_exactly_the_schema(engine: Engine) -> None:
    with engine.begin() as connection:
        migrate(connection)
    with engine.connect() as connection:
        assert differences(connection) == []
        assert current_revision(connection) == SCHEMA_REVISION
        assert set(inspect(connection).get_table_names()) == set(metadata.tables) | {"alembic_version"}


def test_an_empty_database_differs_from_the_schema(engine: Engine) -> None:
    """The comparison can see a missing schema (so an empty diff above means something)."""
    with engine.connect() as connection:
        diffs = differences(connection)
    assert {d[1].name for d in diffs if d[0] == "add_table"} == set(metadata.tables)


def test_a_changed_column_is_seen_as_a_difference(engine: Engine) -> None:
    with engine.begin() as connection:
        migrate(connection)
        connection.exec_driver_sql("ALTER TABLE runs ADD COLUMN extra TEXT")
    with engine.connect() as connection:
        assert [d[0] for d in differences(connection)] == ["remove_column"]


def test_a_changed_server_default_is_seen_as_a_difference(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE tasks (id INTEGER PRIMARY KEY, foreach_key VARCHAR(1024) DEFAULT '' NOT NULL,"
            " attempts INTEGER DEFAULT '1' NOT NULL)"
        )
    with engine.connect() as connection:
        assert default_differences(connection) == [("tasks", "attempts", "0", "1")]


def test_downgrade_to_base_then_upgrade_again(engine: Engine) -> None:
    with engine.begin() as connection:
        migrate(connection)
        connection.exec_driver_sql(
            "INSERT INTO runs (flow_name, status, user_name, created_at) VALUES ('F', 'running', 'u', 0)"
        )
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    with engine.connect() as connection:
        assert current_revision(connection) is None
        assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    with engine.connect() as connection:
        assert differences(connection) == []
        assert current_revision(connection) == SCHEMA_REVISION
        assert connection.exec_driver_sql("SELECT COUNT(*) FROM runs").scalar() == 0


def test_a_0004_database_with_metrics_migrates_and_then_takes_nan(engine: Engine) -> None:
    """0005 keeps every point and index of a database at 0004, and its value columns take NULL (NaN)."""
    from matinee.core.storage.metadata import MetadataStore

    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0004")
        connection.exec_driver_sql(
            "INSERT INTO runs (flow_name, status, user_name, created_at) VALUES ('F', 'completed', 'u', 0)"
        )
        connection.exec_driver_sql(
            "INSERT INTO metrics (run_id, task_id, name, step, value, ts)"
            " VALUES (1, NULL, 'loss', 0, 0.5, 1), (1, NULL, 'loss', 1, 0.25, 2)"
        )
        connection.exec_driver_sql(
            "INSERT INTO latest_metrics (run_id, name, step, value, ts) VALUES (1, 'loss', 1, 0.25, 2)"
        )
    with engine.begin() as connection:
        migrate(connection)
    with engine.connect() as connection:
        assert differences(connection) == []
        assert current_revision(connection) == SCHEMA_REVISION
    url = engine.url.render_as_string(hide_password=False).replace("postgresql+psycopg://", "postgresql://")
    meta = MetadataStore.open(url)
    try:
        assert [(r["step"], r["value"]) for r in meta.metrics(1)] == [(0, 0.5), (1, 0.25)]
        meta.log_metrics([(1, None, "loss", 2, float("nan"), 3.0)])
        values = [r["value"] for r in meta.metrics(1)]
        assert values[:2] == [0.5, 0.25] and math.isnan(values[2])
        assert math.isnan(meta.latest_metrics([1])[1]["loss"])
    finally:
        meta.close()


def test_the_code_expects_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    assert script.get_heads() == [SCHEMA_REVISION]
    assert int(SCHEMA_REVISION) == SCHEMA_VERSION


def test_sqlite_records_the_revision_in_user_version(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    SqliteDatabase(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(SCHEMA_REVISION,)]
    conn.close()
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        assert differences(connection) == []
    engine.dispose()


def test_an_interrupted_first_open_is_finished_by_the_next(tmp_path: Path) -> None:
    """A file migrated by Alembic but without ``user_version`` (a crash in between) opens fine."""
    path = tmp_path / "m.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        migrate(connection)
    engine.dispose()
    db = SqliteDatabase(path)
    assert db.query("PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION
    db.close()


# -- PostgreSQL: opening a database migrates it, once, whoever gets there first ----------


@pytest.fixture
def empty_postgres(postgres: Any) -> Iterator[str]:
    """The URL of an empty PostgreSQL database (no table at all)."""
    name = postgres.database(empty=True)
    yield postgres.url(name)
    postgres.release(name, reuse=False)


def _open_postgres(url: str, gate: str) -> str:
    from matinee.core.storage.metadata import MetadataStore

    while not os.path.exists(gate):
        time.sleep(0.001)
    try:
        MetadataStore.open(url).close()
    except Exception as exc:  # reported to the parent, which asserts on it
        return repr(exc)
    return ""


def test_processes_opening_one_empty_postgresql_database_at_once_migrate_it_once(
    empty_postgres: str, tmp_path: Path
) -> None:
    import multiprocessing

    gate = tmp_path / "go"
    with multiprocessing.get_context("fork").Pool(6) as pool:
        pending = pool.starmap_async(_open_postgres, [(empty_postgres, str(gate))] * 6)
        time.sleep(0.2)  # let every worker reach the gate
        gate.touch()
        errors = [e for e in pending.get(timeout=120) if e]
    assert errors == []
    engine = create_engine(empty_postgres.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        assert differences(connection) == []
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all() == [SCHEMA_REVISION]
    engine.dispose()


def test_a_version_1_postgresql_database_migrates_forward_on_open(empty_postgres: str) -> None:
    from matinee.core.storage.metadata import MetadataStore

    engine = create_engine(empty_postgres.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.exec_driver_sql(
            "INSERT INTO runs (flow_name, status, user_name, created_at) VALUES ('Old', 'completed', 'u', 1)"
        )
        connection.exec_driver_sql(
            "INSERT INTO model_versions (name, version, run_id, artifact_key, created_at) VALUES ('old', 1, 1, 'k', 1)"
        )
    engine.dispose()
    meta = MetadataStore.open(empty_postgres)
    try:
        assert meta.db.query("SELECT version_num FROM alembic_version") == [{"version_num": SCHEMA_REVISION}]
        assert meta.get_run(1)["flow_name"] == "Old"  # type: ignore[index]
        assert meta.add_model_version("old", {"artifact_key": "k2"}) == 2
        assert meta.model_version("old", 1)["description"] is None  # type: ignore[index]
    finally:
        meta.close()


def test_a_newer_postgresql_schema_asks_to_upgrade_matinee(postgres_url: str) -> None:
    from matinee.core.storage.metadata import MetadataStore
    from matinee.errors import StorageError

    newer = f"{SCHEMA_VERSION + 1:04d}"
    meta = MetadataStore.open(postgres_url)
    meta.db.execute("UPDATE alembic_version SET version_num = :v", dict(v=newer))
    meta.close()
    with pytest.raises(StorageError, match="upgrade matinee") as info:
        MetadataStore.open(postgres_url)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(info.value)
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        assert current_revision(connection) == newer
    engine.dispose()
