"""The event log: real SQLite files, real threads and real processes."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from matinee.core.events import EventLog, default_path, parse_time
from matinee.errors import ParameterError, StorageError

REPO = Path(__file__).resolve().parents[2]


def decision(i: int | str, ts: float = 1_000.0, **extra: Any) -> dict[str, Any]:
    return {
        "decision_id": f"d{i}", "ts": ts, "unit_id": f"m{i}", "context": [0.5, -1.0],
        "candidates": ["a", "b", "c"], "action": "b", "propensity": 0.25,
        "endpoint": "artwork", "model": "policy", "model_version": 3, "arm": "champion", **extra,
    }


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "events" / "events.db"


def test_default_path_is_under_home(home: Path):
    assert default_path() == home / "events" / "events.db"
    with EventLog() as log:
        log.append_decision(decision(1))
    assert (home / "events" / "events.db").is_file()
    assert not (home / "matinee.db").exists()


def test_round_trip(path: Path):
    with EventLog(path) as log:
        assert log.append_decision(decision(1)) == "d1"
        log.append_feedback({"decision_id": "d1", "ts": 1_001.0, "event": "play", "reward": 1.0})
    decisions = EventLog(path).read_decisions()
    assert decisions.to_dict("records") == [{
        "decision_id": "d1", "ts": 1_000.0, "unit_id": "m1", "endpoint": "artwork", "model": "policy",
        "model_version": 3, "arm": "champion", "context": [0.5, -1.0], "candidates": ["a", "b", "c"],
        "action": "b", "propensity": 0.25,
    }]
    feedback = EventLog(path).read_feedback()
    assert feedback.to_dict("records") == [{"decision_id": "d1", "ts": 1_001.0, "event": "play", "reward": 1.0}]


@dataclass
class Decision:
    """Shaped like the artwork app's Decision: any object with the attributes will do."""

    decision_id: str
    ts: float
    unit_id: str
    context: np.ndarray
    candidates: list[Any]
    action: Any
    propensity: float
    endpoint: str = "artwork"
    model: str = ""
    model_version: int | None = None
    arm: str | None = None
    extra: list[int] = field(default_factory=list)


def test_objects_with_attributes_and_numpy_values(path: Path):
    record = Decision("x1", 5.0, "m9", np.array([1.0, 2.0], dtype=np.float32), [np.int64(0), np.int64(1)],
                      np.int64(1), np.float64(0.5), model_version=np.int64(2))
    with EventLog(path) as log:
        log.append_decision(record)
    row = EventLog(path).read_decisions().iloc[0]
    assert row.context == [1.0, 2.0] and row.candidates == [0, 1] and row.action == 1
    assert row.model_version == 2 and row.arm is None


def test_missing_ts_is_now(path: Path):
    before = time.time()
    with EventLog(path) as log:
        log.append_decision({k: v for k, v in decision(1).items() if k != "ts"})
    assert before <= EventLog(path).read_decisions().ts[0] <= time.time()


def test_join_sums_rewards_and_keeps_decisions_without_feedback(path: Path):
    with EventLog(path) as log:
        for i in range(3):
            log.append_decision(decision(i, ts=100.0 + i))
        log.append_feedback({"decision_id": "d0", "ts": 200.0, "event": "impression", "reward": 0.0})
        log.append_feedback({"decision_id": "d0", "ts": 201.0, "event": "play", "reward": 1.0})
        log.append_feedback({"decision_id": "d0", "ts": 202.0, "event": "finish", "reward": 0.5})
        log.append_feedback({"decision_id": "d2", "ts": 203.0, "event": "play", "reward": 1.0})
        log.append_feedback({"decision_id": "unknown", "ts": 204.0, "event": "play", "reward": 1.0})
    joined = EventLog(path).joined()
    assert joined.decision_id.tolist() == ["d0", "d1", "d2"]
    assert joined.reward.tolist() == [1.5, 0.0, 1.0]
    assert joined.n_feedback.tolist() == [3, 0, 1]
    assert joined.last_event[0] == "finish" and joined.last_event[2] == "play"
    assert joined.last_event.isna()[1] and math.isnan(joined.last_feedback_ts[1])
    assert joined.propensity.tolist() == [0.25] * 3


