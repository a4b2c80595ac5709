"""Experiments: the event-log scan (per-arm texts, sums by member) against a plain count of the same rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from matinee import EventLog
from matinee.core.experiments import Experiment, _scan, member_metrics

DAY = 86_400.0
#: Member ids that a careless key would merge or lose: empty, padded, numeric look-alikes, separators.
UNITS = ["7", "007", "", " 7", "a b", "ü-ñ", "x\x1fy", "NULL", "nan", "-1", "1e3"]


def build() -> Experiment:
    return Experiment.build("exp", ["ranker@champion", "ranker@challenger"], started_at=1000.0, stopped_at=5000.0,
                            status="stopped")


def write(path: Path, e: Experiment, *, offset: int = 0, ts: float = 2000.0) -> None:
    """Decisions of several members in both arms (and a NULL arm, an unknown arm, another model, outside
    the window), with play, PLAY:ITEM, reward-only and ignored feedback."""
    decisions, feedback = [], []
    arms = ["champion", "challenger", None, "ghost"]
    for i in range(60):
        unit = UNITS[i % len(UNITS)] if i % 5 else 100 + (i + offset) % 13  # an integer id is kept as its text
        did = f"d{offset}-{i}"
        when = ts + i if i % 17 else 100.0  # a few before the window
        decisions.append({"decision_id": did, "ts": when, "unit_id": unit, "endpoint": e.endpoint,
                          "model": "other" if i % 23 == 0 else e.model, "arm": arms[i % 4],
                          "candidates": [1, 2], "action": 1, "propensity": 0.5})
        event, reward = [("play", 1.0), ("PLAY:2", 0.0), ("click", 2.5), ("skip", 0.0), ("play:1", 0.25)][i % 5]
        feedback.append({"decision_id": did, "ts": when + 1.0, "event": event, "reward": reward})
        if i % 4 == 0:
            feedback.append({"decision_id": did, "ts": when + 2.0, "event": "play:2", "reward": 1.0})
    with EventLog(path) as log:
        log.append_many(decisions, feedback)


def plain(path: Path, e: Experiment, arms: list[str], since: float, until: float) -> dict[tuple[str, str], list[float]]:
    """Impressions, plays and reward per (member, arm), one row at a time in Python."""
    conn = sqlite3.connect(path)
    kept = {did: (unit, arm or "") for did, ts, unit, model, arm in
            conn.execute("SELECT decision_id, ts, unit_id, model, arm FROM decisions WHERE endpoint = ?",
                         (e.endpoint,))
            if model == e.model and since <= ts < until and (not arms or arm in arms)}
    sums: dict[tuple[str, str], list[float]] = {}
    for key in kept.values():
        sums.setdefault(key, [0.0, 0.0, 0.0])[0] += 1
    for did, ts, event, reward in conn.execute("SELECT decision_id, ts, event, reward FROM feedback"):
        if did in kept and ts >= since - DAY:
            sums[kept[did]][1] += event == "play" or event[:5].lower() == "play:"
            sums[kept[did]][2] += reward
    conn.close()
    return sums


def as_sums(frame) -> dict[tuple[str, str], list[float]]:  # type: ignore[no-untyped-def]
    assert not frame.duplicated(["unit_id", "arm"]).any()
    assert (frame["played"] == (frame["plays"] > 0)).all()
    return {(u, a): [i, p, r] for u, a, i, p, r in
            zip(frame["unit_id"], frame["arm"], frame["impressions"], frame["plays"], frame["reward"], strict=True)}


@pytest.mark.parametrize("chunk", [7, 1000])
@pytest.mark.parametrize("arms", [None, []])
def test_member_sums_match_a_plain_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int,
                                         arms: list[str] | None):
    monkeypatch.setattr(_scan, "CHUNK_ROWS", chunk)  # many chunks, each with rows of several arms
    e = build()
    path = tmp_path / "events.db"
    write(path, e)
    frame = member_metrics(e, path, until=5000.0, feedback_until=1e12, arms=arms)
    expected = plain(path, e, e.aliases if arms is None else [], 1000.0, 5000.0)
    assert as_sums(frame) == expected
    assert {"", "007", "7", " 7", "x\x1fy"} <= {unit for unit, _ in expected}
    assert ("", "") in expected if arms == [] else all(arm in e.aliases for _, arm in expected)


def test_arms_come_in_order_with_members_in_the_order_first_seen(tmp_path: Path):
    e = build()
    path = tmp_path / "events.db"
    write(path, e)
    frame = member_metrics(e, path, until=5000.0, feedback_until=1e12)
    assert list(dict.fromkeys(frame["arm"])) == ["champion", "challenger"]
    assert len(member_metrics(e, tmp_path / "missing.db", until=5000.0)) == 0


def test_cached_sums_after_appends_equal_a_full_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_scan, "CHUNK_ROWS", 11)
    e = build()
    path = tmp_path / "events.db"
    folder = tmp_path / "cache"
    # A cache left by an earlier format is not read: everything is read again.
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps({"key": {"format": 1}, "marks": [10**9, 10**9],
                                                   "shown": "x.parquet", "fed": "y.parquet"}))
    write(path, e)
    first = member_metrics(e, path, until=5000.0, feedback_until=1e12, cache=folder)
    assert as_sums(first) == plain(path, e, e.aliases, 1000.0, 5000.0)
    assert json.loads((folder / "state.json").read_text())["key"]["format"] == 2
    write(path, e, offset=1, ts=3000.0)  # new members, and more rows of known ones
    with EventLog(path) as log:  # late feedback to a decision read the first time
        log.append_feedback({"decision_id": "d0-1", "ts": 4000.0, "event": "play", "reward": 3.0})
    again = member_metrics(e, path, until=5000.0, feedback_until=1e12, cache=folder)
    full = member_metrics(e, path, until=5000.0, feedback_until=1e12)
    assert as_sums(again) == as_sums(full) == plain(path, e, e.aliases, 1000.0, 5000.0)
    assert len(again) > len(first)


def test_sums_of_an_arm_in_several_blocks_are_gathered():
    import pyarrow as pa

    shown = pa.table({"arm": ["a", "b", "a"], "unit_id": ["1", "1", "2"], "impressions": [1.0, 2.0, 3.0]})
    fed = pa.table({"arm": ["b", "a", "a"], "unit_id": ["1", "2", "9"], "plays": [1.0, 1.0, 1.0],
                    "reward": [0.5, 2.0, 7.0]})
    frame = _scan.members(shown, fed)
    assert frame.to_dict("records") == [
        {"unit_id": "1", "arm": "a", "impressions": 1.0, "plays": 0.0, "reward": 0.0, "played": 0.0},
        {"unit_id": "2", "arm": "a", "impressions": 3.0, "plays": 1.0, "reward": 2.0, "played": 1.0},
        {"unit_id": "1", "arm": "b", "impressions": 2.0, "plays": 1.0, "reward": 0.5, "played": 1.0}]
    both = _scan._add(shown, shown, _scan.SHOWN)
    assert sorted(zip(both["arm"].to_pylist(), both["unit_id"].to_pylist(), both["impressions"].to_pylist(),
                      strict=True)) == [("a", "1", 2.0), ("a", "2", 6.0), ("b", "1", 4.0)]
