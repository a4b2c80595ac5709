"""Case (e): metric logging throughput, matinee vs MLflow.

Usage: ``python tracking.py MODE [POINTS]`` with ``BENCH_LIB`` set to
``matinee`` or ``mlflow``. MODE is one of:

- ``per_call``: one ``log_metric`` call per point;
- ``dict``: ``log_metrics({"m0": v, ..., "m9": v}, step=i)``, 10 points a call;
- ``batch``: the whole list of points at once (MLflow: ``log_batch`` in
  chunks of 1000, the most one MLflow request accepts).

The timed region starts inside the run and ends after the run is closed, so
any buffered writes are flushed inside it. Afterwards (untimed) the points are
read back and counted; a shortfall fails the command. Prints one JSON line
with the timings.
"""

import json
import os
import sys
import time

METRICS_PER_STEP = 10
MLFLOW_BATCH_LIMIT = 1000


def clock():
    """Current (wall, process CPU) time."""
    return time.perf_counter(), time.process_time()


def since(start):
    """Seconds of (wall, process CPU) time elapsed since ``start = clock()``."""
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


def points(n):
    """The ``n`` points as ``(name, value, step)`` tuples, 10 metrics per step."""
    return [(f"m{i % METRICS_PER_STEP}", i * 0.001, i // METRICS_PER_STEP) for i in range(n)]


def by_step(pts):
    """Group points into ``(step, {name: value})`` pairs."""
    steps = {}
    for name, value, step in pts:
        steps.setdefault(step, {})[name] = value
    return sorted(steps.items())


def metric_names(mode):
    """Names the points of ``mode`` are logged under."""
    if mode == "per_call":
        return ["loss"]
    return [f"m{i}" for i in range(METRICS_PER_STEP)]


def log_matinee(mode, pts):
    """Log ``pts`` with matinee; return (wall, CPU) seconds and points read back."""
    import matinee

    with matinee.start_run("bench") as run:
        start = clock()
        if mode == "per_call":
            for i, (_, value, _) in enumerate(pts):
                run.log_metric("loss", value, step=i)
        elif mode == "dict":
            for step, metrics in by_step(pts):
                run.log_metrics(metrics, step=step)
        else:
            run.log_batch(pts)
    elapsed = since(start)
    stored = matinee.Run(run.pathspec)
    return elapsed, sum(len(stored.metric(name).values) for name in metric_names(mode))


def log_mlflow(mode, pts):
    """Log ``pts`` with MLflow; return (wall, CPU) seconds and points read back."""
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    with mlflow.start_run() as run:
        start = clock()
        if mode == "per_call":
            for i, (_, value, _) in enumerate(pts):
                mlflow.log_metric("loss", value, step=i)
        elif mode == "dict":
            for step, metrics in by_step(pts):
                mlflow.log_metrics(metrics, step=step)
        else:
            client = MlflowClient()
            now = int(time.time() * 1000)
            metrics = [Metric(name, value, now, step) for name, value, step in pts]
            for i in range(0, len(metrics), MLFLOW_BATCH_LIMIT):
                client.log_batch(run.info.run_id, metrics=metrics[i : i + MLFLOW_BATCH_LIMIT])
    elapsed = since(start)
    client = MlflowClient()
    return elapsed, sum(
        len(client.get_metric_history(run.info.run_id, name)) for name in metric_names(mode)
    )


def main():
    mode = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    if mode not in ("per_call", "dict", "batch"):
        sys.exit(f"unknown mode {mode!r}")
    log = log_mlflow if os.environ.get("BENCH_LIB") == "mlflow" else log_matinee
    (wall, cpu), stored = log(mode, points(n))
    if stored != n:
        sys.exit(f"logged {n} points but {stored} were stored")
    print(json.dumps({"mode": mode, "points": n, "wall": wall, "cpu": cpu}))


if __name__ == "__main__":
    main()