def test_since_until_filters(path: Path):
    with EventLog(path) as log:
        for i in range(10):
            log.append_decision(decision(i, ts=86_400.0 + i))
            log.append_feedback({"decision_id": f"d{i}", "ts": 86_400.5 + i, "reward": 1.0})
    log = EventLog(path)
    assert log.read_decisions(since=86_403, until=86_406).decision_id.tolist() == ["d3", "d4", "d5"]
    assert log.read_decisions(since="1970-01-02T00:00:08").decision_id.tolist() == ["d8", "d9"]
    assert log.read_decisions(until="1970-01-02T00:00:02Z").decision_id.tolist() == ["d0", "d1"]
    assert len(log.read_feedback(since=86_405, until=86_407)) == 2
    assert log.joined(since=86_408).decision_id.tolist() == ["d8", "d9"]
    assert log.joined(since=86_408).reward.tolist() == [1.0, 1.0]


def test_parse_time():
    assert parse_time(None) is None
    assert parse_time(12) == 12.0
    assert parse_time("2026-01-01T00:00:00+01:00") == parse_time("2025-12-31T23:00:00Z")
    with pytest.raises(ParameterError, match="until"):
        parse_time("yesterday", "until")


def test_reading_a_missing_log_gives_empty_frames(path: Path):
    log = EventLog(path)
    assert log.read_decisions().empty and log.read_feedback().empty and log.joined().empty
    assert log.stats()["decisions"] == 0
    assert not path.exists()


def test_eight_threads_append_concurrently(path: Path):
    log = EventLog(path)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(1_000):
                log.append_decision(decision(f"{t}-{i}", ts=float(i)))
                if i % 10 == 0:
                    log.append_feedback({"decision_id": f"d{t}-{i}", "reward": 1.0})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert not errors
    decisions = EventLog(path).read_decisions()
    assert len(decisions) == 8_000 and decisions.decision_id.is_unique
    assert set(decisions.decision_id) == {f"d{t}-{i}" for t in range(8) for i in range(1_000)}
    assert len(EventLog(path).read_feedback()) == 800


def test_duplicate_decision_ids_keep_the_first(path: Path):
    with EventLog(path) as log:
        log.append_decision(decision(1, unit_id="first"))
        log.append_decision(decision(1, unit_id="retry"))
    assert EventLog(path).read_decisions().unit_id.tolist() == ["first"]


def test_strict_append_returns_after_commit(path: Path):
    log = EventLog(path, durability="strict", flush_interval=0.002)
    log.append_decision(decision(1))
    # Visible to another connection before any flush or close.
    assert EventLog(path).read_decisions().decision_id.tolist() == ["d1"]
    log.close()


_CRASHING_WRITER = textwrap.dedent("""
    import os, sys, threading
    from matinee.core.events import EventLog

    path, durability, n, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[5]
    log = EventLog(path, durability=durability, flush_interval=0.005)
    lock = threading.Lock()
    acknowledged = []

    def work(t):
        for i in range(n):
            record = {"decision_id": f"{prefix}{t}-{i}", "unit_id": "m", "candidates": [0, 1], "action": 0,
                      "propensity": 0.5}
            log.append_decision(record)
            log.append_feedback({"decision_id": f"{prefix}{t}-{i}", "event": "play", "reward": 1.0})
            with lock:
                acknowledged.append(f"{prefix}{t}-{i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    with open(f"{path}.{prefix}.acked", "w") as fh:
        fh.write("\\n".join(acknowledged))
        fh.flush()
        os.fsync(fh.fileno())
    if sys.argv[4] == "close":
        log.close()
    os._exit(0)
""")


def writer_command(tmp_path: Path, path: Path, durability: str, n: int, ending: str, prefix: str) -> list[str]:
    script = tmp_path / "writer.py"
    script.write_text(_CRASHING_WRITER)
    path.parent.mkdir(parents=True, exist_ok=True)
    return [sys.executable, str(script), str(path), durability, str(n), ending, prefix]


def run_writer(tmp_path: Path, path: Path, durability: str, n: int, ending: str, prefix: str = "p") -> list[str]:
    subprocess.run(writer_command(tmp_path, path, durability, n, ending, prefix), check=True, timeout=120, cwd=REPO)
    return Path(f"{path}.{prefix}.acked").read_text().split()


def test_two_writing_processes_share_one_log(tmp_path: Path, path: Path):
    processes = [subprocess.Popen(writer_command(tmp_path, path, durability, 500, "close", prefix), cwd=REPO)
                 for prefix, durability in (("a", "relaxed"), ("b", "strict"))]
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    acknowledged = {i for prefix in "ab" for i in Path(f"{path}.{prefix}.acked").read_text().split()}
    decisions = EventLog(path).read_decisions()
    assert len(acknowledged) == 4_000 and set(decisions.decision_id) == acknowledged
    assert len(EventLog(path).read_feedback()) == 4_000


