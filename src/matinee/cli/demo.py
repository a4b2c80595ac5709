"""``matinee demo``: run the example flow and show what it made."""

from __future__ import annotations

import contextlib
import json
import sys

import click

from matinee.core.runtime.runner import Runner


def run_demo(*, users: int, items: int, seed: int, as_json: bool) -> None:
    from matinee.core.client import Run
    from matinee.demo.popularity_flow import PopularityDemoFlow

    runner = Runner(
        PopularityDemoFlow,
        params={"users": str(users), "items": str(items), "seed": str(seed)},
        quiet=as_json,
        echo=lambda line: click.echo(line, err=as_json),
    )
    with contextlib.redirect_stdout(sys.stderr if as_json else sys.stdout):  # keep stdout pure JSON
        run_id = runner.run()
    run = Run(f"PopularityDemoFlow/{run_id}")
    leaderboard = run.data.leaderboard
    artifacts = {name: a.size for name, a in run["start"].task.artifacts.items()}
    if as_json:
        click.echo(json.dumps({"run": run.pathspec, "leaderboard": leaderboard, "artifacts": artifacts}, indent=2))
        return
    from matinee.cli.views import print_table

    click.echo("")
    columns = list(leaderboard[0])
    print_table(leaderboard, columns, title=f"Models ranked by {columns[1]} ({run.pathspec})")
    print_table(
        [{"name": n, "size": s} for n, s in artifacts.items()], ["name", "size"], title="Artifacts of the start step"
    )
    click.echo(
        f"\nBest model: {run.data.best['model']}. Look around:\n"
        f"  matinee show {run.pathspec}\n"
        f"  matinee metrics {run.pathspec}\n"
        f"  matinee logs {run.pathspec}/train_model\n"
        f"  python -c \"from matinee import Run; print(Run('{run.pathspec}').data.leaderboard)\""
    )
