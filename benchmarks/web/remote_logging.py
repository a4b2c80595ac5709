"""Remote metric logging: points/s through matinee's REST client vs MLflow's batched ``log_batch``.

Both servers run on 127.0.0.1 over SQLite, one server process each (``matinee
server``; ``mlflow server --workers 1``). One client logs ``--points`` metric
points to one run in batches of ``--batch`` (MLflow's limit is 1000 metrics a
``log_batch`` call), ``--repeat`` times; the median repeat is reported with the
client's CPU time and the server's (from /proc). Run with the benchmark
environment's python (it has mlflow; matinee is installed there too):

    /work/venvs/bench/bin/python benchmarks/web/remote_logging.py --points 100000 --batch 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children that were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU of ``pid`` and its live descendants (MLflow's server runs its app in a child)."""
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for kid in child.read_text().split():
            try:
                total += tree_cpu(int(kid))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def wait_for(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {proc.stderr.read() if proc.stderr else ''}") from None
            time.sleep(0.1)


@contextmanager
def matinee_server(folder: Path) -> Iterator[tuple[str, int]]:
    env = {**os.environ, "MATINEE_HOME": str(folder / "matinee")}
    env.pop("MATINEE_TRACKING_URI", None)
    exe = shutil.which("matinee", path=str(Path(sys.executable).parent)) or shutil.which("matinee")
    proc = subprocess.Popen([str(exe), "server", "--port", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        url = line.split("serving ", 1)[1].split()[0]
        wait_for(url + "/api/v1/health", proc)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


@contextmanager
def mlflow_server(folder: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    proc = subprocess.Popen(
        [exe, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--default-artifact-root",
         str(folder / "mlflow-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + "/health", proc, timeout=120)
        yield url, proc.pid
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


def measure(log: Callable[[], None], server_pid: int, points: int, repeat: int) -> dict[str, Any]:
    log()  # warm-up: connections, the first transaction, the server's imports
    rounds = []
    for _ in range(repeat):
        server_cpu, cpu, wall = tree_cpu(server_pid), time.process_time(), time.perf_counter()
        log()
        wall = time.perf_counter() - wall
        rounds.append({"wall_s": wall, "client_cpu_s": time.process_time() - cpu,
                       "server_cpu_s": tree_cpu(server_pid) - server_cpu, "points_per_s": points / wall})
    median = sorted(rounds, key=lambda r: r["points_per_s"])[len(rounds) // 2]
    return {**{k: round(v, 3) for k, v in median.items()},
            "points_per_s_all": [round(r["points_per_s"]) for r in rounds]}


def bench_matinee(folder: Path, points: int, batch: int, repeat: int) -> dict[str, Any]:
    from matinee.core.storage.remote import Client, RemoteMetadataStore

    with matinee_server(folder) as (url, pid):
        meta = RemoteMetadataStore(Client(url))
        run_id = meta.create_run("RemoteLogging", "bench", kind="tracking")
        step = [0]

        def log() -> None:
            now = time.time()
            for start in range(0, points, batch):
                base = step[0]
                meta.log_metrics([(run_id, None, f"m{i % 20:02d}", base + i, float(i) * 0.5, now)
                                  for i in range(start, min(points, start + batch))])
            step[0] += points

        result = measure(log, pid, points, repeat)
        stored = len(meta.metrics(run_id, "m00"))
        assert stored == (repeat + 1) * points // 20, stored
        return result


def bench_mlflow(folder: Path, points: int, batch: int, repeat: int) -> dict[str, Any]:
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    with mlflow_server(folder) as (url, pid):
        client = MlflowClient(tracking_uri=url)
        run_id = client.create_run(client.create_experiment("remote-logging")).info.run_id
        step = [0]

        def log() -> None:
            now = int(time.time() * 1000)
            for start in range(0, points, batch):
                base = step[0]
                metrics = [Metric(f"m{i % 20:02d}", float(i) * 0.5, now, base + i)
                           for i in range(start, min(points, start + batch))]
                client.log_batch(run_id, metrics=metrics)
            step[0] += points

        return measure(log, pid, points, repeat)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=["matinee", "mlflow"])
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"points": args.points, "batch": args.batch, "repeat": args.repeat,
                           "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "matinee"):
            out["matinee"] = bench_matinee(Path(tmp), args.points, args.batch, args.repeat)
        if args.only in (None, "mlflow"):
            out["mlflow"] = bench_mlflow(Path(tmp), args.points, args.batch, args.repeat)
    if "matinee" in out and "mlflow" in out:
        out["ratio"] = round(out["matinee"]["points_per_s"] / out["mlflow"]["points_per_s"], 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
