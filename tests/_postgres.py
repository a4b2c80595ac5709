"""A real PostgreSQL server for the tests: started once per session, a fresh database per test.

The server is the one installed on the machine (Debian's ``postgresql`` package puts
``initdb``, ``pg_ctl`` and ``postgres`` in ``/usr/lib/postgresql/<major>/bin``; set
``MATINEE_TEST_PG_BIN`` to use another folder). Each pytest process (each xdist worker)
runs its own throwaway cluster in a temporary folder, listening on 127.0.0.1 and a free
port only, with durability switched off (``fsync=off``) since nothing in it outlives
the session. ``initdb`` refuses to run as root, so as root the cluster belongs to the
``postgres`` user.

The schema is migrated once into a template database; every test gets a database of
its own with that schema and no rows: a copy of the template (``CREATE DATABASE ...
TEMPLATE``), or a database an earlier test used, emptied (``TRUNCATE ... RESTART
IDENTITY``, so ids start at 1 again) after its connections were closed -- copying is
~0.1-0.4 s, emptying ~0.01 s. A background thread keeps a few ready. When no server can be started the PostgreSQL tests are
skipped with the reason -- unless ``MATINEE_REQUIRE_POSTGRES=1`` (set in CI), which
turns that into a failure.

Fixtures: ``postgres`` (the server), ``postgres_url`` (a fresh database) and
``metadata_url`` (parametrized over ``sqlite`` and ``postgresql``: points
``MATINEE_METADATA_URL`` of the test's store at a fresh database of that dialect).
"""

from __future__ import annotations

import atexit
import glob
import importlib.util
import itertools
import os
import pwd
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TEMPLATE = "matinee_template"
PREFETCH = 3  # databases copied ahead of the tests that will use them


