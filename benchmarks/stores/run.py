"""Metadata stores: PostgreSQL against SQLite, through matinee's own APIs.

What it measures, per dialect, each case repeated and reported as the median:

* metric logging throughput: ``matinee.start_run(...).log_metric`` (the buffer
  ``current.log_metric`` uses inside steps, 1000-point batches) and a
  ``MetricBuffer`` flushing every 10 points (many small transactions, as several
  short steps logging a few metrics each would);
* run listing with 10,000 runs of one flow: ``MetadataStore.list_runs`` (all of
  them, and the newest 20) and the client's ``Flow(name).runs()`` (rows, their
  tags, ``Run`` objects) and ``Flow(name).latest_run``.

SQLite is the embedded default (WAL, ``synchronous=NORMAL``), a file in a temporary
folder. PostgreSQL is a throwaway local server started for the run (the one the
tests use, tests/_postgres.py) with its default durability (``fsync=on``,
``synchronous_commit=on``), reached over TCP on 127.0.0.1.

    python benchmarks/stores/run.py [--runs 10000] [--repeat 5] [--json out.json] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # the throwaway server of the test suite


def median_time(fn: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def use(url: str, home: Path) -> None:
    """Point the process's settings (and so ``open_store``) at ``url``."""
    from matinee.core.store import close_stores

    close_stores()
    os.environ["MATINEE_HOME"] = str(home)
    os.environ["MATINEE_USER"] = "bench"
    os.environ["MATINEE_METADATA_URL"] = url


def seed_runs(n: int) -> None:
    """``n`` finished runs of flow "Bench" with their system and user tags, written in bulk."""
    from matinee.core.store import open_store

    meta = open_store().metadata
    now = time.time()
    rows = [dict(flow="Bench", now=now - n + i, pid=1, host="bench-host") for i in range(n)]
    meta.db.executemany(
        "INSERT INTO runs (flow_name, kind, status, user_name, created_at, finished_at, heartbeat_at, pid, hostname)"
        " VALUES (:flow, 'flow', 'completed', 'bench', :now, :now, :now, :pid, :host)",
        rows,
    )
    ids = [r["id"] for r in meta.db.query("SELECT id FROM runs WHERE flow_name = 'Bench'")]
    tags = [dict(run=i, tag=t, system=s) for i in ids for t, s in (("user:bench", 1), ("nightly", 0))]
    meta.db.executemany("INSERT INTO run_tags (run_id, tag, system) VALUES (:run, :tag, :system)", tags)


