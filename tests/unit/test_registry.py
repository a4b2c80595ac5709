"""The model registry on a real store: versions, lineage, aliases, promote and rollback.

The tests marked ``both_dialects`` run twice, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import matinee
from matinee import NotFoundError, ParameterError
from matinee.core import registry
from matinee.core.client import Run, namespace
from matinee.core.gc import apply_gc, plan_gc
from matinee.core.runtime.runner import Runner
from matinee.core.store import close_stores, open_store

#: Run the test once on SQLite and once on PostgreSQL (see ``metadata_url`` in tests/_postgres.py).
both_dialects = pytest.mark.usefixtures("metadata_url")

TRAIN = """
from matinee import FlowSpec, current, step

class Train(FlowSpec):
    @step
    def start(self):
        self.dataset_hash = "data-123"
        self.model = {"weights": [0.5, 0.25]}
        self.in_flow = current.register_model("inflow", "model", metrics={"auc": 0.75}, tags=["nightly"])
        self.next(self.end)

    @step
    def end(self):
        self.final = {"weights": [1.0]}
"""


@pytest.fixture
def train_run(load_flow: Any) -> Run:
    run_id = Runner(load_flow(TRAIN, "Train"), executor="inline", quiet=True).run()
    return Run(f"Train/{run_id}")


@both_dialects
def test_register_an_object_records_lineage_and_loads_back() -> None:
    v = matinee.register_model("ranker", {"w": [1, 2]}, metrics={"ndcg": 0.3}, tags=["a", "b"],
                               description="first", dataset_hash="d1")
    assert isinstance(v, matinee.ModelVersion)
    assert (v.name, v.version, v.user, v.dataset_hash) == ("ranker", 1, "tester", "d1")
    assert v.metrics == {"ndcg": 0.3} and v.tags == ["a", "b"] and v.description == "first"
    assert v.matinee_version == matinee.__version__
    assert "numpy" in v.package_versions
    assert v.run_pathspec is None and v.source is None
    assert v.codec and v.size and v.size > 0
    assert matinee.load_model("ranker") == {"w": [1, 2]}
    assert matinee.load_model("ranker/1") == {"w": [1, 2]}
    assert matinee.register_model("ranker", [3]).version == 2
    assert [x.version for x in registry.versions("ranker")] == [1, 2]


@both_dialects
def test_register_from_a_run_artifact(train_run: Run) -> None:
    start = train_run["start"].task
    end = train_run["end"].task
    by_task = matinee.register_model("m", f"{start.pathspec}:model")
    assert by_task.task_pathspec == start.pathspec and by_task.run_pathspec == train_run.pathspec
    assert by_task.artifact_name == "model" and by_task.source == f"{start.pathspec}:model"
    assert by_task.artifact_key == start["model"].key
    assert by_task.dataset_hash == "data-123"
    assert by_task.code_version == train_run.code_hash and by_task.code_version
    by_run = matinee.register_model("m", f"{train_run.pathspec}:final")
    assert by_run.task_pathspec == end.pathspec and by_run.version == 2
    assert by_run.dataset_hash == "data-123"  # the end task inherits it
    assert matinee.register_model("m", train_run, artifact="final").artifact_key == end["final"].key
    assert matinee.register_model("m", start, artifact="model", dataset_hash="x").dataset_hash == "x"
    assert matinee.load_model("m/2") == {"weights": [1.0]}


@both_dialects
def test_a_step_registers_a_model_with_its_run_and_task(train_run: Run) -> None:
    start = train_run["start"].task
    (v,) = registry.versions("inflow")
    assert v.run_pathspec == train_run.pathspec and v.task_pathspec == start.pathspec
    assert v.artifact_name == "model" and v.artifact_key == start["model"].key
    assert v.metrics == {"auc": 0.75} and v.tags == ["nightly"] and v.dataset_hash == "data-123"
    assert start.data.in_flow.version == 1
    assert matinee.load_model("inflow") == {"weights": [0.5, 0.25]}


@both_dialects
def test_a_step_in_a_worker_process_registers_too(load_flow: Any) -> None:
    run_id = Runner(load_flow(TRAIN, "Train"), executor="process", quiet=True).run()
    (v,) = registry.versions("inflow")
    assert v.run_pathspec == f"Train/{run_id}" and v.artifact_name == "model"
    assert matinee.load_model("inflow/1") == {"weights": [0.5, 0.25]}


def test_current_register_model_outside_a_step_raises() -> None:
    with pytest.raises(matinee.FlowError, match="only inside a running step"):
        matinee.current.register_model("x", {})


WORKER = """
import os, sys, time
from matinee import register_model
from matinee.core.store import open_store
open_store()
open(sys.argv[2] + "." + sys.argv[1], "w").close()
while not os.path.exists(sys.argv[2]):  # start together, so registrations overlap
    time.sleep(0.001)