def test_an_unwritable_log_raises_storage_error(tmp_path: Path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="cannot open the event log"):
        EventLog(tmp_path / "file" / "events.db").append_decision(decision(1))


def test_strict_acknowledged_records_survive_os_exit(tmp_path: Path, path: Path):
    acknowledged = run_writer(tmp_path, path, "strict", 100, "exit")
    assert len(acknowledged) == 400
    log = EventLog(path)
    stored = set(log.read_decisions().decision_id)
    assert set(acknowledged) <= stored
    assert len(log.read_feedback()) >= 400
    assert (log.joined().reward == 1.0).all()


def test_relaxed_with_clean_close_loses_nothing(tmp_path: Path, path: Path):
    acknowledged = run_writer(tmp_path, path, "relaxed", 2_000, "close")
    decisions = EventLog(path).read_decisions()
    assert len(decisions) == 8_000 and set(decisions.decision_id) == set(acknowledged)
    assert len(EventLog(path).read_feedback()) == 8_000


def test_a_reader_in_another_process_while_a_writer_appends(tmp_path: Path, path: Path):
    reader = tmp_path / "reader.py"
    reader.write_text(textwrap.dedent("""
        import sys, time
        from matinee.core.events import EventLog
        log, seen, counts = EventLog(sys.argv[1]), 0, []
        counts.append(len(log.read_decisions()))
        print("ready", flush=True)
        deadline = time.time() + 60
        while seen < 5_000 and time.time() < deadline:
            frame = log.read_decisions()
            assert frame.decision_id.is_unique
            assert seen <= len(frame)
            seen = len(frame)
            counts.append(seen)
            time.sleep(0.01)
        print(len(set(counts)), seen)
    """))
    with EventLog(path) as log:
        log.append_decision(decision("first"))
        log.flush()
        process = subprocess.Popen([sys.executable, str(reader), str(path)], stdout=subprocess.PIPE, text=True,
                                   cwd=REPO)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        for i in range(4_999):
            log.append_decision(decision(i))
            if i % 500 == 0:
                time.sleep(0.02)
    out, _ = process.communicate(timeout=90)
    assert process.returncode == 0
    distinct, seen = map(int, out.split())
    assert seen == 5_000 and distinct > 1


def test_parquet_export(tmp_path: Path, path: Path):
    with EventLog(path) as log:
        for i in range(5):
            log.append_decision(decision(i, ts=10.0 + i))
        log.append_decision(decision(9, ts=20.0, candidates=[0, "x"], action=0, model_version=None))
        log.append_feedback({"decision_id": "d1", "ts": 30.0, "reward": 2.0})
    log = EventLog(path)
    assert log.export_parquet(tmp_path / "out" / "joined.parquet", since=11, until=14) == 3
    frame = pd.read_parquet(tmp_path / "out" / "joined.parquet")
    assert frame.decision_id.tolist() == ["d1", "d2", "d3"] and frame.reward.tolist() == [2.0, 0.0, 0.0]
    assert list(frame.context[0]) == [0.5, -1.0]
    assert log.export_parquet(tmp_path / "all.parquet", what="decisions") == 6
    assert pd.read_parquet(tmp_path / "all.parquet").action.tolist()[-1] == "0"
    assert log.export_parquet(tmp_path / "fb.parquet", what="feedback") == 1
    with pytest.raises(ParameterError, match="what"):
        log.export_parquet(tmp_path / "x.parquet", what="everything")


def _without(name: str) -> dict[str, Any]:
    return {k: v for k, v in decision(1).items() if k != name}


