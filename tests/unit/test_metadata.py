"""The metadata store, on SQLite, on PostgreSQL and through a server: runs, tasks, artifacts, metrics, reaping.

Every test taking ``meta`` (or ``url``) runs once per backend: SQLite, PostgreSQL,
and "remote" -- the remote store (:mod:`matinee.core.storage.remote`) talking to a
real ``matinee server`` on 127.0.0.1 over a fresh SQLite file. Tests marked
:data:`LOCAL_ONLY` reach into the database itself (``meta.db``), open the store
from its URL in other processes, or exercise garbage collection, which runs on
the server only: the remote store has none of these, so their remote variant is
not collected. The
``sqlite_meta`` tests are about the SQLite file itself.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _web_server import matinee_server, server_env
from matinee.core.artifacts.store import ArtifactRef
from matinee.core.storage.db import SCHEMA_VERSION, SqliteDatabase, connect
from matinee.core.storage.metadata import (
    COMPLETED,
    FAILED,
    RUNNING,
    STALE_AFTER,
    MetadataStore,
    foreach_key,
)
from matinee.core.storage.remote import Client, RemoteMetadataStore
from matinee.errors import ConfigError, ParameterError, StorageError


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database file, copied for each test (migrating takes ~0.1 s)."""
    path = tmp_path_factory.mktemp("template") / "meta.db"
    MetadataStore.open(f"sqlite:///{path}").close()
    return path


