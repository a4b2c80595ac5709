"""The MLflow side of the web benchmarks: ``search_runs`` on the same 10k runs x 20 metrics (SQLite).

Run with the benchmark environment's python (it has mlflow); prints one JSON
object: case -> {"wall_ms": median, "cpu_ms": median, "rows": n}.

    /work/venvs/bench/bin/python benchmarks/web/bench_mlflow.py /tmp/mlflow-web-bench --metric m07
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from populate import ensure, mlflow_uri  # noqa: E402


def measure(call: Callable[[], Any], repeat: int, warmup: int) -> dict[str, float]:
    """Medians of ``repeat`` calls after ``warmup``; a case over 1 s a call gets 5 timed calls."""
    for _ in range(warmup):
        began = time.perf_counter()
        call()
        if time.perf_counter() - began > 1.0:
            repeat = min(repeat, 5)
    walls, cpus = [], []
    rows = 0
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        result = call()
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
        rows = len(result) if hasattr(result, "__len__") else 1
    return {"wall_ms": statistics.median(walls), "cpu_ms": statistics.median(cpus), "rows": rows, "n": repeat}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--metric", default="m07")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)

    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    from mlflow.tracking import MlflowClient

    ensure("mlflow", args.folder)
    client = MlflowClient(tracking_uri=mlflow_uri(args.folder))
    experiment = client.get_experiment_by_name("web-bench")
    assert experiment is not None, "populate the MLflow store first"
    ids = [experiment.experiment_id]
    m = args.metric
    some = client.search_runs(ids, max_results=5, order_by=["attributes.start_time ASC"])
    run_ids = [r.info.run_id for r in some]
    nightly = "tags.flow = 'TrainFlow' and attributes.status = 'FINISHED' and tags.`tag.nightly` = '1'"
    cases: dict[str, Callable[[], Any]] = {
        "runs page (50, newest first)": lambda: client.search_runs(ids, max_results=50),
        "runs page sorted by a metric": lambda: client.search_runs(ids, max_results=50,
                                                                   order_by=[f"metrics.{m} DESC"]),
        "runs page filtered (flow+status+tag)": lambda: client.search_runs(ids, filter_string=nightly,
                                                                           max_results=50),
        "top 10 runs by a metric": lambda: client.search_runs(ids, max_results=10, order_by=[f"metrics.{m} DESC"]),
        "run page (one run)": lambda: [client.get_run(run_ids[0])],
        "compare 5 runs": lambda: [client.get_run(r) for r in run_ids],
    }
    out = {name: measure(call, args.repeat, args.warmup) for name, call in cases.items()}
    import mlflow

    out["_version"] = {"mlflow": mlflow.__version__}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
