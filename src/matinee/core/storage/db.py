"""Connections to the metadata database, behind one narrow protocol.

All of matinee's SQL lives in :mod:`matinee.core.storage.metadata` and is
written once, as portable text with ``:name`` parameters. It runs on:

* :class:`SqliteDatabase` -- the embedded default, on the standard library's
  ``sqlite3`` (WAL, a busy timeout, ``BEGIN IMMEDIATE`` for writes). Opening an
  up-to-date database imports nothing heavy, so ``python flow.py run`` and the
  CLI start in milliseconds; SQLAlchemy and Alembic are imported only when the
  schema must be created or migrated.
* :class:`SqlAlchemyDatabase` -- any other URL SQLAlchemy understands
  (``postgresql://...`` through psycopg 3), migrated with Alembic on first use.
  A transaction is one pooled connection per thread; :meth:`~Database.lock`
  takes a transaction-scoped advisory lock where SQLite's ``BEGIN IMMEDIATE``
  already serializes every writer.

What differs between the dialects is kept out of the SQL: upserts are written
``INSERT ... ON CONFLICT`` (both understand it), new ids come back through
:meth:`~Database.insert` (``lastrowid`` or ``RETURNING id``), times are floats
and structured values JSON text.

The schema itself is :mod:`matinee.core.storage.schema` and its migrations.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from matinee.errors import ConfigError, StorageError, missing_extra

#: The Alembic head revision this code expects; SQLite mirrors it in ``PRAGMA user_version``.
SCHEMA_REVISION = "0005"
SCHEMA_VERSION = int(SCHEMA_REVISION)

Row = dict[str, Any]


def enable_wal(conn: sqlite3.Connection, path: Path, timeout: float) -> None:
    """Put the SQLite database at ``path`` in WAL mode, safely under concurrency.

    Switching a fresh database to WAL needs an exclusive lock, and SQLite answers
    "database is locked" at once -- without waiting on the busy timeout -- when
    another process is doing the same switch. So the switch happens once, under
    a file lock beside the database, and is retried until ``timeout``. A database
    already in WAL mode (the usual case) costs one pragma read.
    """
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        return
    import fcntl

    deadline = time.monotonic() + timeout
    with open(path.with_name(path.name + ".migrate-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


class Database(Protocol):
    """What the metadata store needs from a SQL connection."""

    dialect: str

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]: ...

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int: ...

    def executemany(self, sql: str, rows: Iterable[Mapping[str, Any]]) -> None: ...

    def insert(self, sql: str, params: Mapping[str, Any]) -> int: ...

    def transaction(self, *, durable: bool = True) -> Any:
        """A block of statements that commit together (or not at all). ``durable=False``
        may acknowledge the commit before it is on disk (a server crash can lose the
        last moments of such commits; they stay atomic): for metric batches."""
        ...

    def lock(self, key: str) -> None:
        """Hold an exclusive lock named ``key`` until the enclosing transaction ends."""
        ...

    def close(self) -> None: ...


def connect(url: str) -> Database:
    """Open the database at ``url``, creating or migrating its schema if needed."""
    if url.startswith("sqlite:///"):
        return SqliteDatabase(Path(url[len("sqlite:///") :]))
    if url.startswith(("postgresql", "postgres")):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise missing_extra("psycopg", "postgres") from None
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return SqlAlchemyDatabase(url)
    raise ConfigError(
        f"unsupported metadata URL {url!r}: use sqlite:///PATH or postgresql://... (MATINEE_METADATA_URL)",
        setting="metadata_url",
    )


def migrate(connection: Any) -> None:
    """Bring the schema behind a SQLAlchemy ``connection`` to :data:`SCHEMA_REVISION`."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class SqliteDatabase:
    """The embedded metadata database: one SQLite file, safe across processes.

    One connection per process (reopened after a fork) guarded by a lock, so the
    object can be shared by threads. Writes that span statements go through
    :meth:`transaction`, which takes the write lock up front (``BEGIN IMMEDIATE``)
    so that concurrent writers wait on the busy timeout instead of failing.
    """

    dialect = "sqlite"

    def __init__(self, path: Path, busy_timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._depth = 0
        self._pid = -1
        self._conn: sqlite3.Connection | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._ensure_schema()

    # -- connection ---------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        enable_wal(conn, self.path, self.busy_timeout)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open()
            self._pid = os.getpid()
            self._depth = 0
            self._lock = threading.RLock()
        return self._conn

    def _ensure_schema(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"the metadata database {self.path} has schema version {version}, newer than this "
                f"matinee understands ({SCHEMA_VERSION}); upgrade matinee",
                path=str(self.path),
            )
        import fcntl

        with open(self.path.with_name(self.path.name + ".migrate-lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            try:
                from sqlalchemy import create_engine
            except ImportError:  # pragma: no cover - a core dependency
                raise missing_extra("sqlalchemy", "core") from None
            engine = create_engine(f"sqlite:///{self.path}")
            with engine.begin() as connection:
                migrate(connection)
            engine.dispose()
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- protocol -------------------------------------------------------------
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        with self._lock:
            return [dict(r) for r in self._run(sql, params).fetchall()]

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        with self._lock:
            return self._run(sql, params).rowcount

    def insert(self, sql: str, params: Mapping[str, Any]) -> int:
        with self._lock:
            rowid = self._run(sql, params).lastrowid
            assert rowid is not None
            return rowid

    def executemany(self, sql: str, rows: Iterable[Mapping[str, Any]]) -> None:
        with self.transaction():
            try:
                self.conn.executemany(sql, rows)
            except sqlite3.Error as exc:
                raise StorageError(f"metadata write failed: {exc}") from exc

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[None]:
        # ``durable`` changes nothing: in WAL mode with synchronous=NORMAL no commit waits for the disk
        with self._lock:
            conn = self.conn
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageError(f"cannot lock the metadata database {self.path}: {exc}") from exc
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                conn.execute("ROLLBACK")
                raise
            self._depth = 0
            conn.execute("COMMIT")

    def lock(self, key: str) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already holds the database's one write lock."""
        if not self._depth:
            raise StorageError("lock() needs an open transaction")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def _run(self, sql: str, params: Mapping[str, Any] | None) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params or {})
        except sqlite3.Error as exc:
            raise StorageError(f"metadata query failed: {exc}") from exc


class SqlAlchemyDatabase:
    """Any database SQLAlchemy speaks to (PostgreSQL for teams), same SQL text.

    Statements outside a transaction run on a pooled connection each, in their
    own short transaction; :meth:`transaction` pins one connection to the
    calling thread until the block ends (commit) or raises (rollback). The
    isolation level is the server's default (READ COMMITTED on PostgreSQL), so
    every statement sees what committed before it: a writer that first takes
    :meth:`lock` reads the state the previous holder left.
    """

    #: Advisory lock keys: the migration lock (one 64-bit key) and the class of
    #: :meth:`lock` keys (two 32-bit keys; the two key spaces never overlap).
    MIGRATION_LOCK = 74221
    LOCK_CLASS = 74222

    def __init__(self, url: str) -> None:
        try:
            from sqlalchemy import create_engine
            from sqlalchemy.exc import SQLAlchemyError
        except ImportError:  # pragma: no cover - a core dependency
            raise missing_extra("sqlalchemy", "core") from None

        self.engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=16)
        self.dialect = self.engine.dialect.name
        self._local = threading.local()
        self._pid = os.getpid()
        try:
            self._ensure_schema()
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise StorageError(f"cannot open the metadata database {self._where()}: {_reason(exc)}",
                               url=self._where()) from exc
        except BaseException:
            self.engine.dispose()
            raise

    def _where(self) -> str:
        return str(self.engine.url.render_as_string(hide_password=True))

    def _revision(self, connection: Any) -> str | None:
        from sqlalchemy import inspect

        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

    def _ensure_schema(self) -> None:
        with self.engine.begin() as connection:
            current = self._revision(connection)
            if current == SCHEMA_REVISION:
                return
            if self.dialect == "postgresql":  # one migrator at a time; the others then find it done
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({self.MIGRATION_LOCK})")
                current = self._revision(connection)
            if current is not None and current.isdigit() and int(current) > SCHEMA_VERSION:
                raise StorageError(
                    f"the metadata database {self._where()} has schema version {int(current)}, newer than"
                    f" this matinee understands ({SCHEMA_VERSION}); upgrade matinee",
                    url=self._where(),
                )
            if current != SCHEMA_REVISION:
                migrate(connection)

    def _connection(self) -> Any:
        if self._pid != os.getpid():  # after a fork, never share the parent's sockets
            self.engine.dispose(close=False)
            self._pid = os.getpid()
            self._local = threading.local()
        return getattr(self._local, "conn", None)

    def _execute(self, sql: str, params: Mapping[str, Any] | None) -> Any:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        conn = self._connection()
        try:
            if conn is not None:
                return conn.execute(text(sql), dict(params or {}))
            with self.engine.begin() as own:
                result = own.execute(text(sql), dict(params or {}))
                return _Buffered(result)
        except SQLAlchemyError as exc:
            raise StorageError(f"metadata query failed: {_reason(exc)}") from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        result = self._execute(sql, params)
        return [dict(r) for r in result.mappings()] if not isinstance(result, _Buffered) else result.rows

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        return int(self._execute(sql, params).rowcount)

    def insert(self, sql: str, params: Mapping[str, Any]) -> int:
        rows = self.query(sql + " RETURNING id", params)
        return int(rows[0]["id"])

    def executemany(self, sql: str, rows: Iterable[Mapping[str, Any]]) -> None:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        batch = [dict(r) for r in rows]
        if not batch:
            return
        with self.transaction():
            try:
                self._local.conn.execute(text(sql), batch)
            except SQLAlchemyError as exc:
                raise StorageError(f"metadata write failed: {_reason(exc)}") from exc

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[None]:
        from sqlalchemy.exc import SQLAlchemyError

        if self._connection() is not None:
            yield
            return
        try:
            with self.engine.begin() as conn:
                self._local.conn = conn
                try:
                    if not durable and self.dialect == "postgresql":  # don't wait for the WAL flush
                        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    yield
                finally:
                    self._local.conn = None
        except SQLAlchemyError as exc:  # the commit itself failed (a deferred constraint, a lost connection)
            raise StorageError(f"metadata transaction failed: {_reason(exc)}") from exc

    def lock(self, key: str) -> None:
        """A transaction-scoped advisory lock on ``key`` (PostgreSQL); released by commit or rollback."""
        if self._connection() is None:
            raise StorageError("lock() needs an open transaction")
        if self.dialect == "postgresql":
            self.query("SELECT pg_advisory_xact_lock(:cls, :key)", dict(cls=self.LOCK_CLASS, key=_key32(key)))

    def close(self) -> None:
        self.engine.dispose()


def _key32(key: str) -> int:
    """A stable signed 32-bit number for ``key`` (an advisory lock key)."""
    import zlib

    value = zlib.crc32(key.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def _reason(exc: Exception) -> str:
    """The database's own message, without SQLAlchemy's statement dump and background link."""
    original = getattr(exc, "orig", None)
    lines = [line.strip() for line in str(original if original is not None else exc).splitlines()]
    return " ".join(line for line in lines if line) or type(exc).__name__


class _Buffered:
    """A result read to the end before its connection closed."""

    def __init__(self, result: Any) -> None:
        self.rowcount = result.rowcount
        self.rows = [dict(r) for r in result.mappings()] if result.returns_rows else []