def bench_dialect(name: str, url: str, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    import matinee
    from matinee import Flow
    from matinee.core.store import open_store
    from matinee.core.tracking.tracker import MetricBuffer

    use(url, home)
    open_store()  # creates (migrates) the schema, outside the timings
    out: dict[str, Any] = {"dialect": name}

    points = args.points

    def log_big_batches() -> None:
        with matinee.start_run("Metrics") as run:
            for i in range(points):
                run.log_metric("loss", 1.0 / (i + 1), step=i)

    t, all_t = median_time(log_big_batches, args.repeat)
    out["log_metric_1000_batches"] = {"seconds": t, "points": points, "points_per_s": points / t, "all": all_t}

    small = points // 4
    meta = open_store().metadata

    def log_small_batches() -> None:
        run_id = meta.create_run("Small", "bench", kind="tracking")
        buffer = MetricBuffer(meta, run_id, max_points=10, max_seconds=3600)
        for i in range(small):
            buffer.log_metric("loss", 1.0 / (i + 1), step=i)
        buffer.flush()
        meta.finish_run(run_id, "completed")

    t, all_t = median_time(log_small_batches, args.repeat)
    out["metric_buffer_10_point_batches"] = {
        "seconds": t, "points": small, "points_per_s": small / t, "ms_per_batch": 1000 * t / (small / 10), "all": all_t,
    }

    start = time.perf_counter()
    seed_runs(args.runs)
    out["seed_seconds"] = time.perf_counter() - start
    count = len(meta.list_runs("Bench"))
    assert count == args.runs, count

    cases: dict[str, Callable[[], Any]] = {
        "list_runs_all": lambda: meta.list_runs("Bench"),
        "list_runs_limit_20": lambda: meta.list_runs("Bench", limit=20),
        "flow_runs_all": lambda: list(Flow("Bench").runs()),
        "flow_latest_run": lambda: Flow("Bench").latest_run,
    }
    for case, fn in cases.items():
        fn()  # warm: caches, the first query plan
        t, all_t = median_time(fn, args.repeat)
        out[case] = {"seconds": t, "all": all_t}
    assert len(list(Flow("Bench").runs())) == args.runs
    return out


def machine() -> dict[str, Any]:
    import psycopg
    import sqlalchemy

    import matinee

    mem = ""
    try:
        text = Path("/proc/meminfo").read_text()
        kb = int(next(line for line in text.splitlines() if line.startswith("MemTotal")).split()[1])
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    cpu = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import sqlite3

    return {
        "date": time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime()),
        "cpus": os.cpu_count(), "memory": mem, "cpu": cpu, "platform": platform.platform(),
        "python": platform.python_version(), "matinee": matinee.__version__, "sqlalchemy": sqlalchemy.__version__,
        "psycopg": psycopg.__version__, "sqlite": sqlite3.sqlite_version, "load": os.getloadavg(),
    }


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    by = {r["dialect"]: r for r in result["dialects"]}
    s, p = by["sqlite"], by["postgresql"]

    def ms(x: float) -> str:
        return f"{x * 1000:.1f} ms" if x < 10 else f"{x:.2f} s"

    lines = [
        f"## Metadata stores (issue 6): PostgreSQL vs SQLite — {m['date']}",
        "",
        f"- Machine: {m['cpus']} CPUs, {m['memory']} memory, {m['cpu']}, {m['platform']}; load average at start"
        f" {' '.join(f'{x:.2f}' for x in m['load'])}",
        f"- Python {m['python']}; matinee {m['matinee']}, SQLAlchemy {m['sqlalchemy']}, psycopg {m['psycopg']},"
        f" SQLite {m['sqlite']}, PostgreSQL {result['postgres_version']}",
        f"- Command: `python benchmarks/stores/run.py --runs {result['runs']} --repeat {result['repeat']}`;"
        f" medians of {result['repeat']} repetitions; total {result['total_seconds'] / 60:.1f} min",
        "- SQLite: the embedded default (WAL, synchronous=NORMAL), a local file. PostgreSQL 127.0.0.1 over TCP, a"
        " local throwaway server with its default durability (fsync=on, synchronous_commit=on).",
        "",
        "| case | SQLite | PostgreSQL | PostgreSQL / SQLite |",
        "|---|---|---|---|",
    ]
    for key, label in (("log_metric_1000_batches", f"`start_run().log_metric`, {s['log_metric_1000_batches']['points']:,} points, 1000-point batches"),
                       ("metric_buffer_10_point_batches", f"`MetricBuffer`, {s['metric_buffer_10_point_batches']['points']:,} points, 10-point batches")):
        a, b = s[key]["points_per_s"], p[key]["points_per_s"]
        lines.append(f"| {label} | {a:,.0f} points/s | {b:,.0f} points/s | {b / a:.2f}x throughput |")
    a, b = s["metric_buffer_10_point_batches"]["ms_per_batch"], p["metric_buffer_10_point_batches"]["ms_per_batch"]
    lines.append(f"| one 10-point batch (a transaction) | {a:.2f} ms | {b:.2f} ms | {b / a:.2f}x time |")
    for key, label in (("list_runs_all", f"`MetadataStore.list_runs(flow)`, all {result['runs']:,} runs"),
                       ("list_runs_limit_20", "`MetadataStore.list_runs(flow, limit=20)`"),
                       ("flow_runs_all", f"`list(Flow(name).runs())`, {result['runs']:,} runs with tags"),
                       ("flow_latest_run", "`Flow(name).latest_run`")):
        a, b = s[key]["seconds"], p[key]["seconds"]
        lines.append(f"| {label} | {ms(a)} | {ms(b)} | {b / a:.2f}x time |")
    lines.append(f"| seeding {result['runs']:,} runs and 2 tags each (bulk insert) | {ms(s['seed_seconds'])} |"
                 f" {ms(p['seed_seconds'])} | {p['seed_seconds'] / s['seed_seconds']:.2f}x time |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()

    from _postgres import start_server

    started = time.perf_counter()
    info = machine()
    results = []
    with tempfile.TemporaryDirectory(prefix="matinee-stores-") as tmp:
        root = Path(tmp)
        results.append(bench_dialect("sqlite", f"sqlite:///{root / 'sqlite' / 'matinee.db'}", root / "sqlite", args))
        server = start_server(durable=True)
        try:
            with server.admin() as conn:  # type: ignore[attr-defined]
                conn.execute("CREATE DATABASE bench")
                version = conn.execute("SHOW server_version").fetchone()[0]
            results.append(bench_dialect("postgresql", server.url("bench"), root / "postgresql", args))
        finally:
            from matinee.core.store import close_stores

            close_stores()
            server.stop()
    result = {"machine": info, "runs": args.runs, "repeat": args.repeat, "postgres_version": version,
              "dialects": results, "total_seconds": time.perf_counter() - started}
    text = markdown(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
