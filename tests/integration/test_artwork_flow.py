"""The artwork training flow, end to end, as a real process."""

from __future__ import annotations

import doctest
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import matinee.apps.artwork.flow as flow_module
from matinee import Run

OBD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "obd"
GRID = [{"policy": "UniformRandom"}, {"policy": "LinUCB", "params": {"alpha": 0.5}},
        {"policy": "EpsilonGreedy", "params": {"epsilon": 0.1}}]
TINY = ("--rounds", "3000", "--bootstrap", "30", "--batch-size", "500")


def run_flow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "matinee.apps.artwork.flow", "run", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def test_docstring_examples_run():
    assert doctest.testmod(flow_module, optionflags=doctest.ELLIPSIS).failed == 0


def test_fits_evaluates_and_keeps_the_best_by_dr_on_simulated_logs(tmp_path, home):
    result = run_flow(*TINY, "--online-rounds", "3000", "--online-window", "1000", "--grid", json.dumps(GRID),
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = Run("ArtworkTrainingFlow/1")
    data = run.data
    board = data.leaderboard
    assert [row["dr"] for row in board] == sorted((row["dr"] for row in board), reverse=True)
    assert {row["policy"] for row in board} == {"UniformRandom", "LinUCB", "EpsilonGreedy"}
    assert data.best_name == board[0]["policy"] and type(data.policy).__name__ == data.best_config["policy"]
    assert board[0]["policy"] != "UniformRandom"  # a contextual policy beats random on this problem
    assert set(data.estimates) == {"ips", "snips", "dm", "dr", "replay"}  # replay: the logs are uniform
    for row in board:  # simulated logs: the truth sits next to every estimate, and DR is close to it
        assert row["dr_low"] <= row["dr"] <= row["dr_high"] and abs(row["dr"] - row["truth"]) < 0.05
        assert 0 < row["online_share"] <= 1
    assert data.data_summary == {"source": "sim", "rounds": 3000, "train": 1500, "evaluation": 1500, "actions": 10,
                                 "context_features": 20, "logging_policy": "UniformRandom",
                                 "mean_reward": pytest.approx(data.data_summary["mean_reward"])}
    online = {o["policy"]: o for o in data.online}
    assert online["LinUCB"]["share_of_oracle_last"] > online["UniformRandom"]["share_of_oracle_last"]
    assert set(data.curves["policy"]) == set(online) and data.curves["end"].max() == 3000
    # the report: a file under MATINEE_HOME and the same page as an artifact, both without network references
    path = Path(data.report_path)
    assert path.is_file() and path.is_relative_to(home / "reports")
    assert path.read_text() == data.report_html
    assert not re.search(r"<script[^>]*src=[\"']?(https?:)?//", data.report_html)
    assert f"report: {path}" in result.stdout
    metrics = run.metrics
    assert {"LinUCB/ope/dr", "LinUCB/ope/dr_low", "LinUCB/true_value", "LinUCB/online/share_of_oracle",
            "best/ope/dr", "best/true_value"} <= set(metrics)
    assert len(metrics["LinUCB/online/share_of_oracle"]) == 6  # one point per batch of 500


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ([{"policy": "Nope"}], "unknown policy 'Nope' in the grid"),
        ([{"policy": "LinUCB", "params": {"gamma": 1}}], "LinUCB has no hyperparameter 'gamma'"),
        ([{"policy": "LinUCB", "params": {"alpha": -1}}], "LinUCB.alpha must be a finite number >= 0"),
        (["LinUCB"], "each grid entry must be an object"),
    ],
)
def test_a_bad_grid_fails_before_any_branch(tmp_path, grid, message):
    result = run_flow(*TINY, "--grid", json.dumps(grid), cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "fit" not in Run("ArtworkTrainingFlow/1")


def test_without_online_rounds_or_report_only_the_offline_part_runs(tmp_path):
    result = run_flow(*TINY, "--report", "false", "--grid", json.dumps(GRID[:2]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = Run("ArtworkTrainingFlow/1").data
    assert data.online == [] and data.curves is None and data.report_path is None
    assert "online_share" not in data.leaderboard[0]


@pytest.mark.skipif(not OBD.is_dir(), reason="the Open Bandit Dataset sample is not in ../shared/data/obd")
def test_trains_on_the_open_bandit_dataset(tmp_path):
    grid = [{"policy": "UniformRandom"}, {"policy": "BernoulliTS"}]
    result = run_flow("--obd", str(OBD), "--behavior-policy", "random", "--bootstrap", "20", "--grid",
                      json.dumps(grid), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = Run("ArtworkTrainingFlow/1").data
    assert data.data_summary["source"] == "obd" and data.data_summary["actions"] == 80
    assert data.truth is None and all(row["truth"] is None for row in data.leaderboard)
    assert data.online == [] and Path(data.report_path).is_file()
    assert all(0 <= row["dr"] < 0.05 for row in data.leaderboard)  # click rates of a few per mille
