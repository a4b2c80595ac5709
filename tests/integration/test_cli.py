"""The matinee command line, run as a real process against a real store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from matinee.cli.main import cli

FLOW = """
from matinee import FlowSpec, Parameter, current, step

class CliFlow(FlowSpec):
    n = Parameter("n", default=3)

    @step
    def start(self):
        self.items = list(range(self.n))
        print("starting with", self.n)
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.value = self.input * 10 + self.n
        current.log_metric("value", self.value, step=self.index)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.value for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        print("total", self.total)

if __name__ == "__main__":
    CliFlow()
"""


def matinee(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "matinee.cli.main", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.fixture
def flow_file(write_flow):
    return write_flow(FLOW, "cli_flow.py")


def blob_files(home: Path) -> set[str]:
    return {p.name for p in (home / "blobs").glob("??/*")}


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help(command):
    result = matinee(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_run_and_inspect(flow_file, home):
    result = matinee("run", str(flow_file), "--n", "4", "--tag", "first")
    assert result.returncode == 0, result.stderr
    assert "total 76" in result.stdout  # (0+10+20+30) + 4*4
    runs = json.loads(matinee("runs", "--json").stdout)
    assert [r["run"] for r in runs] == ["CliFlow/1"]
    assert runs[0]["status"] == "completed" and runs[0]["tags"] == ["first"]

    run = json.loads(matinee("show", "CliFlow/1", "--json").stdout)
    assert run["params"] == {"n": 4}
    assert {s["step"]: s["tasks"] for s in run["steps"]} == {"start": 1, "work": 4, "join": 1, "end": 1}

    step = json.loads(matinee("show", "CliFlow/1/work", "--json").stdout)
    assert sorted(t["index"] for t in step["tasks"]) == [0, 1, 2, 3]
    task = step["tasks"][0]["task"]
    detail = json.loads(matinee("show", task, "--json").stdout)
    assert {a["name"] for a in detail["artifacts"]} >= {"items", "n", "value"}

    arts = json.loads(matinee("artifacts", "CliFlow/1/end", "--json").stdout)
    assert {a["name"] for a in arts} == {"n", "total"}
    assert all(len(a["key"]) == 64 for a in arts)

    logs = matinee("logs", "CliFlow/1")
    assert "starting with 4" in logs.stdout and "total 76" in logs.stdout

    summary = json.loads(matinee("metrics", "CliFlow/1", "--json").stdout)
    assert summary == [{"name": "value", "points": 4, "last": summary[0]["last"], "min": 4.0, "max": 34.0, "last_step": summary[0]["last_step"]}]
    series = json.loads(matinee("metrics", "CliFlow/1", "--name", "value", "--json").stdout)
    assert sorted(p["value"] for p in series) == [4.0, 14.0, 24.0, 34.0]

    table = matinee("show", "CliFlow/1")
    assert table.returncode == 0 and "work" in table.stdout and "completed" in table.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["show", "Nope/1"], "run Nope/1 does not exist"),
        (["show", "Nope"], "no flow named 'Nope'"),
        (["show", "Nope/x"], "must be a number"),
        (["metrics", "Nope/1"], "run Nope/1 does not exist"),
        (["logs", "a/b/c/d/e"], "is not a run, step or task"),
        (["gc", "--older-than", "soon"], "older-than must be a duration such as 30d, 12h, 90m or 1w2d, not 'soon'"),
        (["gc", "--older-than", "-3d"], "older-than must be a duration such as 30d, 12h, 90m or 1w2d, not '-3d'"),
        (["gc", "--grace", "3600"], "grace must be a duration such as 30d, 12h, 90m or 1w2d, not '3600'"),
        (["audit", "--prune-older-than", "later"], "prune-older-than must be a duration such as 30d"),
    ],
)
def test_errors_are_one_line(args, message):
    result = matinee(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_audit_prune_deletes_only_old_entries_and_is_audited():
    from matinee.core.store import close_stores, open_store

    meta = open_store().metadata
    meta.audit("alice", "admin", "alias.move", "ranker", "ok")
    meta.db.execute("UPDATE audit_log SET at = at - 100 * 86400")  # that move was 100 days ago
    meta.audit("nobody", None, "request", "/api/v1/runs", "denied", status=401)
    close_stores()

    pruned = matinee("audit", "--prune-older-than", "90d", "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["deleted"] == 1
    rows = json.loads(matinee("audit", "--json").stdout)
    assert [(r["action"], r["outcome"]) for r in rows] == [("audit.prune", "ok"), ("request", "denied")]
    assert "1 entries" in rows[0]["detail"]
    again = matinee("audit", "--prune-older-than", "90d")
    assert again.returncode == 0 and "deleted 0 audit entries older than 90d" in again.stdout
    assert len(json.loads(matinee("audit", "--json").stdout)) == 3


def test_debug_shows_traceback():
    result = matinee("--debug", "show", "Nope/1")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_failed_run_exit_code(write_flow):
    path = write_flow(
        """
        from matinee import FlowSpec, step
        class Boom(FlowSpec):
            @step
            def start(self):
                raise RuntimeError("kaboom")
                self.next(self.end)
            @step
            def end(self):
                pass
        """,
        "boom.py",
    )
    result = matinee("run", str(path))
    assert result.returncode == 1
    assert "RuntimeError: kaboom" in result.stderr
    runs = json.loads(matinee("runs", "--json").stdout)
    assert runs[0]["status"] == "failed" and "kaboom" in runs[0]["error"]


def test_resume_through_cli(write_flow, tmp_path):
    marker = tmp_path / "fail"
    marker.write_text("1")
    path = write_flow(
        f"""
        import os
        from matinee import FlowSpec, step
        class Flaky(FlowSpec):
            @step
            def start(self):
                self.a = 1
                self.next(self.middle)
            @step
            def middle(self):
                if os.path.exists({str(marker)!r}):
                    raise ValueError("not yet")
                self.b = self.a + 1
                self.next(self.end)
            @step
            def end(self):
                print("b is", self.b)
        """,
        "flaky.py",
    )
    assert matinee("run", str(path)).returncode == 1
    marker.unlink()
    result = matinee("resume", str(path))
    assert result.returncode == 0, result.stderr
    assert "cloned from task" in result.stdout and "b is 2" in result.stdout
    assert json.loads(matinee("show", "Flaky/2", "--json").stdout)["origin_run_id"] == 1


def test_gc_by_count_keeps_what_kept_runs_use(flow_file, home):
    for n in (2, 3, 4):
        assert matinee("run", str(flow_file), "--n", str(n), "--quiet").returncode == 0
    before = blob_files(home)
    plan = json.loads(matinee("gc", "--keep-last", "1", "--grace", "0s", "--dry-run", "--json").stdout)
    assert plan["runs"] == ["CliFlow/2", "CliFlow/1"] and plan["dry_run"] is True and plan["blobs"] > 0
    assert blob_files(home) == before  # a dry run deletes nothing

    done = json.loads(matinee("gc", "--keep-last", "1", "--grace", "0s", "--json").stdout)
    assert done["runs"] == plan["runs"] and done["blobs"] == plan["blobs"]
    assert len(blob_files(home)) == len(before) - plan["blobs"]
    assert [r["run"] for r in json.loads(matinee("runs", "--json").stdout)] == ["CliFlow/3"]
    # the kept run is whole: every artifact and log still loads and verifies
    check = subprocess.run(
        [sys.executable, "-c",
         "from matinee import Run\n"
         "r = Run('CliFlow/3')\n"
         "assert r.data.total == 0+10+20+30 + 4*4\n"
         "for s in r:\n"
         "    for t in s:\n"
         "        [a.data for a in t.artifacts.values()]; t.stdout\n"
         "print('ok')"],
        capture_output=True, text=True,
    )
    assert check.stdout.strip() == "ok", check.stderr
    again = json.loads(matinee("gc", "--grace", "0s", "--json").stdout)
    assert again["runs"] == [] and again["blobs"] == 0


def test_gc_never_deletes_what_a_model_uses(flow_file, home):
    for n in (2, 5):
        assert matinee("run", str(flow_file), "--n", str(n), "--quiet").returncode == 0
    db = sqlite3.connect(home / "matinee.db")
    key = db.execute(
        "SELECT a.key FROM artifacts a JOIN tasks t ON a.task_id = t.id WHERE t.run_id = 1 AND a.name = 'total'"
    ).fetchone()[0]
    db.execute(
        "INSERT INTO model_versions (name, version, run_id, task_id, artifact_key, created_at) VALUES ('m', 1, 1, NULL, ?, ?)",
        (key, time.time()),
    )
    db.commit()
    db.close()
    result = json.loads(matinee("gc", "--keep-last", "0", "--grace", "0s", "--json").stdout)
    assert result["runs"] == ["CliFlow/2"] and result["kept_for_models"] == [1]
    assert key in blob_files(home)


def test_gc_by_tag_and_age(flow_file, home):
    assert matinee("run", str(flow_file), "--n", "2", "--tag", "scratch", "--quiet").returncode == 0
    assert matinee("run", str(flow_file), "--n", "3", "--quiet").returncode == 0
    assert matinee("run", str(flow_file), "--n", "4", "--quiet").returncode == 0
    by_tag = json.loads(matinee("gc", "--tag", "scratch", "--grace", "0s", "--json").stdout)
    assert by_tag["runs"] == ["CliFlow/1"]
    db = sqlite3.connect(home / "matinee.db")
    db.execute("UPDATE runs SET created_at = created_at - 40 * 86400 WHERE id = 2")
    db.commit()
    db.close()
    by_age = json.loads(matinee("gc", "--older-than", "30d", "--grace", "0s", "--json").stdout)
    assert by_age["runs"] == ["CliFlow/2"]
    assert [r["run"] for r in json.loads(matinee("runs", "--json").stdout)] == ["CliFlow/3"]


def test_gc_grace_protects_fresh_blobs(flow_file, home):
    assert matinee("run", str(flow_file), "--quiet").returncode == 0
    result = json.loads(matinee("gc", "--keep-last", "0", "--json").stdout)
    assert result["runs"] == ["CliFlow/1"] and result["blobs"] == 0  # all younger than the 1h grace


def test_demo_runs_end_to_end(tmp_path):
    result = matinee("demo", "--sim-size", "tiny", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    board = out["leaderboard"]
    assert len(board) == 6
    scores = [row["ndcg@10"] for row in board]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert out["best"]["model"] in board[0]["model"]
    assert 0 <= out["test_metrics"]["ndcg@10"] <= 1 and len(out["dataset_hash"]) == 64
    artwork = out["artwork"]
    assert artwork["run"].startswith("ArtworkTrainingFlow/") and len(artwork["leaderboard"]) == 6
    drs = [row["dr"] for row in artwork["leaderboard"]]
    assert drs == sorted(drs, reverse=True) and artwork["best"]["policy"] == artwork["leaderboard"][0]["policy"]
    shares = {row["policy"]: row["share_of_oracle_last"] for row in artwork["online"]}
    assert shares["LinUCB"] > shares["UniformRandom"] and Path(artwork["report"]).is_file()


def test_demo_runs_one_part_with_only(tmp_path):
    result = matinee("demo", "--sim-size", "tiny", "--only", "recs", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "artwork" not in json.loads(result.stdout)


def test_config_lists_every_setting(home):
    out = json.loads(matinee("config", "--json").stdout)
    assert out["home"] == str(home) and out["user"] == "tester"