def find_bindir() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl``: the setting, then PATH, then Debian's layout."""
    candidates = []
    if os.environ.get("MATINEE_TEST_PG_BIN"):
        candidates.append(Path(os.environ["MATINEE_TEST_PG_BIN"]))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def major(path: str) -> int:
        part = Path(path).parent.parent.name
        return int(part) if part.isdigit() else 0

    candidates += [Path(p).parent for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major, reverse=True)]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Unavailable(Exception):
    """No server can be started here; the message says why."""


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1, owned by this process."""

    user = "matinee"

    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        self.bindir = bindir
        self.durable = durable  # the server's default durability (benchmarks), else fsync=off (tests)
        self.root = Path(tempfile.mkdtemp(prefix="matinee-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._as: list[str] = []
        self._names = itertools.count()
        self._ready: queue.Queue[str] = queue.Queue(maxsize=PREFETCH)
        self._used: queue.Queue[tuple[str, bool]] = queue.Queue()
        self._shape: tuple[frozenset[str], list[tuple[str, ...]]] = (frozenset(), [])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root, and there is no 'postgres' user to run initdb as") from None
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            runuser = shutil.which("runuser")
            self._as = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-s", "/bin/sh", "-c"]

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(a) for a in args]
        if self._as and self._as[0] == "su":
            import shlex

            command = [*self._as, shlex.join(command)]
        else:
            command = [*self._as, *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def start(self) -> None:
        done = self._run(self.bindir / "initdb", "--no-sync", "-A", "trust", "-U", self.user, "-E", "UTF8",
                         "--locale=C", "-D", self.data)
        if done.returncode:
            raise Unavailable(f"initdb failed: {(done.stderr or done.stdout).strip()[-500:]}")
        for _attempt in range(5):  # another process may take the free port between the check and the start
            self.port = free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c max_connections=300"
            if not self.durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB"
            done = self._run(self.bindir / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options,
                             "-w", "-t", "60", "start")
            if done.returncode == 0:
                break
        else:
            tail = self.log.read_text()[-800:] if self.log.exists() else done.stderr
            raise Unavailable(f"the PostgreSQL server did not start: {tail.strip()}")
        atexit.register(self.stop)
        self._make_template()
        self._thread = threading.Thread(target=self._keep_databases_ready, name="pg-databases", daemon=True)
        self._thread.start()

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> object:
        import psycopg

        return psycopg.connect(self.url("postgres"), autocommit=True)

    def _make_template(self) -> None:
        from matinee.core.storage.metadata import MetadataStore

        with self.admin() as conn:  # type: ignore[attr-defined]
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        MetadataStore.open(self.url(TEMPLATE)).close()  # migrated once; every test copies it
        self._shape = self._describe(TEMPLATE)

    def _describe(self, name: str, conn: object = None) -> tuple[frozenset[str], list[tuple[str, ...]]]:
        """The tables of a database and its schema revision: what a recycled database must still have."""
        import psycopg

        if conn is None:
            with psycopg.connect(self.url(name), autocommit=True) as own:
                return self._describe(name, own)
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")  # type: ignore[attr-defined]
        tables = frozenset(r[0] for r in rows)
        version = list(conn.execute("SELECT version_num FROM alembic_version")) if "alembic_version" in tables else []  # type: ignore[attr-defined]
        return tables, version

    def _create(self, conn: object, template: str = TEMPLATE) -> str:
        name = f"test_{os.getpid()}_{next(self._names)}"
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")  # type: ignore[attr-defined]
        return name

    def _recycle(self, admin: object, name: str) -> bool:
        """Empty a used database for the next test (much cheaper than a new copy); False if it changed shape."""
        import psycopg

        admin.execute(  # type: ignore[attr-defined]
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        try:
            with psycopg.connect(self.url(name), autocommit=True) as conn:
                if self._describe(name, conn) != self._shape:
                    return False
                tables = sorted(self._shape[0] - {"alembic_version"})
                conn.execute("SET lock_timeout = '10s'")
                conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        except psycopg.Error:
            return False
        return True

    def _keep_databases_ready(self) -> None:
        try:
            with self.admin() as conn:  # type: ignore[attr-defined]
                while not self._stop.is_set():
                    try:  # a used database first; with enough ready, wait for one
                        name, reuse = self._used.get(timeout=0.1) if self._ready.full() else self._used.get_nowait()
                    except queue.Empty:
                        if not self._ready.full():
                            self._ready.put(self._create(conn))
                        continue
                    if reuse and not self._ready.full() and self._recycle(conn, name):
                        self._ready.put(name)
                    else:
                        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except Exception:  # the server went away (session end); tests fall back to creating their own
            return

    def database(self, *, empty: bool = False) -> str:
        """A database only the caller uses: an empty copy of the migrated template, or with
        ``empty`` a database without any table."""
        if empty:
            with self.admin() as conn:  # type: ignore[attr-defined]
                return self._create(conn, template="template0")
        if self._thread is not None and self._thread.is_alive():
            try:
                return self._ready.get(timeout=30)
            except queue.Empty:
                pass
        with self.admin() as conn:  # type: ignore[attr-defined]
            return self._create(conn)

    def release(self, name: str, *, reuse: bool = True) -> None:
        """Done with database ``name``: it is emptied for another test (or dropped)."""
        self._used.put((name, reuse))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.data.exists():
            self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def start_server(*, durable: bool = False) -> PostgresServer:
    """Start a server, or raise :class:`Unavailable` saying why it cannot be."""
    if importlib.util.find_spec("psycopg") is None:
        raise Unavailable("psycopg is not installed (pip install 'matinee[postgres]')")
    bindir = find_bindir()
    if bindir is None:
        raise Unavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl) found: install the postgresql package"
            " or set MATINEE_TEST_PG_BIN"
        )
    server = PostgresServer(bindir, durable=durable)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test session (skips, or fails in CI, if none can be started)."""
    try:
        server = start_server()
    except (Unavailable, OSError, subprocess.SubprocessError) as exc:
        reason = f"no PostgreSQL server for the tests: {exc}"
        if os.environ.get("MATINEE_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, migrated database on the session's server."""
    name = postgres.database()
    yield postgres.url(name)
    from matinee.core.store import close_stores

    close_stores()
    postgres.release(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def metadata_url(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per dialect: its store (``open_store()``) uses a fresh database of each."""
    from matinee.core.store import close_stores

    if request.param == "sqlite":
        return f"sqlite:///{home / 'matinee.db'}"
    url: str = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("MATINEE_METADATA_URL", url)
    close_stores()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_meta(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A :class:`~matinee.core.storage.metadata.MetadataStore` on a fresh database of each dialect."""
    from matinee.core.storage.metadata import MetadataStore

    url = f"sqlite:///{tmp_path / 'meta.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = MetadataStore.open(url)
    yield store
    store.close()
