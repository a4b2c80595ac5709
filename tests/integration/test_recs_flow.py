"""The recommendations training flow, end to end, as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from matinee import Run

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ml-latest-small"


def run_flow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "matinee.apps.recs.flow", "run", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def test_trains_on_the_simulator_and_keeps_the_validation_winner(tmp_path):
    grid = [{"model": "MostPopular"}, {"model": "EASE", "params": {"l2": 100.0}},
            {"model": "ItemKNN", "params": {"neighbors": 50}}]
    result = run_flow("--sim-size", "tiny", "--grid", json.dumps(grid), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = Run("RecsTrainingFlow/1")
    data = run.data
    board = data.leaderboard
    assert [row["model"] for row in board] == sorted([g["model"] for g in grid], key=lambda m: -next(
        r["ndcg@10"] for r in board if r["model"] == m))
    assert data.best_config["model"] == board[0]["model"]
    assert type(data.model).__name__ == board[0]["model"] and data.model.is_fitted
    assert set(data.test_metrics) >= {"ndcg@10", "recall@20", "coverage@10", "novelty@20"}
    assert len(data.dataset_hash) == 64 and "outer" not in run.end_task
    assert len(run["fit"].tasks().__next__().data.validation) == 8
    logged = run.metrics
    assert "test/ndcg@10" in logged and "EASE/validation/ndcg@10" in logged


def test_a_bad_grid_fails_before_any_branch(tmp_path):
    result = run_flow("--sim-size", "tiny", "--grid", '[{"model": "Nope"}]', cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown model 'Nope'" in result.stderr
    assert "fit" not in Run("RecsTrainingFlow/1")


@pytest.mark.skipif(not DATA.is_dir(), reason="MovieLens ml-latest-small is not in ../shared/data")
def test_movielens_protocol_matches_the_reference(tmp_path):
    grid = [{"model": "MostPopular"}, {"model": "EASE", "params": {"l2": 250.0}}]
    result = run_flow("--movielens", str(DATA), "--grid", json.dumps(grid), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = Run("RecsTrainingFlow/1").data
    assert data.best_config["model"] == "EASE"
    assert data.test_metrics["ndcg@10"] == pytest.approx(0.105, abs=0.003)
    assert data.test_metrics["recall@20"] == pytest.approx(0.146, abs=0.003)
