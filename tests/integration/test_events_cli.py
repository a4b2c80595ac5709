"""``matinee events ...`` run as real processes against a real event log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from matinee.core.events import EventLog


def matinee(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "matinee.cli.main", *args], capture_output=True, text=True, timeout=120)


def as_json(*args: str) -> Any:
    done = matinee(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def filled(home: Path) -> Path:
    """A log in MATINEE_HOME: 10 decisions one day apart from 2026-01-01, feedback on the even ones."""
    start = pd.Timestamp("2026-01-01", tz="UTC").timestamp()
    with EventLog(durability="strict") as log:
        for i in range(10):
            log.append_decision({"decision_id": f"d{i}", "ts": start + i * 86_400, "unit_id": f"m{i}",
                                 "context": [float(i)], "candidates": [0, 1, 2], "action": i % 3,
                                 "propensity": 1 / 3, "model": "policy", "model_version": 1,
                                 "arm": "champion" if i % 2 else "challenger"})
            if i % 2 == 0:
                log.append_feedback({"decision_id": f"d{i}", "ts": start + i * 86_400 + 60, "event": "play",
                                     "reward": 1.0})
    return home / "events" / "events.db"


def test_stats_json(filled: Path):
    info = as_json("events", "stats")
    assert info["decisions"] == 10 and info["feedback"] == 5
    assert info["first_decision"] == pd.Timestamp("2026-01-01", tz="UTC").timestamp()
    assert info["path"] == str(filled)


def test_stats_table(filled: Path):
    done = matinee("events", "stats")
    assert done.returncode == 0, done.stderr
    assert "decisions" in done.stdout and "feedback" in done.stdout and "2026-01-01" in done.stdout


def test_stats_of_an_empty_home():
    assert as_json("events", "stats")["decisions"] == 0


def test_export_with_iso_and_epoch_bounds(filled: Path, tmp_path: Path):
    target = tmp_path / "out.parquet"
    until = str(pd.Timestamp("2026-01-06", tz="UTC").timestamp())
    info = as_json("events", "export", "--since", "2026-01-03", "--until", until, "--to", str(target))
    assert info["rows"] == 3
    frame = pd.read_parquet(target)
    assert frame.decision_id.tolist() == ["d2", "d3", "d4"]
    assert frame.reward.tolist() == [1.0, 0.0, 1.0]
    assert frame.arm.tolist() == ["challenger", "champion", "challenger"]


def test_export_feedback_from_another_log_file(filled: Path, tmp_path: Path):
    moved = tmp_path / "elsewhere.db"
    filled.rename(moved)
    target = tmp_path / "fb.parquet"
    done = matinee("events", "export", "--what", "feedback", "--log", str(moved), "--to", str(target))
    assert done.returncode == 0, done.stderr
    assert "wrote 5 feedback rows" in done.stdout
    assert len(pd.read_parquet(target)) == 5


def test_a_bad_time_is_one_line(filled: Path, tmp_path: Path):
    done = matinee("events", "export", "--since", "last tuesday", "--to", str(tmp_path / "x.parquet"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: since must be an ISO 8601 time or epoch seconds, not 'last tuesday'"]
