"""Several runs at once against one fresh store: nothing fails, nothing is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from matinee import Run
from matinee.core.store import open_store

FLOWS = 4
METRICS_PER_BRANCH = 200

TEMPLATE = """
import os, sys, time
from matinee import FlowSpec, current, step

class Busy{n}(FlowSpec):
    @step
    def start(self):
        self.items = list(range({branches}))
        current.log_metric("setup", 1.0, step=0)
        self.next(self.prepare)

    @step
    def prepare(self):
        self.offset = {n} * 1000
        self.next(self.each, foreach="items")

    @step
    def each(self):
        for i in range({metrics}):
            current.log_metric("loss", self.offset + self.input + i / 1000, step=i)
        current.log_metrics({{"acc": 0.5, "auc": 0.7}}, step=self.input)
        self.value = self.offset + self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.values = [i.value for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        self.total = sum(self.values)

if __name__ == "__main__":
    gate = os.environ["GATE_FILE"]
    while not os.path.exists(gate):  # start every flow at the same moment
        time.sleep(0.005)
    Busy{n}()
"""


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_four_flows_at_once_on_one_fresh_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: str) -> None:
    fresh = tmp_path / "fresh-home"  # no database yet: the flows also create the schema, concurrently
    monkeypatch.setenv("MATINEE_HOME", str(fresh))
    gate = tmp_path / "go"
    env = {**os.environ, "GATE_FILE": str(gate)}
    branches = {n: 4 + n for n in range(FLOWS)}
    procs = []
    for n in range(FLOWS):
        path = tmp_path / f"busy{n}.py"
        path.write_text(TEMPLATE.format(n=n, branches=branches[n], metrics=METRICS_PER_BRANCH))
        args = [sys.executable, str(path), "run", "--executor", executor, "--max-workers", "3"]
        procs.append(subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    time.sleep(0.3)  # let every interpreter reach the gate
    gate.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert (fresh / "matinee.db").is_file()

    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "database is locked" not in out + err
        assert "Traceback" not in err

    metadata = open_store().metadata
    runs = metadata.list_runs()
    assert sorted(r["flow_name"] for r in runs) == [f"Busy{n}" for n in range(FLOWS)]
    assert all(r["status"] == "completed" for r in runs)
    assert max(r["created_at"] for r in runs) < min(r["finished_at"] for r in runs)  # they really overlapped
    for row in runs:
        n = int(row["flow_name"][len("Busy"):])
        tasks = metadata.list_tasks(row["id"])
        assert len(tasks) == 4 + branches[n]  # start, prepare, each x branches, join, end
        assert all(t["status"] == "completed" for t in tasks)
        run = Run(f"{row['flow_name']}/{row['id']}")
        assert run.data.total == sum(n * 1000 + i for i in range(branches[n]))
        loss = run.metric("loss")
        assert len(loss) == branches[n] * METRICS_PER_BRANCH
        assert sorted(loss.values) == sorted(
            n * 1000 + b + i / 1000 for b in range(branches[n]) for i in range(METRICS_PER_BRANCH)
        )
        assert len(run.metric("acc")) == len(run.metric("auc")) == branches[n]
        assert run.metric("setup").values == [1.0]
    total_metrics = sum(len(metadata.metrics(r["id"])) for r in runs)
    assert total_metrics == sum(b * (METRICS_PER_BRANCH + 2) + 1 for b in branches.values())


def _open_fresh(path: str, gate: str) -> str:
    from matinee.core.storage.db import SqliteDatabase

    while not os.path.exists(gate):
        time.sleep(0.001)
    try:
        SqliteDatabase(Path(path)).close()
    except Exception as exc:  # reported to the parent, which asserts on it
        return repr(exc)
    return ""


def test_many_processes_opening_one_fresh_database_never_see_locked(tmp_path: Path) -> None:
    """Switching a fresh file to WAL answers "locked" at once under a race; opening must wait instead."""
    import multiprocessing

    errors = []
    with multiprocessing.get_context("fork").Pool(8) as pool:
        for trial in range(20):
            gate = tmp_path / f"go{trial}"
            pending = pool.starmap_async(_open_fresh, [(str(tmp_path / f"m{trial}.db"), str(gate))] * 8)
            time.sleep(0.05)
            gate.touch()
            errors += [e for e in pending.get(timeout=60) if e]
    assert errors == []
