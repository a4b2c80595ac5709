"""``matinee experiments ...`` against a real store and a real event log written by the simulation harness."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from matinee import EventLog
from matinee.apps.sim.experiments import RankerDuel
from matinee.cli.main import cli
from matinee.core.experiments import get_experiment
from matinee.core.registry import register_model, set_alias


def matinee(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "matinee.cli.main", *args], capture_output=True, text=True,
                          timeout=180)


def as_json(*args: str) -> Any:
    done = matinee(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def in_process(*args: str) -> Any:
    """The same command in this process (cheaper than a new interpreter for the quick ones)."""
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def ranker() -> None:
    for version, alias in ((1, "champion"), (2, "challenger")):
        register_model("ranker", {"v": version})
        set_alias("ranker", alias, version)


def test_create_start_serve_stop_analyze(ranker, home: Path):
    created = as_json("experiments", "create", "ranker-v2", "--arm", "ranker@champion=0.5", "--arm",
                      "ranker@challenger", "--guardrail", "impressions_per_member", "--owner", "ana")
    assert created["status"] == "draft" and created["arms"][1] == {"alias": "challenger", "weight": 0.5}
    shown = in_process("experiments", "show", "ranker-v2")
    assert shown["deployment"] == {"model": "ranker@champion", "split": {"champion": 50.0, "challenger": 50.0},
                                   "salt": "ranker-v2"}
    started = as_json("experiments", "start", "ranker-v2")
    # A server with the deployment above logs its decisions; the harness writes what it would.
    experiment = get_experiment("ranker-v2")
    with EventLog(home / "events" / "events.db") as log:
        RankerDuel("small", noise_a=3.0, noise_b=0.5, k=8, seed=3).log_ab(
            log, experiment, 1500, start=started["started_at"], seconds=0.01)
    assert in_process("experiments", "stop", "ranker-v2")["status"] == "stopped"
    analysis = as_json("experiments", "analyze", "ranker-v2")
    take = analysis["effects"][0]
    assert take["metric"] == "take_rate" and take["significant"] and take["diff"] > 0
    assert analysis["srm_flagged"] is False and analysis["assignment_mismatches"] == 0
    report = Path(analysis["report"])
    assert report == home / "experiments" / "ranker-v2" / "report.html" and report.stat().st_size > 1_000_000
    table = CliRunner().invoke(cli, ["experiments", "analyze", "ranker-v2", "--sequential", "--no-report"])
    assert table.exit_code == 0, table.output
    assert "take_rate" in table.output and "SRM check: p =" in table.output and "sequential" in table.output
    assert [e["name"] for e in in_process("experiments", "ls", "--status", "stopped")] == ["ranker-v2"]
    halfway = in_process("experiments", "analyze", "ranker-v2", "--no-report", "--until",
                         repr(started["started_at"] + 0.005))  # the traffic took 0.01 s: a look halfway
    seen = sum(a["impressions"] for a in halfway["arms"])
    assert 0 < seen < 0.8 * sum(a["impressions"] for a in analysis["arms"])


@pytest.mark.parametrize("args, message", [
    (["create", "x", "--arm", "ranker@champion=0.7", "--arm", "ranker@challenger=0.7"],
     "error: arm weights must sum to 1, not 1.4"),
    (["create", "x", "--arm", "ranker@champion", "--arm", "ranker@champion"],
     "error: arms overlap: alias 'champion' is in more than one arm"),
    (["create", "x", "--arm", "ranker@champion", "--arm", "ranker@nope"],
     "error: arm ranker@nope: model 'ranker' has no alias 'nope'"),
    (["create", "x", "--arm", "ranker@champion", "--arm", "ranker@challenger", "--metric", "clicks"],
     "error: unknown metric 'clicks' in primary_metric"),
    (["show", "ghost"], "error: no experiment named 'ghost'"),
    (["analyze", "draft"], "error: experiment 'draft' has not started: nothing to analyze"),
    (["analyze", "running"], "error: experiment 'running' has no exposures yet"),
    (["stop", "draft"], "error: experiment 'draft' is draft; only a running one can stop"),
    (["size", "--baseline", "0.3", "--mde", "0"], "error: effect must be non-zero"),
])
def test_bad_input_is_one_clear_line(ranker, args, message):
    runner = CliRunner()
    assert runner.invoke(cli, ["experiments", "create", "draft", "--arm", "ranker@champion", "--arm",
                               "ranker@challenger"]).exit_code == 0
    assert runner.invoke(cli, ["experiments", "create", "running", "--arm", "ranker@champion", "--arm",
                               "ranker@challenger", "--endpoint", "artwork"]).exit_code == 0
    assert runner.invoke(cli, ["experiments", "start", "running"]).exit_code == 0
    result = runner.invoke(cli, ["experiments", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith(message) and len(lines) == 1, result.output


def test_size_prints_members_per_arm():
    result = CliRunner().invoke(cli, ["experiments", "size", "--baseline", "0.3", "--mde", "0.05", "--relative",
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["effect"] == pytest.approx(0.015) and data["per_arm"] > 10_000 and data["total"] == 2 * data["per_arm"]
