"""Experiments benchmark (issue 8): members needed by interleaving vs an A/B test, and analysis at 10M exposures.

Part 1, sensitivity: two rankers of known quality on the simulated service
(:class:`matinee.apps.sim.experiments.RankerDuel`); for each test, the smallest
number of members at which it detects the better ranker in 80% of seeded
replicate experiments (alpha 0.05, two-sided), found by bisection on a log
scale. Target: interleaving needs >= 10x fewer members than the A/B test on
take rate.

Part 2, scale: an event log holding 10M exposures (decisions of one
experiment's two arms, 1M members, a play or skip feedback event each),
written straight into the log's SQLite schema; then ``analyze`` of the
experiment, timed end to end (reading the log into per-member metrics, the
CUPED pre-period, the statistics). Target: < 10 s.

Usage::

    python benchmarks/experiments/run.py                     # both parts
    python benchmarks/experiments/run.py --only power --replicates 100
    python benchmarks/experiments/run.py --only scale --log /tmp/ev10m.db --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- part 1 --------------------------------------------------------------------------------------
def power(replicates: int, spreads: list[float]) -> list[dict[str, Any]]:
    from matinee.apps.sim.experiments import RankerDuel

    rows = []
    for spread in spreads:
        duel = RankerDuel("medium", noise_a=1.1, noise_b=1.0, k=10, visits=5.0, appetite_spread=spread, seed=0)
        truth = duel.truth()
        started = time.perf_counter()
        il = duel.members_for_power("interleaving", replicates=replicates, low=200, high=16_000)
        ab = duel.members_for_power("ab", replicates=replicates, low=2_000, high=500_000)
        rows.append({"appetite_spread": spread, "truth": truth, "interleaving": il, "ab": ab,
                     "ratio": ab["members"] / il["members"], "seconds": time.perf_counter() - started})
        print(f"spread {spread}: interleaving {il['members']}, A/B {ab['members']}, "
              f"ratio {ab['members'] / il['members']:.1f}x", file=sys.stderr, flush=True)
    return rows


# -- part 2 --------------------------------------------------------------------------------------
def build_log(path: Path, n_decisions: int, n_members: int, experiment: Any, start: float) -> float:
    """Write ``n_decisions`` exposures with a feedback event each into the event log's schema."""
    from matinee import EventLog

    began = time.perf_counter()
    with EventLog(path) as log:  # creates the file and its schema
        log.append_decision({"decision_id": "schema", "ts": 0.0, "unit_id": "x", "endpoint": "artwork",
                             "model": "other", "candidates": [], "action": 0, "propensity": 1.0})
    rng = np.random.default_rng(0)
    arm_of = np.array([experiment.assign(m) for m in range(n_members)], dtype=object)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    chunk = 500_000
    for lo in range(0, n_decisions, chunk):
        n = min(chunk, n_decisions - lo)
        members = rng.integers(0, n_members, n)
        ts = start + np.sort(rng.random(n)) * 86_400.0
        arms = arm_of[members]
        lift = np.where(arms == "challenger", 0.005, 0.0)
        played = rng.random(n) < 0.1 + lift
        items = rng.integers(0, 3000, n)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?,?)", (
            (f"d{lo + i}", float(ts[i]), str(members[i]), "recs", "ranker", 1 if arms[i] == "champion" else 2,
             arms[i], "[]", f"[{items[i]}]", str(items[i]), 1.0) for i in range(n)))
        conn.executemany("INSERT INTO feedback VALUES (?,?,?,?)", (
            (f"d{lo + i}", float(ts[i]) + 5.0, f"play:{items[i]}" if played[i] else "skip", float(played[i]))
            for i in range(n)))
        conn.execute("COMMIT")
        print(f"  {lo + n:,} decisions written", file=sys.stderr, flush=True)
    conn.close()
    return time.perf_counter() - began


def append(path: Path, n: int, n_members: int, experiment: Any, start: float, seed: int) -> None:
    """Append ``n`` more exposures (and their feedback) inside the window, as a server keeps doing."""
    rng = np.random.default_rng(seed)
    stamp = time.time_ns()  # ids unique across runs on the same log
    conn = sqlite3.connect(path, isolation_level=None)
    members = rng.integers(0, n_members, n)
    ts = start + rng.random(n) * 86_400.0
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?,?)", (
        (f"a{seed}-{stamp}-{i}", float(ts[i]), str(members[i]), "recs", "ranker", 1, experiment.assign(int(members[i])),
         "[]", "[1]", "1", 1.0) for i in range(n)))
    conn.executemany("INSERT INTO feedback VALUES (?,?,?,?)", (
        (f"a{seed}-{stamp}-{i}", float(ts[i]) + 5.0, "skip", 0.0) for i in range(n)))
    conn.execute("COMMIT")
    conn.close()


