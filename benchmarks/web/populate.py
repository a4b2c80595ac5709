"""Build the stores the web benchmarks read: 10,000 runs x 20 metrics x 5 steps.

    python benchmarks/web/populate.py matinee /tmp/matinee-web-bench
    /work/venvs/bench/bin/python benchmarks/web/populate.py mlflow /tmp/mlflow-web-bench

A store is built once: a folder holding ``populated.json`` with the same
sizes is reused as it is (delete the folder to rebuild). The data is the same
on both sides (seeded): 4 flows, 6 users, user tags, 3 params per run, and
each of 20 metrics logged at 5 steps, so the metrics table holds 1M points and
only the last step is a run's "latest" value.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FLOWS = ("TrainFlow", "TuneFlow", "EvalFlow", "IngestFlow")
USERS = ("ana", "bo", "chen", "dee", "eli", "fay")
TAGS = ("nightly", "team-a", "team-b", "candidate", "baseline")
BATCH = 100  # runs per metric batch


@dataclass(frozen=True)
class Sizes:
    runs: int = 10_000
    metrics: int = 20
    steps: int = 5

    @property
    def names(self) -> list[str]:
        return [f"m{i:02d}" for i in range(self.metrics)]


@dataclass
class FakeRun:
    index: int
    flow: str
    user: str
    status: str
    tags: list[str]
    params: dict[str, object]
    points: list[tuple[str, int, float, float]]  # name, step, value, ts


def runs(sizes: Sizes, seed: int = 7) -> Iterator[FakeRun]:
    """The same runs for every backend."""
    rng = random.Random(seed)
    start = time.time() - 86400 * 30
    for i in range(sizes.runs):
        ts = start + i * 60.0
        tags = sorted(set(rng.sample(TAGS, rng.randint(0, 2)) + [f"batch-{i // 1000}"]))
        points = [(name, step, rng.random() * (1 + step), ts + step)
                  for name in sizes.names for step in range(sizes.steps)]
        yield FakeRun(
            index=i, flow=FLOWS[i % len(FLOWS)], user=USERS[rng.randrange(len(USERS))],
            status="failed" if rng.random() < 0.1 else "completed", tags=tags,
            params={"lr": round(rng.random() / 10, 5), "depth": rng.randint(2, 12), "seed": i},
            points=points,
        )


def _done(folder: Path, sizes: Sizes) -> bool:
    marker = folder / "populated.json"
    return marker.exists() and json.loads(marker.read_text()) == sizes.__dict__


def _mark(folder: Path, sizes: Sizes) -> None:
    (folder / "populated.json").write_text(json.dumps(sizes.__dict__))


def populate_matinee(home: Path, sizes: Sizes) -> float:
    """Fill a matinee store under ``home`` through MetadataStore; returns seconds taken."""
    from matinee.core.storage.metadata import MetadataStore

    home.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    meta = MetadataStore.open(f"sqlite:///{home / 'matinee.db'}")
    pending: list[tuple[int, int | None, str, int | None, float, float]] = []
    for run in runs(sizes):
        run_id = meta.create_run(run.flow, run.user, tags=run.tags, params=run.params)
        pending += [(run_id, None, name, step, value, ts) for name, step, value, ts in run.points]
        meta.finish_run(run_id, run.status)
        if (run.index + 1) % BATCH == 0:
            meta.log_metrics(pending)
            pending = []
        if (run.index + 1) % 1000 == 0:
            print(f"  matinee: {run.index + 1} runs", file=sys.stderr)
    meta.log_metrics(pending)
    meta.close()
    return time.perf_counter() - began


def populate_mlflow(folder: Path, sizes: Sizes) -> float:
    """Fill an MLflow SQLite tracking store under ``folder`` with its batch API; returns seconds."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    folder.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    client = MlflowClient(tracking_uri=mlflow_uri(folder))
    experiment = client.create_experiment("web-bench", artifact_location=str(folder / "artifacts"))
    for run in runs(sizes):
        tags = {"mlflow.user": run.user, "flow": run.flow, **{f"tag.{t}": "1" for t in run.tags}}
        created = client.create_run(experiment, tags=tags, run_name=f"{run.flow}-{run.index}")
        run_id = created.info.run_id
        metrics = [Metric(name, value, int(ts * 1000), step) for name, step, value, ts in run.points]
        params = [Param(k, str(v)) for k, v in run.params.items()]
        client.log_batch(run_id, metrics=metrics, params=params, tags=[RunTag("status", run.status)])
        client.set_terminated(run_id, "FAILED" if run.status == "failed" else "FINISHED")
        if (run.index + 1) % 500 == 0:
            print(f"  mlflow: {run.index + 1} runs", file=sys.stderr)
    return time.perf_counter() - began


def mlflow_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def ensure(kind: str, folder: Path, sizes: Sizes = Sizes()) -> None:
    """Build the ``kind`` store in ``folder`` unless it is there already."""
    if _done(folder, sizes):
        return
    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"{folder} holds something else: delete it or pick another folder")
    print(f"populating {kind} in {folder} ({sizes.runs} runs x {sizes.metrics} metrics x {sizes.steps} steps)",
          file=sys.stderr)
    seconds = (populate_matinee if kind == "matinee" else populate_mlflow)(folder, sizes)
    _mark(folder, sizes)
    print(f"{kind}: populated in {seconds:.1f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["matinee", "mlflow"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    ensure(args.kind, args.folder, Sizes(args.runs, args.metrics, args.steps))


if __name__ == "__main__":
    main()