@pytest.mark.parametrize(
    ("kind", "record", "field_name"),
    [
        ("decision", _without("decision_id"), "decision_id"),
        ("decision", decision(1, decision_id=""), "decision_id"),
        ("decision", decision(1, decision_id="has space"), "decision_id"),
        ("decision", decision(1, decision_id=42), "decision_id"),
        ("decision", _without("unit_id"), "unit_id"),
        ("decision", _without("propensity"), "propensity"),
        ("decision", decision(1, propensity=0.0), "propensity"),
        ("decision", decision(1, propensity=1.5), "propensity"),
        ("decision", decision(1, propensity=float("nan")), "propensity"),
        ("decision", decision(1, propensity="high"), "propensity"),
        ("decision", decision(1, context=[1.0, float("inf")]), "context"),
        ("decision", decision(1, context=[[1.0], [2.0]]), "context"),
        ("decision", decision(1, context=["x"]), "context"),
        ("decision", _without("action"), "action"),
        ("decision", decision(1, action="z"), "action"),
        ("decision", decision(1, candidates=[object()], action=None), "action"),
        ("decision", decision(1, ts=float("nan")), "ts"),
        ("decision", decision(1, arm=3), "arm"),
        ("decision", decision(1, model_version=1.5), "model_version"),
        ("feedback", {"ts": 1.0, "reward": 1.0}, "decision_id"),
        ("feedback", {"decision_id": "bad\nid", "reward": 1.0}, "decision_id"),
        ("feedback", {"decision_id": "x" * 201, "reward": 1.0}, "decision_id"),
        ("feedback", {"decision_id": "d1", "reward": float("inf")}, "reward"),
        ("feedback", {"decision_id": "d1", "reward": float("nan")}, "reward"),
        ("feedback", {"decision_id": "d1"}, "reward"),
        ("feedback", {"decision_id": "d1", "reward": 1.0, "event": ""}, "event"),
    ],
)
def test_bad_records_raise_and_lose_nothing(path: Path, kind: str, record: dict[str, Any], field_name: str):
    with EventLog(path, durability="strict") as log:
        log.append_decision(decision("kept"))
        log.append_feedback({"decision_id": "dkept", "reward": 1.0})
        append = log.append_decision if kind == "decision" else log.append_feedback
        with pytest.raises(ParameterError, match=field_name) as info:
            append(record)
        assert info.value.parameter == field_name
        log.append_decision(decision("after"))
    stored = EventLog(path)
    assert stored.read_decisions().decision_id.tolist() == ["dkept", "dafter"]
    assert stored.joined().reward.tolist() == [1.0, 0.0]


def test_append_many_is_all_or_nothing(path: Path):
    with EventLog(path) as log:
        with pytest.raises(ParameterError, match="propensity"):
            log.append_many([decision(1), decision(2, propensity=2.0)])
        log.append_many([decision(3)], [{"decision_id": "d3", "reward": 1.0}])
    assert EventLog(path).read_decisions().decision_id.tolist() == ["d3"]


@pytest.mark.parametrize(("kwargs", "name"), [({"durability": "eventual"}, "durability"),
                                               ({"flush_interval": 0}, "flush_interval")])
def test_bad_options(path: Path, kwargs: dict[str, Any], name: str):
    with pytest.raises(ParameterError, match=name):
        EventLog(path, **kwargs)


def test_closed_log_refuses_appends_and_close_is_idempotent(path: Path):
    log = EventLog(path)
    log.append_decision(decision(1))
    log.close()
    log.close()
    with pytest.raises(StorageError, match="closed"):
        log.append_decision(decision(2))
    assert len(log.read_decisions()) == 1


def test_stats(path: Path):
    with EventLog(path) as log:
        log.append_decision(decision(1, ts=10.0))
        log.append_decision(decision(2, ts=20.0))
        log.append_feedback({"decision_id": "d1", "ts": 15.0, "reward": 1.0})
    stats = EventLog(path).stats()
    assert stats["decisions"] == 2 and stats["feedback"] == 1
    assert (stats["first_decision"], stats["last_decision"]) == (10.0, 20.0)
    assert stats["first_feedback"] == stats["last_feedback"] == 15.0


def test_reads_in_the_writing_process_see_its_own_appends(path: Path):
    log = EventLog(path, flush_interval=10.0)
    log.append_decision(decision(1))
    assert log.read_decisions().decision_id.tolist() == ["d1"]
    log.close()


def test_backpressure_bounds_the_queue(path: Path):
    with EventLog(path, max_pending=10, flush_interval=1.0) as log:
        for i in range(100):
            log.append_decision(decision(i))
    assert len(EventLog(path).read_decisions()) == 100


def test_no_leftover_writer_threads(path: Path):
    before = threading.active_count()
    for _ in range(3):
        with EventLog(path) as log:
            log.append_decision(decision(1))
    assert threading.active_count() == before
    assert os.path.exists(path)


@pytest.mark.parametrize("durability", ["strict", "relaxed"])
def test_a_failed_batch_is_reported_not_swallowed(path: Path, durability: str):
    import sqlite3

    log = EventLog(path, durability=durability)
    log.append_decision(decision(1))
    log.flush()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE decisions RENAME TO moved")
    if durability == "strict":
        with pytest.raises(StorageError, match="cannot write"):
            log.append_decision(decision(2))
    else:
        log.append_decision(decision(2))
        with pytest.raises(StorageError, match="cannot write"):
            log.flush()
    log.flush()  # reported once
    log.append_feedback({"decision_id": "d1", "reward": 1.0})
    log.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT decision_id FROM moved").fetchall() == [("d1",)]
        assert conn.execute("SELECT COUNT(*) FROM feedback").fetchone() == (1,)
