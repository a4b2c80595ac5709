"""``matinee demo``: train and compare recommenders on the simulated service (or MovieLens) and show the result."""

from __future__ import annotations

import contextlib
import json
import sys

import click

COLUMNS = ["model", "ndcg@10", "recall@20", "map@10", "coverage@10", "fit_seconds"]


def run_demo(*, movielens: str | None, sim_size: str, seed: int, as_json: bool) -> None:
    from matinee.apps.recs.flow import RecsTrainingFlow
    from matinee.core.client import Run
    from matinee.core.runtime.runner import Runner

    params = {"sim-size": sim_size, "seed": str(seed)}
    if movielens:
        params["movielens"] = movielens
    runner = Runner(RecsTrainingFlow, params=params, quiet=as_json, echo=lambda line: click.echo(line, err=as_json))
    with contextlib.redirect_stdout(sys.stderr if as_json else sys.stdout):  # keep stdout pure JSON
        run_id = runner.run()
    run = Run(f"RecsTrainingFlow/{run_id}")
    data = run.data
    summary = {
        "run": run.pathspec,
        "data": data.data_summary,
        "dataset_hash": data.dataset_hash,
        "leaderboard": data.leaderboard,
        "best": data.best_config,
        "test_metrics": data.test_metrics,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    from matinee.cli.views import print_table

    d = summary["data"]
    click.echo(f"\nData: {d['users']} members, {d['items']} titles, {d['interactions']} interactions "
               f"(dataset {data.dataset_hash[:12]})")
    print_table(data.leaderboard, COLUMNS, title="Models ranked by validation NDCG@10")
    test = data.test_metrics
    click.echo(f"Winner on held-out test data: {data.leaderboard[0]['model']}  "
               f"NDCG@10 {test['ndcg@10']:.4f}  Recall@20 {test['recall@20']:.4f}\n  {data.leaderboard[0]['params']}")
    click.echo(
        "\nLook around:\n"
        f"  matinee show {run.pathspec}\n"
        f"  matinee metrics {run.pathspec}\n"
        f"  matinee logs {run.pathspec}/fit\n"
        f"  python -c \"from matinee import Run; print(Run('{run.pathspec}').data.model)\""
    )
