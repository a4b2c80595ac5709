"""Server time of the dashboard and the API over 10k runs x 20 metrics, beside MLflow's search_runs.

    python benchmarks/web/bench_pages.py                       # build the stores if needed, measure, print
    python benchmarks/web/bench_pages.py --no-mlflow --explain # matinee only, with SQLite's query plans

Each case is measured twice: in-process (the ASGI app through Starlette's
TestClient: wall and CPU time of the call) and over real HTTP against a
``matinee server`` process (client wall time, and the server process's CPU
time per request from /proc). Medians of ``--repeat`` calls after
``--warmup``. The MLflow side runs in the benchmark environment
(``--mlflow-python``), on an SQLite store filled with the same runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from populate import Sizes, ensure  # noqa: E402

TARGETS = {"runs page": 200.0, "top 10": 20.0}


def cases(metric: str, runs: int) -> dict[str, str]:
    """Case name -> path; the names match bench_mlflow.py's."""
    middle = runs // 2
    compare = "&".join(f"runs={middle + i}" for i in range(5))
    return {
        "runs page (50, newest first)": "/runs",
        "runs page sorted by a metric": f"/runs?sort=metric:{metric}&order=desc",
        "runs page filtered (flow+status+tag)": "/runs?flow=TrainFlow&status=completed&tag=nightly",
        "top 10 runs by a metric": f"/api/v1/runs?sort=metric:{metric}&order=desc&limit=10",
        "run page (one run)": f"/runs/{middle}",
        "compare 5 runs": f"/compare?{compare}",
    }


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def in_process(home: Path, paths: dict[str, str], repeat: int, warmup: int) -> dict[str, dict[str, float]]:
    from starlette.testclient import TestClient

    from matinee.config import load_settings
    from matinee.web.app import create_app

    client = TestClient(create_app(load_settings(home=str(home)), host="127.0.0.1"), base_url="http://127.0.0.1")
    out = {}
    for name, path in paths.items():
        for _ in range(warmup):
            assert client.get(path).status_code == 200, path
        walls, cpus = [], []
        for _ in range(repeat):
            cpu, wall = time.process_time(), time.perf_counter()
            response = client.get(path)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            assert response.status_code == 200
        out[name] = {"wall_ms": _median_ms(walls), "cpu_ms": _median_ms(cpus), "bytes": len(response.content)}
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def over_http(home: Path, paths: dict[str, str], repeat: int, warmup: int) -> dict[str, dict[str, float]]:
    import httpx

    env = {**os.environ, "MATINEE_HOME": str(home)}
    for name in ("MATINEE_TRACKING_URI", "MATINEE_TOKEN", "MATINEE_METADATA_URL", "MATINEE_BLOB_URL"):
        env.pop(name, None)
    server = subprocess.Popen([sys.executable, "-m", "matinee.cli.main", "server", "--host", "127.0.0.1",
                               "--port", "0"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[3]
        out = {}
        with httpx.Client(base_url=url, timeout=60) as client:
            for name, path in paths.items():
                for _ in range(warmup):
                    assert client.get(path).status_code == 200, path
                walls = []
                cpu = _cpu_seconds(server.pid)
                for _ in range(repeat):
                    wall = time.perf_counter()
                    response = client.get(path)
                    walls.append(time.perf_counter() - wall)
                    assert response.status_code == 200
                server_cpu = (_cpu_seconds(server.pid) - cpu) / repeat * 1000
                out[name] = {"wall_ms": _median_ms(walls), "server_cpu_ms": server_cpu}
        return out
    finally:
        server.terminate()
        server.wait(timeout=20)


def library(home: Path, metric: str, repeat: int) -> dict[str, float]:
    """The store calls under the top-10 case, without HTTP: search_runs and latest_metrics."""
    from matinee.core.storage.metadata import MetadataStore

    meta = MetadataStore.open(f"sqlite:///{home / 'matinee.db'}")
    timings: dict[str, Callable[[], Any]] = {
        "search_runs(sort=metric, limit=10)": lambda: meta.search_runs(sort=f"metric:{metric}", limit=10),
        "search_runs(default, limit=50)": lambda: meta.search_runs(limit=50),
        "search_runs(flow+status+tag)": lambda: meta.search_runs(flow="TrainFlow", status="completed",
                                                                 tag="nightly"),
    }
    out = {}
    for name, call in timings.items():
        call()
        samples = []
        for _ in range(repeat):
            began = time.perf_counter()
            call()
            samples.append(time.perf_counter() - began)
        out[name] = _median_ms(samples)
    meta.close()
    return out


def explain(home: Path, metric: str) -> str:
    """SQLite's plans for the queries behind the runs page and the top 10."""
    import sqlite3

    db = sqlite3.connect(f"file:{home / 'matinee.db'}?mode=ro", uri=True)
    queries = {
        "top 10 by metric (rows)": "SELECT r.*, lm.value FROM runs r JOIN latest_metrics lm ON lm.run_id = r.id"
                                   " AND lm.name = ? WHERE 1 = 1 AND lm.value IS NOT NULL"
                                   " ORDER BY lm.value DESC, r.id DESC LIMIT 10",
        "top 10 by metric (NaN runs, read when the page reaches past the numbers)":
            "SELECT r.*, lm.value FROM runs r JOIN latest_metrics lm ON lm.run_id = r.id"
            " AND lm.name = ? WHERE 1 = 1 AND lm.value IS NULL ORDER BY r.id DESC LIMIT 10",
        "top 10 by metric (count)": "SELECT COUNT(*) FROM runs r JOIN latest_metrics lm ON lm.run_id = r.id"
                                    " AND lm.name = ? WHERE 1 = 1",
        "top 10 by metric (count without a run filter, latest_metrics alone)":
            "SELECT COUNT(*) FROM latest_metrics WHERE name = ?",
        "filtered page (rows)": "SELECT r.* FROM runs r WHERE r.flow_name = 'TrainFlow' AND r.status = 'completed'"
                                " AND r.id IN (SELECT run_id FROM run_tags WHERE tag = 'nightly')"
                                " ORDER BY r.id DESC LIMIT 50",
        "filtered page (count)": "SELECT COUNT(*) FROM runs r WHERE r.flow_name = 'TrainFlow' AND "
                                 "r.status = 'completed' AND r.id IN (SELECT run_id FROM run_tags WHERE tag = 'nightly')",
    }
    lines = []
    for name, sql in queries.items():
        args = (metric,) if "?" in sql else ()
        began = time.perf_counter()
        db.execute(sql, args).fetchall()
        ms = (time.perf_counter() - began) * 1000
        plan = db.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
        lines.append(f"{name} ({ms:.1f} ms):")
        lines += [f"    {row[-1]}" for row in plan]
    db.close()
    return "\n".join(lines)


def table(paths: dict[str, str], local: dict[str, Any], http: dict[str, Any], mlflow: dict[str, Any]) -> str:
    head = ("| case | in-process wall | in-process CPU | HTTP wall | server CPU / req | target | "
            "MLflow search_runs wall | MLflow CPU | MLflow / matinee (in-process) |")
    rows = [head, "|" + " --- |" * 9]
    for name in paths:
        target = TARGETS["top 10"] if name.startswith("top 10") else (
            TARGETS["runs page"] if name.startswith("runs page") else None)
        ours = local[name]["wall_ms"]
        met = "" if target is None else (f"< {target:.0f} ms {'met' if ours < target else 'MISSED'}")
        theirs = mlflow.get(name)
        rows.append(
            f"| {name} | {ours:.1f} ms | {local[name]['cpu_ms']:.1f} ms | "
            f"{http[name]['wall_ms']:.1f} ms | {http[name]['server_cpu_ms']:.1f} ms | {met} | "
            + (f"{theirs['wall_ms']:.1f} ms{'' if theirs.get('n', 20) >= 20 else ' (n=' + str(theirs['n']) + ')'} | "
               f"{theirs['cpu_ms']:.1f} ms | {theirs['wall_ms'] / ours:.1f}x |" if theirs else "- | - | - |")
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path("/tmp/matinee-web-bench"))
    parser.add_argument("--mlflow-folder", type=Path, default=Path("/tmp/mlflow-web-bench"))
    parser.add_argument("--mlflow-python", default="/work/venvs/bench/bin/python")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--metric", default="m07")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--explain", action="store_true", help="print SQLite's query plans too")
    parser.add_argument("--json", type=Path, help="write every figure here as JSON")
    args = parser.parse_args(argv)

    sizes = Sizes()
    ensure("matinee", args.home, sizes)
    paths = cases(args.metric, sizes.runs)
    load = Path("/proc/loadavg").read_text().split()[:3]
    local = in_process(args.home, paths, args.repeat, args.warmup)
    http = over_http(args.home, paths, args.repeat, args.warmup)
    lib = library(args.home, args.metric, args.repeat)
    mlflow: dict[str, Any] = {}
    if not args.no_mlflow:
        done = subprocess.run([args.mlflow_python, str(HERE / "bench_mlflow.py"), str(args.mlflow_folder),
                               "--metric", args.metric, "--repeat", str(args.repeat), "--warmup",
                               str(args.warmup)], capture_output=True, text=True, check=True)
        mlflow = json.loads(done.stdout)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    print(f"## Web: runs page and top 10 ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    print(f"{sizes.runs:,} runs x {sizes.metrics} metrics x {sizes.steps} steps "
          f"({sizes.runs * sizes.metrics * sizes.steps:,} metric points), SQLite; medians of {args.repeat} after "
          f"{args.warmup} warm-up calls. Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; load average {' '.join(load)} before, {' '.join(load_after)} after."
          + (f" MLflow {mlflow['_version']['mlflow']}." if mlflow else "") + "\n")
    print(table(paths, local, http, mlflow))
    print("\nStore calls alone (median): " + "; ".join(f"{k} {v:.2f} ms" for k, v in lib.items()))
    if args.explain:
        print("\n```\n" + explain(args.home, args.metric) + "\n```")
    if args.json:
        args.json.write_text(json.dumps({"in_process": local, "http": http, "library": lib, "mlflow": mlflow,
                                         "load": [load, load_after]}, indent=2))


if __name__ == "__main__":
    main()