for i in range(10):
    register_model("shared", {"worker": sys.argv[1], "i": i})
"""


@both_dialects
def test_concurrent_processes_never_reuse_a_version(tmp_path: Path) -> None:
    open_store()  # create the schema first, as a real deployment has
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), str(w), str(go)], env=dict(os.environ)) for w in range(4)]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("go.*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    found = registry.versions("shared")
    assert sorted(v.version for v in found) == list(range(1, 41))
    loaded = {(d["worker"], d["i"]) for d in (v.load() for v in found)}
    assert len(loaded) == 40


@both_dialects
def test_aliases_set_move_delete_with_history() -> None:
    for value in range(3):
        matinee.register_model("a", [value])
    registry.set_alias("a", "challenger", 1)
    registry.set_alias("a", "challenger", 3)
    assert registry.get_model("a", alias="challenger").version == 3
    assert registry.get_model("a", 3).aliases == ["challenger"]
    assert registry.delete_alias("a", "challenger") == 3
    history = [(c.alias, c.action, c.from_version, c.to_version, c.user) for c in registry.alias_history("a")]
    assert history == [
        ("challenger", "set", None, 1, "tester"),
        ("challenger", "move", 1, 3, "tester"),
        ("challenger", "delete", 3, None, "tester"),
    ]
    with pytest.raises(NotFoundError, match="no alias 'challenger'"):
        registry.get_model("a", alias="challenger")
    assert registry.list_models()[0]["aliases"] == {}


@both_dialects
def test_promote_and_rollback_walk_the_history() -> None:
    for value in range(3):
        matinee.register_model("p", [value])
    for version in (1, 2, 3):
        registry.promote("p", version)
    assert matinee.load_model("p@champion") == [2]
    assert registry.rollback("p").version == 2
    assert registry.rollback("p").version == 1
    assert matinee.load_model("p@champion") == [0]
    with pytest.raises(NotFoundError, match="no earlier version"):
        registry.rollback("p")
    moves = [(c.action, c.from_version, c.to_version) for c in registry.alias_history("p", "champion")]
    assert moves == [("promote", None, 1), ("promote", 1, 2), ("promote", 2, 3),
                     ("rollback", 3, 2), ("rollback", 2, 1)]
    registry.promote("p", 3, alias="challenger")
    assert {m["name"]: m["aliases"] for m in registry.list_models()} == {"p": {"champion": 1, "challenger": 3}}


@both_dialects
def test_a_failed_promote_changes_nothing() -> None:
    matinee.register_model("f", [1])
    registry.promote("f", 1)
    with pytest.raises(NotFoundError, match="no version 7"):
        registry.promote("f", 7)
    assert registry.get_model("f", alias="champion").version == 1
    assert len(registry.alias_history("f")) == 1


@both_dialects
def test_gc_keeps_the_run_and_blob_of_a_registered_model(train_run: Run) -> None:
    key = matinee.register_model("kept", f"{train_run.pathspec}:final").artifact_key
    loose = matinee.register_model("loose", {"not": "in a run"}).artifact_key
    store = open_store()
    plan = plan_gc(store, keep_last=0, grace=0)
    assert train_run.id in plan.kept_for_models and not plan.runs
    apply_gc(store, plan)
    assert key not in {b.key for b in plan.blobs} and loose not in {b.key for b in plan.blobs}
    assert matinee.load_model("kept") == {"weights": [1.0]}
    assert matinee.load_model("loose") == {"not": "in a run"}


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: registry.get_model("nope"), NotFoundError, "no model named 'nope'"),
        (lambda: registry.get_model("known", 5), NotFoundError, "no version 5"),
        (lambda: registry.get_model("known", alias="gone"), NotFoundError, "no alias 'gone'"),
        (lambda: matinee.load_model("nope@champion"), NotFoundError, "no model named 'nope'"),
        (lambda: registry.delete_alias("known", "gone"), NotFoundError, "no alias 'gone'"),
        (lambda: registry.rollback("known"), NotFoundError, "no alias 'champion'"),
        (lambda: registry.versions("nope"), NotFoundError, "no model named 'nope'"),
        (lambda: matinee.register_model("m", "Nope/1:model"), NotFoundError, "run Nope/1 does not exist"),
        (lambda: matinee.register_model("m", "Nope/1/start/9:model"), NotFoundError, "does not exist"),
        (lambda: matinee.register_model("bad name", {}), ParameterError, "invalid model name 'bad name'"),
        (lambda: matinee.register_model("a@b", {}), ParameterError, "invalid model name"),
        (lambda: matinee.register_model("", {}), ParameterError, "invalid model name"),
        (lambda: matinee.register_model("m", "not a source"), ParameterError, "cannot read the model source"),
        (lambda: matinee.register_model("m", {}, metrics={"x": "high"}), ParameterError, "metric 'x'"),
        (lambda: matinee.register_model("m", {}, tags="one"), ParameterError, "tags must be"),
        (lambda: matinee.register_model("m", {}, artifact="model"), ParameterError, "artifact= applies"),
        (lambda: matinee.load_model("known/zero"), ParameterError, "invalid model version"),
        (lambda: matinee.load_model("known@1st"), ParameterError, "invalid alias"),
        (lambda: registry.set_alias("known", "champion", 0), ParameterError, "invalid model version"),
        (lambda: registry.get_model("known", 1, "champion"), ParameterError, "not both"),
    ],
)
def test_errors_name_what_is_wrong(call: Any, error: type[Exception], message: str) -> None:
    matinee.register_model("known", {"v": 1})
    with pytest.raises(error, match=message):
        call()


@both_dialects
def test_an_artifact_the_task_lacks_is_named(train_run: Run) -> None:
    with pytest.raises(NotFoundError, match="no artifact 'missing'.*it has: "):
        matinee.register_model("m", f"{train_run.pathspec}:missing")


@both_dialects
def test_other_users_runs_can_be_registered(train_run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATINEE_USER", "someone-else")
    close_stores()
    namespace("user:someone-else")
    v = matinee.register_model("shared", f"{train_run.pathspec}:final")
    assert v.user == "someone-else" and v.run_pathspec == train_run.pathspec


def test_a_version_1_database_migrates_forward_and_keeps_its_rows(home: Path) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from matinee.core.storage import db as dbmod

    home.mkdir(parents=True)
    path = home / "matinee.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(Path(dbmod.__file__).parent / "migrations"))
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.exec_driver_sql(
            "INSERT INTO runs (flow_name, status, user_name, created_at) VALUES ('Old', 'completed', 'tester', 1)"
        )
        connection.exec_driver_sql(
            "INSERT INTO model_versions (name, version, run_id, artifact_key, created_at) VALUES ('old', 1, 1, 'k', 1)"
        )
    engine.dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 1")
    conn.close()

    store = open_store()
    assert store.metadata.db.query("PRAGMA user_version")[0]["user_version"] == dbmod.SCHEMA_VERSION
    assert store.metadata.get_run(1)["flow_name"] == "Old"
    old = registry.get_model("old", 1)
    assert (old.run_pathspec, old.artifact_key, old.tags, old.metrics) == ("Old/1", "k", [], {})
    assert matinee.register_model("old", {"new": True}).version == 2


def test_registering_imports_no_heavy_module_until_used() -> None:
    code = textwrap.dedent(
        """
        import sys, matinee
        matinee.register_model, matinee.load_model, matinee.ModelVersion
        print(any(m in sys.modules for m in ("numpy", "pandas", "sqlalchemy")))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