def scale(log_path: Path, n_decisions: int, n_members: int, repeats: int) -> dict[str, Any]:
    import tempfile

    os.environ["MATINEE_HOME"] = tempfile.mkdtemp(prefix="matinee-bench-home-")  # the analysis cache goes here
    from matinee.core.experiments import Experiment, analyze

    start = 1_700_000_000.0
    experiment = Experiment.build("big", ["ranker@champion", "ranker@challenger"], started_at=start,
                                  stopped_at=start + 86_400.0, status="stopped")
    built = None
    if not log_path.exists():
        built = build_log(log_path, n_decisions, n_members, experiment, start)
    timings = []

    def timed(label: str, **kwargs: Any) -> Any:
        began, cpu = time.perf_counter(), time.process_time()
        result = analyze(experiment, log_path, **kwargs)
        timings.append({"run": label, "seconds": time.perf_counter() - began, "cpu_seconds": time.process_time() - cpu,
                        "load": load()})
        print(f"  {label}: {timings[-1]['seconds']:.1f} s, load {load()}", file=sys.stderr, flush=True)
        return result

    for i in range(repeats):
        analysis = timed(f"full read {i + 1}", cache=False)
    timed("first analysis, keeping the sums", cache=True)
    for i in range(repeats):
        append(log_path, n_decisions // 100, n_members, experiment, start, seed=100 + i)
        timed(f"after 1% more exposures ({i + 1})", cache=True)
    members = analysis.arms
    take = analysis.primary()[0]
    return {"log": str(log_path), "log_bytes": log_path.stat().st_size, "build_seconds": built,
            "exposures": float(sum(a["impressions"] for a in members)), "members": int(sum(a["units"] for a in members)),
            "timings": timings,
            "take_rate": {k: take[k] for k in ("mean_control", "mean_treatment", "diff", "diff_low", "diff_high",
                                               "p_value")}, "srm_p": analysis.srm.p_value if analysis.srm else None}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"## Experiments (issue 8) — {result['date']}", "",
             f"- Machine: {result['machine']}; load average at start {result['load_start']}, "
             f"at end {result['load_end']}",
             f"- Command: `{result['command']}`; total {result['minutes']:.1f} min", ""]
    if "power" in result:
        lines += ["Sensitivity: two rankers on the simulated service (`medium`: 10,000 members, 3,000 titles; "
                  "noise 1.1 vs 1.0 logits; 10 titles per impression; about 5 impressions per member), "
                  f"80% power at alpha 0.05, {result['replicates']} seeded replicate experiments per size:", "",
                  "| member appetite spread | true take rate a / b | true difference | interleaving members | "
                  "A/B members (take rate) | A/B / interleaving | target | met |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in result["power"]:
            t = row["truth"]
            lines.append(f"| {row['appetite_spread']} | {t['take_rate_a']:.4f} / {t['take_rate_b']:.4f} | "
                         f"{t['difference']:+.4f} ({t['relative']:+.1%}) | {row['interleaving']['members']:,} | "
                         f"{row['ab']['members']:,} | {row['ratio']:.1f}x | >= 10x | "
                         f"{'yes' if row['ratio'] >= 10 else 'no'} |")
        lines.append("")
    if "scale" in result:
        s = result["scale"]
        lines += [f"Scale: `analyze` of an experiment with {s['exposures']:,.0f} exposures ({s['members']:,} "
                  f"members, one feedback event each; log file {s['log_bytes'] / 2**30:.2f} GiB), end to end "
                  "(event log to effects, SRM and CUPED pre-period):", "",
                  "| run | seconds | CPU seconds | load | target | met |", "|---|---|---|---|---|---|"]
        for t in s["timings"]:
            lines.append(f"| {t['run']} | {t['seconds']:.1f} | {t['cpu_seconds']:.1f} | {t['load']} | < 10 s | "
                         f"{'yes' if t['seconds'] < 10 else 'no'} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["power", "scale"])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--spreads", default="1.0,1.5", help="Member appetite spreads to run (comma-separated).")
    parser.add_argument("--log", default="/tmp/matinee-experiments-bench/events.db")
    parser.add_argument("--decisions", type=int, default=10_000_000)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--markdown", dest="markdown_path")
    args = parser.parse_args()
    began = time.perf_counter()
    result: dict[str, Any] = {
        "date": time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime()), "load_start": load(),
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}",
        "command": "python benchmarks/experiments/run.py " + " ".join(sys.argv[1:]), "replicates": args.replicates}
    if args.only in (None, "power"):
        result["power"] = power(args.replicates, [float(x) for x in args.spreads.split(",")])
    if args.only in (None, "scale"):
        path = Path(args.log)
        path.parent.mkdir(parents=True, exist_ok=True)
        result["scale"] = scale(path, args.decisions, args.members, args.repeats)
    result["load_end"] = load()
    result["minutes"] = (time.perf_counter() - began) / 60
    text = markdown(result)
    print(text)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2, default=str))
    if args.markdown_path:
        Path(args.markdown_path).write_text(text)


if __name__ == "__main__":
    main()