@pytest.fixture
def db_path(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "meta.db"
    shutil.copy(template, path)
    return path


@pytest.fixture(params=["sqlite", "postgresql", "remote"])
def url(request: pytest.FixtureRequest, db_path: Path, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated metadata database of each dialect, or a server over one (its http:// URL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{db_path}"
    elif request.param == "postgresql":
        yield str(request.getfixturevalue("postgres_url"))
    else:
        env = server_env(tmp_path / "server-home", MATINEE_METADATA_URL=f"sqlite:///{db_path}")
        with matinee_server(env) as server:
            yield server


@pytest.fixture
def meta(url: str) -> Iterator[MetadataStore]:
    store: Any = RemoteMetadataStore(Client(url)) if url.startswith("http") else MetadataStore.open(url)
    yield store
    store.close()


#: Tests that need the store's own database (``meta.db``), open the store by URL in other processes,
#: or are garbage collection: the remote store offers none of these (they run on the server), so
#: their "remote" variant is not collected (tests/conftest.py drops it).
LOCAL_ONLY = pytest.mark.local_store


def is_remote(meta: Any) -> bool:
    return isinstance(meta, RemoteMetadataStore)


@pytest.fixture
def sqlite_meta(db_path: Path) -> Iterator[MetadataStore]:
    store = MetadataStore.open(f"sqlite:///{db_path}")
    yield store
    store.close()


def python(code: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


# -- runs, tags, params ---------------------------------------------------------------


def test_create_and_get_a_run(meta: MetadataStore) -> None:
    before = time.time()
    run_id = meta.create_run("TrainFlow", "alice", code_hash="abc", executor="inline")
    run = meta.get_run(run_id)
    assert run is not None
    assert run["id"] == run_id
    assert (run["flow_name"], run["user_name"], run["kind"], run["status"]) == ("TrainFlow", "alice", "flow", RUNNING)
    assert (run["code_hash"], run["executor"], run["pid"]) == ("abc", "inline", os.getpid())
    assert before <= run["created_at"] <= time.time()
    assert run["finished_at"] is None and run["error"] is None


def test_get_a_missing_run_is_none(meta: MetadataStore) -> None:
    assert meta.get_run(12345) is None


def test_finish_run_records_status_time_and_error(meta: MetadataStore) -> None:
    ok = meta.create_run("F", "u")
    bad = meta.create_run("F", "u")
    meta.finish_run(ok, COMPLETED)
    meta.finish_run(bad, FAILED, "ValueError: boom")
    assert meta.get_run(ok)["status"] == COMPLETED  # type: ignore[index]
    failed = meta.get_run(bad)
    assert failed is not None
    assert (failed["status"], failed["error"]) == (FAILED, "ValueError: boom")
    assert failed["finished_at"] >= failed["created_at"]


def test_list_runs_newest_first_with_filters(meta: MetadataStore) -> None:
    a1 = meta.create_run("A", "u", tags=["nightly"])
    b1 = meta.create_run("B", "u")
    a2 = meta.create_run("A", "u")
    t1 = meta.create_run("tuning", "u", kind="tracking")
    assert [r["id"] for r in meta.list_runs()] == [t1, a2, b1, a1]
    assert [r["id"] for r in meta.list_runs("A")] == [a2, a1]
    assert [r["id"] for r in meta.list_runs(tag="nightly")] == [a1]
    assert [r["id"] for r in meta.list_runs(tag="user:u")] == [t1, a2, b1, a1]
    assert [r["id"] for r in meta.list_runs(kind="tracking")] == [t1]
    assert [r["id"] for r in meta.list_runs(limit=2)] == [t1, a2]
    assert meta.list_runs("missing") == []


def test_list_flows_counts_flow_runs_only(meta: MetadataStore) -> None:
    meta.create_run("A", "u")
    latest = meta.create_run("A", "u")
    meta.create_run("B", "u")
    meta.create_run("tuning", "u", kind="tracking")
    flows = {r["flow_name"]: r for r in meta.list_flows()}
    assert set(flows) == {"A", "B"}
    assert (flows["A"]["runs"], flows["A"]["latest_run"]) == (2, latest)


def test_tags_user_system_and_removal(meta: MetadataStore) -> None:
    run_id = meta.create_run("F", "bob", tags=["x", "y", "x"], system_tags=["kind:test"])
    assert meta.run_tags(run_id) == [
        {"tag": "kind:test", "system": 1}, {"tag": "user:bob", "system": 1},
        {"tag": "x", "system": 0}, {"tag": "y", "system": 0},
    ]
    meta.add_tags(run_id, ["z", "x"])  # adding an existing tag is a no-op
    meta.remove_tags(run_id, ["y", "user:bob"])  # system tags cannot be removed
    assert [(t["tag"], t["system"]) for t in meta.run_tags(run_id)] == [
        ("kind:test", 1), ("user:bob", 1), ("x", 0), ("z", 0)
    ]


def test_tags_of_many_runs_in_one_call(meta: MetadataStore) -> None:
    a = meta.create_run("F", "ann", tags=["b", "a"])
    b = meta.create_run("F", "bob")
    assert meta.tags_of_runs([]) == {}
    found = meta.tags_of_runs([b, a, a, 424242])
    assert found == {
        a: [{"tag": "user:ann", "system": 1}, {"tag": "a", "system": 0}, {"tag": "b", "system": 0}],
        b: [{"tag": "user:bob", "system": 1}],
        424242: [],
    }
    many = meta.tags_of_runs(range(1, 25_001))  # more than one statement's worth of parameters on SQLite
    assert len(many) == 25_000 and many[a] == found[a] and many[b] == found[b]


@LOCAL_ONLY
def test_a_lock_needs_a_transaction(meta: MetadataStore) -> None:
    with pytest.raises(StorageError, match="needs an open transaction"):
        meta.db.lock("model:x")
    with meta.db.transaction():
        meta.db.lock("model:x")
        meta.db.lock("model:x")  # held already: taking it again does not wait


def test_params_are_json_and_later_values_replace_earlier(meta: MetadataStore, tmp_path: Path) -> None:
    run_id = meta.create_run("F", "u", params={"lr": 0.1, "layers": [64, 32], "name": "ease", "flag": None})
    meta.log_params(run_id, {"lr": 0.01, "path": tmp_path})  # not JSON: stored as its text
    assert meta.run_params(run_id) == {
        "flag": None, "layers": [64, 32], "lr": 0.01, "name": "ease", "path": str(tmp_path)
    }
    assert meta.run_params(meta.create_run("G", "u")) == {}


# -- tasks, attempts, artifacts -----------------------------------------------------


def test_tasks_and_attempts(meta: MetadataStore) -> None:
    run_id = meta.create_run("F", "u")
    start = meta.create_task(run_id, "start")
    branch = meta.create_task(run_id, "body", foreach_stack=[["items", 3], ["inner", 0]], input_paths=[start])
    meta.start_attempt(branch, 0)
    meta.finish_attempt(branch, 0, FAILED, exception="KeyError: 'x'", traceback="Traceback ...", stderr_key="e" * 64)
    meta.start_attempt(branch, 1)
    meta.finish_attempt(branch, 1, COMPLETED, stdout_key="o" * 64)
    meta.finish_task(branch, COMPLETED, transition={"next": ["join"]})

    task = meta.get_task(branch)
    assert task is not None
    assert (task["step_name"], task["status"], task["attempts"]) == ("body", COMPLETED, 2)
    assert task["foreach_key"] == "items:3/inner:0"
    assert json.loads(task["foreach_stack"]) == [["items", 3], ["inner", 0]]
    assert json.loads(task["input_paths"]) == [start]
    assert json.loads(task["transition"]) == {"next": ["join"]}
    attempts = meta.task_attempts(branch)
    assert [(a["attempt"], a["status"]) for a in attempts] == [(0, FAILED), (1, COMPLETED)]
    assert (attempts[0]["exception"], attempts[0]["stderr_key"]) == ("KeyError: 'x'", "e" * 64)
    assert attempts[1]["stdout_key"] == "o" * 64
    assert [t["id"] for t in meta.list_tasks(run_id)] == [start, branch]
    assert [t["id"] for t in meta.list_tasks(run_id, "body")] == [branch]
    assert meta.get_task(99999) is None


def test_a_task_is_unique_per_run_step_and_foreach_position(meta: MetadataStore) -> None:
    run_id = meta.create_run("F", "u")
    meta.create_task(run_id, "body", foreach_stack=[["items", 0]])
    meta.create_task(run_id, "body", foreach_stack=[["items", 1]])
    with pytest.raises(StorageError, match="(?i)unique"):
        meta.create_task(run_id, "body", foreach_stack=[["items", 0]])


def test_a_task_of_a_missing_run_is_refused(meta: MetadataStore) -> None:
    with pytest.raises(StorageError, match="(?i)foreign key"):
        meta.create_task(424242, "start")


def test_finish_task_stores_artifact_refs(meta: MetadataStore) -> None:
    run_id = meta.create_run("F", "u")
    task_id = meta.create_task(run_id, "start")
    refs = {"model": ArtifactRef("a" * 64, "pickle", 10), "x": ArtifactRef("b" * 64, "npy", 2**40)}
    meta.finish_task(task_id, COMPLETED, artifacts=refs)
    assert meta.task_artifacts(task_id) == refs
    assert meta.task_artifacts(meta.create_task(run_id, "end")) == {}


def test_finish_task_is_atomic(meta: MetadataStore) -> None:
    run_id = meta.create_run("F", "u")
    task_id = meta.create_task(run_id, "start")
    meta.finish_task(task_id, COMPLETED, artifacts={"a": ArtifactRef("a" * 64, "pickle", 1)})
    with pytest.raises(StorageError):  # "a" again: the primary key refuses, nothing else changes
        meta.finish_task(task_id, FAILED, artifacts={"b": ArtifactRef("b" * 64, "pickle", 1),
                                                      "a": ArtifactRef("c" * 64, "pickle", 1)})
    assert meta.get_task(task_id)["status"] == COMPLETED  # type: ignore[index]
    assert set(meta.task_artifacts(task_id)) == {"a"}


def test_clone_task_copies_refs_without_restoring(meta: MetadataStore) -> None:
    origin_run = meta.create_run("F", "u")
    origin_id = meta.create_task(origin_run, "train", foreach_stack=[["fold", 2]])
    refs = {"model": ArtifactRef("m" * 64, "pickle", 5)}
    meta.finish_task(origin_id, COMPLETED, transition={"next": ["end"]}, artifacts=refs)
    origin = meta.get_task(origin_id)
    assert origin is not None

    resumed = meta.create_run("F", "u", origin_run_id=origin_run)
    clone_id = meta.clone_task(resumed, origin, [["fold", 2]], [7])
    clone = meta.get_task(clone_id)
    assert clone is not None
    assert (clone["run_id"], clone["step_name"], clone["status"]) == (resumed, "train", COMPLETED)
    assert (clone["cloned_from"], clone["foreach_key"], clone["attempts"]) == (origin_id, "fold:2", 0)
    assert clone["transition"] == origin["transition"]
    assert json.loads(clone["input_paths"]) == [7]
    assert meta.task_artifacts(clone_id) == refs
    assert meta.get_run(resumed)["origin_run_id"] == origin_run  # type: ignore[index]


# -- metrics --------------------------------------------------------------------


def test_metrics_are_stored_in_order_per_name(meta: MetadataStore) -> None:
    run_id = meta.create_run("F", "u")
    task_id = meta.create_task(run_id, "train")
    meta.log_metrics([(run_id, task_id, "loss", 0, 1.0, 10.0), (run_id, None, "acc", None, 0.5, 11.0),
                      (run_id, task_id, "loss", 1, 0.5, 12.0)])
    meta.log_metrics([])
    assert meta.metrics(run_id, "loss") == [
        {"task_id": task_id, "name": "loss", "step": 0, "value": 1.0, "ts": 10.0},
        {"task_id": task_id, "name": "loss", "step": 1, "value": 0.5, "ts": 12.0},
    ]
    assert [(m["name"], m["step"]) for m in meta.metrics(run_id)] == [("acc", None), ("loss", 0), ("loss", 1)]
    assert meta.metrics(meta.create_run("G", "u")) == []


def test_nan_and_infinities_round_trip(meta: MetadataStore) -> None:
    run_id = meta.create_run("F", "u")
    meta.log_metrics([(run_id, None, "loss", 0, 0.5, 1.0), (run_id, None, "loss", 1, math.inf, 2.0),
                      (run_id, None, "loss", 2, -math.inf, 3.0), (run_id, None, "loss", 3, math.nan, 4.0)])
    values = [m["value"] for m in meta.metrics(run_id, "loss")]
    assert values[:3] == [0.5, math.inf, -math.inf] and math.isnan(values[3]) and type(values[3]) is float
    assert math.isnan(meta.latest_metrics([run_id])[run_id]["loss"])
    meta.log_metrics([(run_id, None, "loss", 4, -math.inf, 5.0)])
    assert meta.latest_metrics([run_id])[run_id]["loss"] == -math.inf
    rows, total = meta.search_runs(sort="metric:loss")
    assert total == 1 and rows[0]["sort_value"] == -math.inf


def test_a_failed_metric_batch_stores_nothing(meta: MetadataStore) -> None:
    run_id = meta.create_run("F", "u")
    # a missing value is refused (NULL stands for NaN); a server refuses it before, naming the point (points.1.value)
    with pytest.raises(ParameterError):
        meta.log_metrics([(run_id, None, "ok", 0, 1.0, 1.0), (run_id, None, "bad", 0, None, 1.0)])  # type: ignore[list-item]
    assert meta.metrics(run_id) == []


# -- deletion and what garbage collection may not touch ---------------------------


def _insert_model_version(meta: MetadataStore, run_id: int | None, key: str) -> None:
    meta.db.execute(
        "INSERT INTO model_versions (name, version, run_id, task_id, artifact_key, created_at)"
        " VALUES ('recs', :version, :run, NULL, :key, :now)",
        dict(version=len(meta.db.query("SELECT 1 FROM model_versions")) + 1, run=run_id, key=key, now=time.time()),
    )


@LOCAL_ONLY
def test_referenced_keys_and_protected_runs(meta: MetadataStore) -> None:
    assert meta.referenced_keys() == set()
    assert meta.protected_run_ids() == set()
    run_id = meta.create_run("F", "u")
    task_id = meta.create_task(run_id, "start")
    meta.start_attempt(task_id, 0)
    meta.finish_attempt(task_id, 0, COMPLETED, stdout_key="1" * 64, stderr_key="2" * 64)
    meta.finish_task(task_id, COMPLETED, artifacts={"a": ArtifactRef("3" * 64, "pickle", 1)})
    other = meta.create_run("G", "u")
    _insert_model_version(meta, run_id, "4" * 64)
    _insert_model_version(meta, None, "5" * 64)
    assert meta.referenced_keys() == {"1" * 64, "2" * 64, "3" * 64, "4" * 64, "5" * 64}
    assert meta.protected_run_ids() == {run_id}
    assert other not in meta.protected_run_ids()


@LOCAL_ONLY
def test_referenced_keys_can_ignore_runs_about_to_be_deleted(meta: MetadataStore) -> None:
    def run_with(*keys: str, log: str | None = None) -> int:
        run_id = meta.create_run("F", "u")
        task_id = meta.create_task(run_id, "start")
        meta.start_attempt(task_id, 0)
        meta.finish_attempt(task_id, 0, COMPLETED, stdout_key=log)
        meta.finish_task(task_id, COMPLETED, artifacts={f"a{i}": ArtifactRef(k, "pickle", 1) for i, k in enumerate(keys)})
        return run_id

    shared, only_old, only_new, log, model = ("s" * 64, "o" * 64, "n" * 64, "l" * 64, "m" * 64)
    old = run_with(shared, only_old, log=log)
    older = run_with(only_old)
    new = run_with(shared, only_new)
    _insert_model_version(meta, old, model)
    assert meta.referenced_keys(excluding_runs=[old]) == {shared, only_old, only_new, model}
    assert meta.referenced_keys(excluding_runs=[old, older]) == {shared, only_new, model}
    assert meta.referenced_keys(excluding_runs=[old, older, new]) == {model}
    assert meta.referenced_keys(excluding_runs=iter([])) == {shared, only_old, only_new, log, model}


@LOCAL_ONLY
def test_delete_runs_removes_every_row_of_those_runs_only(meta: MetadataStore) -> None:
    def make(flow: str, key: str) -> int:
        run_id = meta.create_run(flow, "u", tags=["t"], params={"p": 1})
        task_id = meta.create_task(run_id, "start")
        meta.start_attempt(task_id, 0)
        meta.finish_attempt(task_id, 0, COMPLETED, stdout_key=key[::-1])
        meta.finish_task(task_id, COMPLETED, artifacts={"a": ArtifactRef(key, "pickle", 1)})
        meta.log_metrics([(run_id, task_id, "m", 0, 1.0, 1.0)])
        return run_id

    gone = make("A", "a" * 63 + "1")
    kept = make("B", "b" * 63 + "2")
    meta.delete_runs([gone])
    assert meta.get_run(gone) is None
    assert [r["id"] for r in meta.list_runs()] == [kept]
    assert meta.referenced_keys() == {"b" * 63 + "2", "2" + "b" * 63}
    for table in ("runs", "run_tags", "params", "tasks", "attempts", "artifacts", "metrics"):
        count = meta.db.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]
        assert count == (2 if table == "run_tags" else 1), table  # the kept run's tags: "t" and "user:u"
    assert meta.metrics(kept) != [] and meta.run_params(kept) == {"p": 1}


# -- reaping runs whose process is gone --------------------------------------------


@LOCAL_ONLY
def test_a_run_whose_process_died_reads_back_as_failed(meta: MetadataStore, url: str) -> None:
    done = python(f"""
        from matinee.core.storage.metadata import MetadataStore
        meta = MetadataStore.open("{url}")
        run_id = meta.create_run("Crashy", "u")
        meta.create_task(run_id, "start")
        print(run_id)
    """)
    assert done.returncode == 0, done.stderr
    run_id = int(done.stdout)
    assert meta.db.query("SELECT status FROM runs WHERE id = :r", dict(r=run_id))[0]["status"] == RUNNING
    run = meta.get_run(run_id)
    assert run is not None
    assert run["status"] == FAILED
    assert "process" in run["error"] and "ended without finishing the run" in run["error"]
    assert run["finished_at"] is not None
    assert [r["status"] for r in meta.list_runs("Crashy")] == [FAILED]
    assert [t["status"] for t in meta.list_tasks(run_id)] == [FAILED]
    stored = meta.db.query("SELECT status FROM runs WHERE id = :r", dict(r=run_id))[0]
    assert stored["status"] == FAILED  # written back, not only reported


def test_a_run_of_a_live_process_stays_running(meta: MetadataStore) -> None:
    run_id = meta.create_run("F", "u")
    assert meta.get_run(run_id)["status"] == RUNNING  # type: ignore[index]
    assert meta.list_runs()[0]["status"] == RUNNING


@LOCAL_ONLY
@pytest.mark.parametrize("age, status", [(STALE_AFTER + 60, FAILED), (10.0, RUNNING)])
def test_a_run_on_another_host_is_judged_by_its_heartbeat(meta: MetadataStore, age: float, status: str) -> None:
    run_id = meta.create_run("F", "u")
    meta.db.execute(
        "UPDATE runs SET hostname = 'elsewhere', heartbeat_at = :t WHERE id = :r", dict(t=time.time() - age, r=run_id)
    )
    assert meta.get_run(run_id)["status"] == status  # type: ignore[index]


@LOCAL_ONLY
def test_a_heartbeat_keeps_a_remote_run_alive(meta: MetadataStore) -> None:
    run_id = meta.create_run("F", "u")
    meta.db.execute("UPDATE runs SET hostname = 'elsewhere', heartbeat_at = 0, created_at = 0 WHERE id = :r",
                    dict(r=run_id))
    meta.heartbeat(run_id)
    assert meta.get_run(run_id)["status"] == RUNNING  # type: ignore[index]


@LOCAL_ONLY
def test_finished_runs_are_never_reaped(meta: MetadataStore) -> None:
    run_id = meta.create_run("F", "u")
    meta.finish_run(run_id, COMPLETED)
    meta.db.execute("UPDATE runs SET pid = 999999999 WHERE id = :r", dict(r=run_id))
    assert meta.get_run(run_id)["status"] == COMPLETED  # type: ignore[index]


# -- the SQLite file ------------------------------------------------------------------


def test_wal_mode_and_busy_timeout_are_set(sqlite_meta: MetadataStore, db_path: Path) -> None:
    meta = sqlite_meta
    assert meta.db.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"
    assert meta.db.query("PRAGMA busy_timeout")[0]["timeout"] >= 5000
    assert meta.db.query("PRAGMA foreign_keys")[0]["foreign_keys"] == 1
    with sqlite3.connect(db_path) as plain:  # WAL is a property of the file, seen by any reader
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    plain.close()


@LOCAL_ONLY
def test_a_transaction_rolls_back_when_its_block_raises(meta: MetadataStore) -> None:
    with pytest.raises(RuntimeError), meta.db.transaction():
        meta.create_run("Gone", "u")
        raise RuntimeError("abort")
    assert meta.list_runs() == []
    meta.create_run("Kept", "u")  # the connection is usable afterwards
    assert [r["flow_name"] for r in meta.list_runs()] == ["Kept"]


WRITER = """
import os, sys, time
from matinee.core.storage.metadata import MetadataStore
url, run_id, worker, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
meta = MetadataStore.open(url)
open(go + ".ready%d" % worker, "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
for i in range(500):
    meta.log_metrics([(run_id, None, "w%d" % worker, i, float(i), time.time()),
                      (run_id, None, "w%d.sq" % worker, i, float(i * i), time.time())])
meta.close()
"""


@LOCAL_ONLY
def test_four_processes_write_metrics_concurrently(meta: MetadataStore, url: str, tmp_path: Path) -> None:
    run_id = meta.create_run("Busy", "u")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, str(run_id), str(w), str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(4)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"go.ready{w}").exists() for w in range(4)) and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):  # a writer died before starting: report it below
            break
        time.sleep(0.01)
    go.touch()  # all four start writing together
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err
    rows = meta.metrics(run_id)
    assert len(rows) == 4 * 500 * 2
    for w in range(4):
        assert [r["step"] for r in meta.metrics(run_id, f"w{w}")] == list(range(500))
        assert [r["value"] for r in meta.metrics(run_id, f"w{w}.sq")] == [float(i * i) for i in range(500)]


