"""Event log throughput: ``python events_bench.py DIR [--seconds S]`` prints one JSON line.

Each case opens a fresh ``matinee.EventLog`` file in DIR, appends artwork-like
decision records (8 context floats, 5 candidates) for about S seconds and then
closes the log; the rate is records / (time of the appends + the close), so
every record counted is committed. Cases:

- ``relaxed, append_decision``: one record per call, one thread;
- ``relaxed, append_many x20``: 20 records per call (one artwork request), one thread;
- ``strict, append_decision, 1 thread``: every call waits for its batch's fsync;
- ``strict, append_decision, 32 threads`` and ``strict, append_many x20, 32 threads``:
  32 concurrent appenders, whose waits share group commits.

The record count is checked against the file after each case.
"""

import argparse
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from matinee import EventLog

CONTEXT = [0.1234, -1.5, 0.75, 2.0, -0.25, 0.5, 1.125, -0.875]
CANDIDATES = ["v0", "v1", "v2", "v3", "v4"]


def record(i):
    return {"decision_id": uuid.uuid4().hex, "ts": time.time(), "unit_id": f"m{i % 5000}",
            "context": CONTEXT, "candidates": CANDIDATES, "action": CANDIDATES[i % 5], "propensity": 0.2,
            "endpoint": "artwork", "model": "artwork", "model_version": 1, "arm": "champion"}


def count(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]


def run_case(path, durability, batch, threads, seconds):
    log = EventLog(path, durability=durability)
    counts = [0] * threads
    stop = threading.Event()

    def worker(slot):
        i = 0
        while not stop.is_set():
            if batch == 1:
                log.append_decision(record(i))
                i += 1
            else:
                log.append_many([record(i + j) for j in range(batch)])
                i += batch
            counts[slot] = i

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    appended = time.perf_counter()
    log.close()
    elapsed = time.perf_counter() - started
    total = sum(counts)
    stored = count(path)
    return {"durability": durability, "batch": batch, "threads": threads, "records": total,
            "stored": stored, "seconds": elapsed, "close_seconds": elapsed - (appended - started),
            "per_second": total / elapsed, "complete": stored == total}


CASES = [
    ("relaxed, append_decision", "relaxed", 1, 1),
    ("relaxed, append_many x20", "relaxed", 20, 1),
    ("strict, append_decision, 1 thread", "strict", 1, 1),
    ("strict, append_decision, 32 threads", "strict", 1, 32),
    ("strict, append_many x20, 32 threads", "strict", 20, 32),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    results = {}
    for i, (label, durability, batch, threads) in enumerate(CASES):
        results[label] = run_case(folder / f"events-{i}.db", durability, batch, threads, args.seconds)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
