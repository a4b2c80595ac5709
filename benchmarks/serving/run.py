"""Serving benchmark: matinee's server side by side with a bare ASGI app and MLflow's model server.

Usage (from the repository root, with the benchmark venv's python, which has MLflow):

    python benchmarks/serving/run.py                      # everything, 3 runs per side
    python benchmarks/serving/run.py --quick              # 1 run per side, shorter loads
    python benchmarks/serving/run.py --only recs,swap
    python benchmarks/serving/run.py --json out.json --markdown section.md

Progress goes to stderr; the table goes to stdout unless JSON or markdown is
sent there instead. See benchmarks/README.md (Serving) for what each case measures.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from load import Load, run_python
from report import (
    Row,
    at_least,
    below,
    environment,
    equals,
    load_average,
    markdown_section,
    ratio_at_least,
    text_table,
)
from servers import Server, ServerError, free_port, matinee_supports_workers

HERE = Path(__file__).resolve().parent
CASES = ("recs", "artwork", "swap", "events", "coldstart")
SWAP_MOVES = 20
SHIPPED, NODELAY = "shipped", "nodelay"
MODE_LABEL = {SHIPPED: "as shipped", NODELAY: "TCP_NODELAY"}
# uvicorn options of each configuration (see nodelay.py)
NODELAY_FLAGS = {SHIPPED: [], NODELAY: ["--http", "nodelay:NoDelayH11Protocol"]}


def progress(message):
    print(message, file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per side (default 3)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of one load run (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    parser.add_argument("--quick", action="store_true", help="1 run per side, 4 s loads")
    parser.add_argument("--only", help="comma-separated cases: " + ", ".join(CASES))
    parser.add_argument("--generator", choices=("auto", "asyncio"), default="auto",
                        help="load generator: wrk when installed (auto) or the asyncio one")
    parser.add_argument("--no-mlflow", action="store_true", help="leave MLflow out")
    parser.add_argument("--servers", choices=("both", "shipped", "nodelay"), default="both",
                        help="server configurations for recs and artwork: as shipped, with TCP_NODELAY, or both")
    parser.add_argument("--json", metavar="PATH", help="write results as JSON ('-': stdout)")
    parser.add_argument("--markdown", metavar="PATH", nargs="?", const="-",
                        help="write the RESULTS.md section (default: stdout)")
    parser.add_argument("--tmp-dir", help="where the working directory goes")
    parser.add_argument("--keep-temp", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.seconds = 1, 4.0
    cases = [c.strip() for c in args.only.split(",")] if args.only else list(CASES)
    for case in cases:
        if case not in CASES:
            parser.error(f"unknown case {case!r}; choose from {', '.join(CASES)}")
    args.cases = cases
    return args


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class Bench:
    """The working directory, the models, the servers and the samples of one run."""

    def __init__(self, args):
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="serving-bench-", dir=args.tmp_dir))
        self.home = self.root / "matinee_home"
        self.logs = self.root / "logs"
        self.logs.mkdir()
        os.environ["MATINEE_HOME"] = str(self.home)  # the registry calls of the swap case
        self.env = {"MATINEE_HOME": str(self.home),
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.load = Load(self.root, prefer_python=args.generator == "asyncio")
        self.workers_flag = matinee_supports_workers()
        self.servers = {}
        self.samples = {}
        self.extra = {}
        self.models = {}
        self.mlflow = not args.no_mlflow and _importable("mlflow")
        self.modes = [SHIPPED, NODELAY] if args.servers == "both" else [args.servers]

    # -- setup ---------------------------------------------------------------------------
    def build_models(self):
        env = {**os.environ, **self.env, "OPENBLAS_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
               "DO_NOT_TRACK": "true", "BENCH_NO_MLFLOW": "0" if self.mlflow else "1"}
        out = subprocess.run([sys.executable, HERE / "models.py", self.root], env=env, capture_output=True,
                             text=True)
        if out.returncode != 0:
            raise RuntimeError(f"building the models failed: {out.stderr.strip()[-500:]}")
        self.models = json.loads(out.stdout.strip().splitlines()[-1])
        self.bodies = json.loads((self.root / "bodies.json").read_text())
        self.mlflow = self.mlflow and self.models["mlflow_model"]

    def deployment(self, name, poll_interval=2.0, artwork=True):
        path = self.root / f"{name}.toml"
        text = f'poll_interval = {poll_interval}\n\n[recs]\nmodel = "ranker@champion"\n'
        if artwork:
            text += '\n[artwork]\nmodel = "artwork@champion"\n'
        path.write_text(text)
        return path

    # -- servers ---------------------------------------------------------------------------
    @property
    def matinee_launch(self):
        if self.workers_flag:
            return f"`matinee serve DEPLOYMENT --workers {self.args.workers}`"
        return (f"`uvicorn --factory matinee_app:app --workers {self.args.workers} --log-level info` "
                "(build_app on the deployment; this matinee serve has no --workers)")

    def matinee_server(self, name, deployment, mode=SHIPPED, workers=None):
        """matinee as shipped (``matinee serve``), or its app under uvicorn with TCP_NODELAY."""
        workers = workers or self.args.workers
        port = free_port()
        if mode == SHIPPED and self.workers_flag:
            cmd = [sys.executable, "-m", "matinee.cli.main", "serve", deployment, "--port", port,
                   "--workers", workers]
            env = self.env
        else:
            cmd = [sys.executable, "-m", "uvicorn", "--factory", "matinee_app:app", "--port", port,
                   "--workers", workers, "--log-level", "info", *NODELAY_FLAGS[mode]]
            env = {**self.env, "BENCH_DEPLOYMENT": str(deployment)}
        return Server(name, cmd, env, HERE, port, "/readyz", self.logs)

    def bare_server(self, mode=SHIPPED):
        port = free_port()
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "bare_app:app", "--port", port,
               "--workers", self.args.workers, "--log-level", "info", *NODELAY_FLAGS[mode]]
        env = {**self.env, "BENCH_FACTORS": str(self.root / "factors.npz")}
        return Server("bare", cmd, env, HERE, port, "/readyz", self.logs)

    def mlflow_server(self, mode=SHIPPED, workers=None):
        port = free_port()
        cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", self.root / "mlflow_model",
               "--env-manager", "local", "-p", port, "-w", workers or self.args.workers]
        env = self.env
        if mode == NODELAY:  # mlflow runs the uvicorn command line, which reads UVICORN_* variables
            pythonpath = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
            env = {**env, "UVICORN_HTTP": NODELAY_FLAGS[NODELAY][1], "PYTHONPATH": pythonpath}
        return Server("mlflow", cmd, env, self.root, port, "/ping", self.logs)

    def server(self, side, mode):
        """The long-lived server of ``side`` in ``mode`` (started on first use; other modes stopped)."""
        for key in [k for k in self.servers if k[1] != mode]:
            self.servers.pop(key).stop()
        if (side, mode) not in self.servers:
            make = {"matinee": lambda: self.matinee_server("matinee", self.deployment("main"), mode),
                    "bare": lambda: self.bare_server(mode), "mlflow": lambda: self.mlflow_server(mode)}[side]
            server = make()
            progress(f"  starting {side} ({mode}) ...")
            server.start()
            progress(f"  {side} ready on :{server.port} after {server.ready_seconds:.2f} s")
            self.servers[(side, mode)] = server
        return self.servers[(side, mode)]

    def stop_all(self):
        for server in self.servers.values():
            server.stop()
        self.servers = {}

    # -- measuring ---------------------------------------------------------------------------
    def measure(self, side, mode, path, bodies, connections, seconds):
        """One load run against ``side``'s server, with the server's CPU time around it."""
        server = self.server(side, mode)
        cpu0 = server.cpu()
        result = self.load.run(server.url, path, bodies, connections, seconds)
        cpu = server.cpu() - cpu0
        result["server_cpu"] = cpu
        result["server_cpu_per_request_ms"] = cpu / result["requests"] * 1000 if result["requests"] else None
        result["server_cores_busy"] = cpu / result["seconds"]
        return result

    def record(self, key, side, result):
        self.samples.setdefault(key, {}).setdefault(side, []).append(result)
        progress(f"    {key} {side}: {result['rps']:,.0f} req/s, p50 {result['p50_ms']:.2f} ms, "
                 f"p99 {result['p99_ms']:.2f} ms, errors {result['errors']}, server CPU "
                 f"{_ms(result['server_cpu_per_request_ms'])} ms/req ({result['server_cores_busy']:.2f} cores), "
                 f"generator CPU {result['generator_cpu']:.2f} s")

    def med(self, key, side, field):
        return median(r[field] for r in self.samples.get(key, {}).get(side, []))

    def compare(self, key, mode, sides, path_of, connections, seconds):
        """``repeat`` rounds over ``sides`` (order flipped every round), after one warm-up each."""
        for side in sides:
            progress(f"  [{key}] {side} warm-up")
            self.measure(side, mode, *path_of(side), connections, min(3.0, seconds))
        for i in range(self.args.repeat):
            for side in sides if i % 2 == 0 else sides[::-1]:
                self.record(key, side, self.measure(side, mode, *path_of(side), connections, seconds))


def _ms(value):
    return "-" if value is None else f"{value:.3f}"


def _importable(module):
    out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return out.returncode == 0


# -- cases ------------------------------------------------------------------------------------------

def case_recs(bench):
    """Recommendations top-10, 10k titles x 64 factors: matinee, bare ASGI, MLflow."""
    sides = ["matinee", "bare"] + (["mlflow"] if bench.mlflow else [])
    recs, mlflow = bench.bodies["recs"], bench.bodies["mlflow"]

    def path_of(side):
        return ("/invocations", mlflow) if side == "mlflow" else ("/recommendations", recs)

    seconds = bench.args.seconds
    rows = []
    for mode in bench.modes:
        k32, k8 = f"recs32:{mode}", f"recs8:{mode}"
        progress(f"  [recs] servers {MODE_LABEL[mode]}")
        bench.compare(k32, mode, sides, path_of, 32, seconds)
        bench.compare(k8, mode, sides, path_of, 8, max(3.0, seconds * 0.6))
        rows += recs_rows(bench, mode, sides, k32, k8)
    mode = bench.modes[-1]
    key = f"batch8:{mode}"
    progress(f"  [recs] /recommendations/batch, 100 members per request, 8 conns ({MODE_LABEL[mode]})")
    bench.compare(key, mode, ["matinee"], lambda side: ("/recommendations/batch", bench.bodies["recs_batch"]), 8,
                  max(3.0, seconds * 0.6))
    members = bench.med(key, "matinee", "rps")
    rows.append(Row("1", f"members/s through /recommendations/batch x100, 8 conns ({MODE_LABEL[mode]})", "req/s",
                    None if members is None else members * 100))
    rows.append(Row("3", f"server CPU per member, batch x100 ({MODE_LABEL[mode]})", "ms",
                    _div(bench.med(key, "matinee", "server_cpu_per_request_ms"), 100)))
    bench.stop_all()
    return rows


def _div(value, by):
    return None if value is None else value / by


def recs_rows(bench, mode, sides, k32, k8):
    label = MODE_LABEL[mode]

    def m(key, side, field):
        return bench.med(key, side, field)

    def row(metric, unit, key, field, anchor=None, higher=False, target=None):
        return Row("1", f"{metric} ({label})", unit, m(key, "matinee", field), anchor,
                   m(key, anchor, field) if anchor else None, higher, target)

    anchors = sides[1:]
    rows = [row("req/s, 32 conns", "req/s", k32, "rps", target=at_least(3500, "req/s"))]
    targets = {"bare": ratio_at_least(0.8, ">= 0.8x (80%)"), "mlflow": ratio_at_least(3)}
    rows += [row("req/s, 32 conns", "req/s", k32, "rps", a, True, targets[a]) for a in anchors]
    rows += [row("p50 latency, 32 conns", "ms", k32, "p50_ms", a) for a in anchors]
    rows.append(row("p99 latency, 32 conns", "ms", k32, "p99_ms", target=below(50, "ms")))
    rows += [row("p99 latency, 32 conns", "ms", k32, "p99_ms", a) for a in anchors]
    rows.append(row("p99 latency, 8 conns", "ms", k8, "p99_ms", target=below(10, "ms")))
    rows += [row("p99 latency, 8 conns", "ms", k8, "p99_ms", a) for a in anchors]
    rows += [row("req/s, 8 conns", "req/s", k8, "rps", a, True) for a in anchors]
    for a in anchors:
        r = row("server CPU per request", "ms", k32, "server_cpu_per_request_ms", a)
        r.case = "3"
        rows.append(r)
    errors = {side: sum(r["errors"] for r in bench.samples[k32][side] + bench.samples[k8][side])
              for side in sides}
    rows.append(Row("1", f"failed requests, all recs runs ({label})", "count", errors["matinee"],
                    target=equals(0, "count"), note=json.dumps(errors)))
    bench.extra[f"recs_errors:{mode}"] = errors
    bench.extra[f"generator_cpu_share:{mode}"] = {
        side: median(r["generator_cpu"] / r["seconds"] for r in bench.samples[k32][side]) for side in sides}
    return rows


def case_artwork(bench):
    """Artwork choice, 20 titles x 5 variants per request, LinUCB, decisions logged (relaxed)."""
    rows = []
    for mode in bench.modes:
        key, label = f"artwork32:{mode}", MODE_LABEL[mode]
        progress(f"  [artwork] server {label}")
        bench.compare(key, mode, ["matinee"], lambda side: ("/artwork", bench.bodies["artwork"]), 32,
                      bench.args.seconds)

        def m(field, key=key):
            return bench.med(key, "matinee", field)

        errors = sum(r["errors"] for r in bench.samples[key]["matinee"])
        rows += [
            Row("2", f"artwork req/s, 32 conns ({label})", "req/s", m("rps"), target=at_least(2000, "req/s")),
            Row("2", f"artwork decisions logged/s ({label})", "events/s", m("rps") * 20),
            Row("2", f"artwork p50, 32 conns ({label})", "ms", m("p50_ms")),
            Row("2", f"artwork p99, 32 conns ({label})", "ms", m("p99_ms")),
            Row("3", f"server CPU per artwork request ({label})", "ms", m("server_cpu_per_request_ms")),
            Row("2", f"failed artwork requests ({label})", "count", errors, target=equals(0, "count")),
        ]
    bench.stop_all()
    return rows


def case_swap(bench):
    """Hot swap under load: 20 alias moves while 32 connections ask for recommendations."""
    from matinee.core.registry import alias_history, promote

    mode = bench.modes[-1]
    server = bench.matinee_server("matinee-swap", bench.deployment("swap", poll_interval=0.05, artwork=False),
                                  mode)
    interval = 0.5
    seconds = 1.0 + SWAP_MOVES * interval + 2.0
    moves = []
    with server.start():
        progress(f"  [swap] server ({MODE_LABEL[mode]}) ready; {SWAP_MOVES} moves every {interval} s under load "
                 f"for {seconds:.0f} s")
        outcome = {}

        def drive():
            outcome["result"] = run_python(server.url, "/recommendations", bench.bodies["recs"], 32, seconds)

        thread = threading.Thread(target=drive)
        thread.start()
        time.sleep(1.0)
        for i in range(SWAP_MOVES):
            started = time.perf_counter()
            promote("ranker", 2 if i % 2 == 0 else 1)
            moves.append(time.perf_counter() - started)
            time.sleep(interval)
        thread.join()
    result = outcome["result"]
    history = alias_history("ranker", "champion")
    bench.extra["swap"] = {**result, "mode": mode, "moves": len(moves), "history": len(history),
                           "promote_seconds_median": median(moves)}
    progress(f"  [swap] {result['requests']:,} requests, errors {result['errors']}, statuses {result['statuses']}, "
             f"versions {result['versions']}, version changes seen {result.get('switches')}")
    label = MODE_LABEL[mode]
    return [
        Row("4", f"failed requests across {len(moves)} alias moves ({label})", "count", result["errors"],
            target=equals(0, "count"),
            note=f"{result['requests']:,} requests at {result['rps']:,.0f}/s; versions answered {result['versions']}"),
        Row("4", "version changes seen by the 32 connections", "count", result.get("switches", 0)),
        Row("4", "requests answered during the swaps", "count", result["requests"]),
        Row("4", "p99 during the swaps (asyncio generator)", "ms", result["p99_ms"]),
    ]


def case_events(bench):
    """Event log appends per second, relaxed (group commit) and strict (fsync), in-process."""
    seconds = 1.5 if bench.args.quick else 3.0
    runs = []
    for i in range(bench.args.repeat):
        out = subprocess.run([sys.executable, HERE / "events_bench.py", bench.root / f"events-{i}",
                              "--seconds", str(seconds)], capture_output=True, text=True,
                             env={**os.environ, **bench.env})
        if out.returncode != 0:
            raise RuntimeError(f"events_bench failed: {out.stderr.strip()[-300:]}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        progress("  [events] run {}: {}".format(
            i + 1, ", ".join(f"{k}: {v['per_second']:,.0f}/s" for k, v in runs[-1].items())))
    bench.extra["events"] = runs
    rows = []
    for label in runs[0]:
        rate = median(r[label]["per_second"] for r in runs)
        complete = all(r[label]["complete"] for r in runs)
        target = at_least(50_000, "events/s") if label.startswith("relaxed") else None
        rows.append(Row("5", label, "events/s", rate if complete else "error: records missing after close",
                        target=target))
    return rows


def case_coldstart(bench):
    """Cold start: launch to the first 200 of /readyz (matinee) and /ping (MLflow)."""
    deployment = bench.deployment("cold")
    times = {"matinee": [], "mlflow": []}
    sides = ["matinee"] + (["mlflow"] if bench.mlflow else [])
    for i in range(bench.args.repeat):
        for side in sides if i % 2 == 0 else sides[::-1]:
            if side == "matinee":
                server = bench.matinee_server("matinee-cold", deployment)
            else:
                server = bench.mlflow_server()
            with server.start(poll=0.005):
                times[side].append(server.ready_seconds)
            progress(f"  [coldstart] {side} run {i + 1}: {server.ready_seconds:.2f} s")
    bench.extra["coldstart"] = times
    rows = [Row("6", "cold start to ready", "s", median(times["matinee"]), target=below(3, "s"))]
    if bench.mlflow:
        rows.append(Row("6", "cold start to ready", "s", median(times["matinee"]), "mlflow", median(times["mlflow"])))
    return rows


CASE_FUNCTIONS = {"recs": case_recs, "artwork": case_artwork, "swap": case_swap, "events": case_events,
                  "coldstart": case_coldstart}


def models_line(models):
    if not models:
        return "not built"
    art = models["artwork"]
    return (f"matinee ALS, {models['factors']} factors, {models['users']:,} members x {models['items']:,} titles "
            f"({models['interactions']:,} synthetic plays), top 10 with seen titles excluded; artwork "
            f"{art['policy'].split('(')[0]}(alpha=0.5) over {art['context']} context x {art['features']} variant "
            f"features, {art['titles']} titles x {art['variants']} variants per request")


def emit(path, text):
    if path == "-":
        sys.stdout.write(text)
    else:
        Path(path).write_text(text)


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    env = environment()
    bench = Bench(args)
    progress(f"python {env['python']} ({sys.executable}); versions {env['versions']}; wrk: {env['wrk']}")
    progress(f"working directory {bench.root}; generator: {bench.load.name}; matinee: {bench.matinee_launch}")
    rows = []
    try:
        progress("[setup] fitting and registering the models")
        bench.build_models()
        progress(f"[setup] {bench.models}")
        for name in args.cases:
            fn = CASE_FUNCTIONS[name]
            progress(f"[{name}] {fn.__doc__.splitlines()[0]}")
            case_started = time.perf_counter()
            try:
                rows += fn(bench)
            except (ServerError, RuntimeError, OSError, KeyError, ValueError) as exc:
                traceback.print_exc(file=sys.stderr)
                rows.append(Row(name, "error", "count", f"error: {type(exc).__name__}: {exc}"))
            progress(f"[{name}] done in {time.perf_counter() - case_started:.0f} s")
    finally:
        bench.stop_all()
        if not args.keep_temp:
            shutil.rmtree(bench.root, ignore_errors=True)
    env["load_at_end"] = load_average()
    settings = {"command": " ".join(["python", *sys.argv]), "repeat": args.repeat, "seconds": args.seconds,
                "workers": args.workers, "generator": bench.load.name, "matinee_launch": bench.matinee_launch,
                "total_minutes": (time.perf_counter() - started) / 60, "cases": args.cases,
                "models_line": models_line(bench.models)}
    table = text_table(rows)
    to_stdout = "-" in (args.json, args.markdown)
    print(table, file=sys.stderr if to_stdout else sys.stdout, flush=True)
    if args.json:
        emit(args.json, json.dumps({"environment": env, "settings": settings, "models": bench.models,
                                    "rows": [r.as_dict() for r in rows], "samples": bench.samples,
                                    "extra": bench.extra}, indent=2, default=str) + "\n")
    if args.markdown:
        emit(args.markdown, markdown_section(rows, env, settings))


if __name__ == "__main__":
    main()