def test_a_newer_schema_asks_to_upgrade_matinee(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StorageError, match="upgrade matinee") as info:
        MetadataStore.open(f"sqlite:///{db_path}")
    assert str(SCHEMA_VERSION + 1) in str(info.value)
    assert info.value.path == str(db_path)  # type: ignore[attr-defined]


def test_opening_an_up_to_date_database_does_not_import_sqlalchemy(db_path: Path, tmp_path: Path) -> None:
    code = """
        import sys
        from matinee.core.storage.metadata import MetadataStore
        meta = MetadataStore.open("sqlite:///{path}")
        run_id = meta.create_run("F", "u", tags=["t"], params={{"a": 1}})
        meta.log_metrics([(run_id, None, "m", 0, 1.0, 0.0)])
        meta.list_runs()
        print("sqlalchemy" in sys.modules, "alembic" in sys.modules)
    """
    warm = python(code.format(path=db_path))
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.split() == ["False", "False"]
    cold = python(code.format(path=tmp_path / "new.db"))  # a new file must be migrated: the check can see it
    assert cold.returncode == 0, cold.stderr
    assert cold.stdout.split() == ["True", "True"]


def test_a_new_database_is_created_with_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "m.db"
    db = SqliteDatabase(path)
    assert db.query("PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION
    db.close()
    assert path.is_file()


@pytest.mark.parametrize(
    "url, error, message",
    [
        ("mysql://host/db", ConfigError, "unsupported metadata URL 'mysql://host/db'"),
        ("sqlite://relative.db", ConfigError, "use sqlite:///PATH"),
        ("/just/a/path.db", ConfigError, "MATINEE_METADATA_URL"),
    ],
)
def test_unsupported_urls_are_refused(url: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(")):
        connect(url)


def test_postgresql_connections_the_server_drops_are_replaced(postgres: Any, postgres_url: str) -> None:
    meta = MetadataStore.open(postgres_url)
    try:
        run_id = meta.create_run("F", "u")
        with postgres.admin() as admin:  # a restarted server or an idle timeout ends every session
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()", [postgres_url.rsplit("/", 1)[1]],
            ).fetchall()
        assert ended  # the store's pooled connection was among them
        assert meta.get_run(run_id)["status"] == RUNNING  # type: ignore[index]
        meta.finish_run(run_id, COMPLETED)
        assert meta.get_run(run_id)["status"] == COMPLETED  # type: ignore[index]
    finally:
        meta.close()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_an_unreachable_postgresql_server_is_one_clear_error(scheme: str) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StorageError, match=f"cannot open the metadata database .*127.0.0.1:{port}/matinee") as info:
        connect(f"{scheme}://someone:secret@127.0.0.1:{port}/matinee")
    assert "secret" not in str(info.value)  # the password is not repeated in errors


def test_postgresql_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed: importing it raises
    with pytest.raises(ConfigError, match=r"pip install 'matinee\[postgres\]'"):
        connect("postgresql://localhost/matinee")


def test_foreach_key() -> None:
    assert foreach_key([]) == ""
    assert foreach_key([("items", 3)]) == "items:3"
    assert foreach_key([["a", 0], ["b", 12]]) == "a:0/b:12"
