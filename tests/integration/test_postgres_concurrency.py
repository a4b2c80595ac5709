"""Sixteen processes against one PostgreSQL database at once: runs, metrics, versions, alias moves.

Nothing may fail and nothing may be lost: every run completes with every metric point
in order, model versions are numbered 1..N without a gap or a repeat, and each alias's
history is one unbroken chain (every move starts where the previous one ended), which
it can only be if alias moves were serialized.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from pathlib import Path

import pytest

WORKERS = 16
RUNS_PER_WORKER = 2
POINTS = 200  # per series; each run logs three series
VERSIONS_PER_WORKER = 3


def _work(worker: int, gate: str) -> str:
    """One process's share; returns the traceback of anything it raised ("" when none)."""
    try:
        import matinee
        from matinee.core import registry

        while not os.path.exists(gate):
            time.sleep(0.001)
        for r in range(RUNS_PER_WORKER):
            with matinee.start_run("Load", tags=[f"w{worker}"], params={"worker": worker, "run": r}) as run:
                for i in range(POINTS):
                    run.log_metric("loss", worker * 1000 + i, step=i)
                    run.log_metrics({"a": float(i), "b": float(-i)}, step=i)
                    if i % 50 == 0:
                        run.flush()  # many small batches from many processes, interleaved
        for i in range(VERSIONS_PER_WORKER):
            version = matinee.register_model("shared", {"worker": worker, "i": i}).version
            registry.promote("shared", version)
            registry.set_alias("shared", f"w{worker}", version)
    except BaseException:
        return traceback.format_exc()
    return ""


def test_sixteen_processes_write_runs_metrics_and_alias_moves_at_once(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matinee.core import registry
    from matinee.core.store import close_stores, open_store

    monkeypatch.setenv("MATINEE_METADATA_URL", postgres_url)
    open_store()  # the schema exists, as in a deployment
    close_stores()  # no connection of the parent's is inherited by the workers
    gate = tmp_path / "go"
    with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
        pending = pool.starmap_async(_work, [(w, str(gate)) for w in range(WORKERS)])
        time.sleep(0.3)
        gate.touch()
        errors = [e for e in pending.get(timeout=240) if e]
    assert errors == []

    meta = open_store().metadata
    runs = meta.list_runs("Load")
    assert len(runs) == WORKERS * RUNS_PER_WORKER
    assert len({r["id"] for r in runs}) == len(runs)
    assert all(r["status"] == "completed" for r in runs)
    for run in runs:
        (worker,) = [t["tag"] for t in meta.run_tags(run["id"]) if t["tag"].startswith("w")]
        assert meta.run_params(run["id"])["worker"] == int(worker[1:])
        points = meta.metrics(run["id"])
        assert len(points) == 3 * POINTS
        loss = [(p["step"], p["value"]) for p in points if p["name"] == "loss"]
        assert loss == [(i, float(int(worker[1:]) * 1000 + i)) for i in range(POINTS)]
        assert [p["step"] for p in points if p["name"] == "a"] == list(range(POINTS))

    versions = registry.versions("shared")
    assert [v.version for v in versions] == list(range(1, WORKERS * VERSIONS_PER_WORKER + 1))
    assert len({v.artifact_key for v in versions}) == len(versions)  # each its own content

    champion = registry.alias_history("shared", "champion")
    assert len(champion) == WORKERS * VERSIONS_PER_WORKER
    assert champion[0].from_version is None
    for before, after in zip(champion, champion[1:], strict=False):
        assert after.from_version == before.to_version  # one unbroken chain: moves were serialized
    assert registry.get_model("shared", alias="champion").version == champion[-1].to_version
    for worker in range(WORKERS):
        moves = registry.alias_history("shared", f"w{worker}")
        assert [c.action for c in moves] == ["set", "move", "move"]
        assert moves[1].from_version == moves[0].to_version and moves[2].from_version == moves[1].to_version
