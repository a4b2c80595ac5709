"""The Ray executor against the process executor and the ideal, on this machine.

Cases (each mode runs in a fresh interpreter with its own MATINEE_HOME):

* ``cpu``: a foreach over ``--n`` tasks (default 100), each burning ``--seconds``
  (0.5) of CPU time, ``--workers`` (2) at a time; the ideal is n x seconds / workers.
* ``trivial``: a foreach over ``--trivial-n`` (200) tasks that do nothing: the
  per-task overhead of each executor (run wall time / tasks, 2 in flight).

Modes: ``process`` (forked workers), ``ray-cold`` (a local Ray started and stopped
by the run, as ``python flow.py run --executor ray`` does; ``ray.init`` time
reported separately), ``ray-warm`` (a local Ray already running, as on a cluster
or in a session that keeps one). Ray listens on every interface: run this only
inside a loopback-only namespace::

    unshare -n sh -c "ip link set lo up && python benchmarks/ray/run.py --repeats 3 --json /tmp/ray_bench.json"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOWS = HERE / "flows.py"


def one(mode: str, n: int, seconds: float, workers: int) -> dict:
    """Run the flow once in this process under ``mode``; returns timings (called in a child)."""
    sys.path.insert(0, str(HERE))
    from flows import CpuFlow

    from matinee.core.runtime.runner import Runner

    lines: list[str] = []
    ray_init = None
    if mode == "ray-warm":
        import ray

        from matinee.core.executors.ray import start_local_ray

        started = time.perf_counter()
        start_local_ray(ray, num_cpus=workers)
        ray_init = time.perf_counter() - started
        # let the workers Ray prestarts come up, as on a cluster that is already running
        ray.get([ray.remote(lambda: 0).remote() for _ in range(workers)])
    executor = "ray" if mode.startswith("ray") else mode
    started = time.perf_counter()
    run_id = Runner(CpuFlow, params={"n": n, "seconds": seconds}, executor=executor, max_workers=workers,
                    echo=lines.append).run()
    wall = time.perf_counter() - started
    for line in lines:
        if line.startswith("Started a local Ray in "):
            ray_init = float(line.split(" in ")[1].split("s")[0])
    from matinee import Run

    result = Run(f"CpuFlow/{run_id}")
    assert result.data.tasks == n, result.data.tasks
    return {"mode": mode, "n": n, "seconds": seconds, "workers": workers, "wall": wall, "ray_init": ray_init,
            "run_time": result.finished_at - result.created_at}


def measure(mode: str, n: int, seconds: float, workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="matinee-ray-bench-") as home:
        env = {**os.environ, "MATINEE_HOME": home, "MATINEE_USER": "bench"}
        proc = subprocess.run(
            [sys.executable, __file__, "--one", mode, "--n", str(n), "--seconds", str(seconds),
             "--workers", str(workers)],
            env=env, capture_output=True, text=True, timeout=1800,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trivial-n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default="process,ray-cold,ray-warm")
    parser.add_argument("--cases", default="cpu,trivial", help="cpu, trivial or both")
    parser.add_argument("--json", help="write every measurement here")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.n, args.seconds, args.workers)))
        return

    modes = args.modes.split(",")
    load_start = os.getloadavg()
    began = time.time()
    rows: list[dict] = []
    for repeat in range(args.repeats):
        for case, n, seconds in (("cpu", args.n, args.seconds), ("trivial", args.trivial_n, 0.0)):
            if case not in args.cases.split(","):
                continue
            for mode in modes:
                row = {"case": case, "repeat": repeat, **measure(mode, n, seconds, args.workers)}
                rows.append(row)
                print(f"{case:8s} {mode:9s} repeat {repeat}: wall {row['wall']:.2f}s"
                      + (f" (ray.init {row['ray_init']:.2f}s)" if row["ray_init"] else ""), flush=True)
    load_end = os.getloadavg()

    import matinee

    ray_version = None
    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        pass
    ideal = args.n * args.seconds / args.workers
    out = [
        f"- Machine: {os.cpu_count()} CPUs, {platform.platform()}; Python {platform.python_version()}, "
        f"matinee {getattr(matinee, '__version__', '?')}, ray {ray_version}",
        f"- Load average (1, 5, 15 min) at start: {' '.join(f'{x:.2f}' for x in load_start)}; "
        f"at end: {' '.join(f'{x:.2f}' for x in load_end)}",
        f"- Command: `python benchmarks/ray/run.py --repeats {args.repeats}` inside `unshare -n`; "
        f"total {(time.time() - began) / 60:.1f} min; medians of {args.repeats} runs",
        "",
        f"CPU-bound foreach: {args.n} tasks x {args.seconds:g} CPU-s, {args.workers} at a time "
        f"(ideal {ideal:.1f} s):",
        "",
        "| executor | run wall (median) | x ideal | best run | ray.init | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    cpu = {m: [r for r in rows if r["case"] == "cpu" and r["mode"] == m] for m in modes}
    process_wall = median(cpu.get("process", []), "wall")
    for mode in modes:
        if not cpu[mode]:
            continue
        wall = median(cpu[mode], "wall")
        best = min(r["wall"] for r in cpu[mode])
        init = median(cpu[mode], "ray_init")
        assert wall is not None
        target, met = "", ""
        if mode.startswith("ray"):
            target = "<= 1.3x ideal, <= process"
            met = "yes" if wall <= 1.3 * ideal and (process_wall is None or wall <= process_wall) else "NO"
        init_text = f"{init:.2f} s" if init is not None else "-"
        if mode == "ray-warm" and init is not None:
            init_text += " (before the run, not counted)"
        out.append(f"| {mode} | {wall:.2f} s | {wall / ideal:.2f}x | {best:.2f} s ({best / ideal:.2f}x) "
                   f"| {init_text} | {target} | {met} |")
    if "trivial" in args.cases.split(","):
        out += ["", f"Per-task overhead: foreach over {args.trivial_n} trivial tasks, {args.workers} at a time:", "",
                "| executor | run wall (median) | per task | ray.init |", "|---|---|---|---|"]
    for mode in modes:
        trivial = [r for r in rows if r["case"] == "trivial" and r["mode"] == mode]
        if not trivial:
            continue
        wall = median(trivial, "wall")
        init = median(trivial, "ray_init")
        assert wall is not None
        per_task = (wall - (init or 0.0) if mode == "ray-cold" else wall) / args.trivial_n
        out.append(f"| {mode} | {wall:.2f} s | {per_task * 1000:.1f} ms"
                   + (" (without ray.init)" if mode == "ray-cold" else "")
                   + f" | {f'{init:.2f} s' if init is not None else '-'} |")
    print("\n".join(out))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "markdown": out}, indent=1))


if __name__ == "__main__":
    main()
