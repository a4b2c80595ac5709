"""``matinee demo``: train and compare recommenders on the simulated service (or MovieLens), then artwork
policies on the simulator's bandit problem, and show the results."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import click

COLUMNS = ["model", "ndcg@10", "recall@20", "map@10", "coverage@10", "fit_seconds"]

#: Size of the artwork part per --sim-size: logged rounds, online rounds, bootstrap resamples.
ARTWORK_SIZES = {"tiny": (4_000, 6_000, 50), "small": (12_000, 30_000, 100), "medium": (40_000, 60_000, 200),
                 "large": (100_000, 200_000, 500)}


def run_demo(*, movielens: str | None, sim_size: str, seed: int, as_json: bool, only: str | None = None) -> None:
    """The recommendations part, then the artwork part (``only`` runs one of them); JSON on stdout with ``as_json``."""
    summary: dict[str, object] = {}
    if only in (None, "recs"):
        summary.update(run_recs(movielens=movielens, sim_size=sim_size, seed=seed, as_json=as_json))
    if only in (None, "artwork"):
        summary["artwork"] = run_artwork(sim_size=sim_size, seed=seed, as_json=as_json)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))


def run_recs(*, movielens: str | None, sim_size: str, seed: int, as_json: bool) -> dict[str, object]:
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
        return summary
    from matinee.cli.views import print_table

    d = data.data_summary
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
    return summary


def run_artwork(*, sim_size: str, seed: int, as_json: bool) -> dict[str, object]:
    """Artwork policies on the simulator: online learning curves and off-policy estimates, in a flow."""
    from matinee.apps.artwork.flow import ArtworkTrainingFlow, label
    from matinee.core.client import Run
    from matinee.core.runtime.runner import Runner

    rounds, online_rounds, bootstrap = ARTWORK_SIZES[sim_size]
    params = {"rounds": str(rounds), "online-rounds": str(online_rounds), "online-window": str(online_rounds // 3),
              "bootstrap": str(bootstrap), "seed": str(seed)}
    if not as_json:
        click.echo(f"\nArtwork: {len(_grid())} policies learn online on the simulator for {online_rounds:,} rounds, "
                   f"then are fitted on {rounds // 2:,} uniformly random logged rounds and evaluated off-policy "
                   f"on the next {rounds // 2:,}\n")
    runner = Runner(ArtworkTrainingFlow, params=params, quiet=as_json, echo=lambda line: click.echo(line, err=as_json))
    with contextlib.redirect_stdout(sys.stderr if as_json else sys.stdout):  # keep stdout pure JSON
        run_id = runner.run()
    run = Run(f"ArtworkTrainingFlow/{run_id}")
    data = run.data
    summary = {
        "run": run.pathspec,
        "data": data.data_summary,
        "online": data.online,
        "leaderboard": data.leaderboard,
        "best": data.best_config,
        "estimates": data.estimates,
        "true_value": data.truth,
        "report": data.report_path,
    }
    if as_json:
        return summary
    from matinee.cli.views import print_table

    def interval(row: dict[str, object], name: str) -> str:
        return f"{row[name]:.3f} [{row[name + '_low']:.3f}, {row[name + '_high']:.3f}]"

    window = online_rounds // 3
    online = [{"policy": o["policy"], f"share of oracle, last {window:,}": f"{o['share_of_oracle_last']:.1%}",
               "cumulative regret": f"{o['cumulative_regret']:,.0f}", "exploration": f"{o['exploration_rate_last']:.3f}",
               "decisions/s": f"{o['decisions_per_second']:,.0f}"}
              for o in sorted(data.online, key=lambda o: -o["share_of_oracle_last"])]
    print_table(online, list(online[0]), title=f"Learning online from nothing for {online_rounds:,} rounds "
                                               f"(feedback every 1,000 decisions)")
    level = data.estimates["dr"]["level"]
    rows = [{"policy": row["policy"], f"DR [{level:.0%} interval]": interval(row, "dr"), "IPS": f"{row['ips']:.3f}",
             "SNIPS": f"{row['snips']:.3f}", "DM": f"{row['dm']:.3f}",
             "true value": "" if row["truth"] is None else f"{row['truth']:.3f}"}
            for row in data.leaderboard]
    print_table(rows, list(rows[0]), title="Fitted on logs, ranked by off-policy DR estimate")
    click.echo(f"Picked by DR: {label(data.best_config)}  (true value {data.truth:.4f})\n"
               f"Report (learning curves and estimates, opens offline): {data.report_path}\n"
               f"  matinee show {run.pathspec}\n"
               f"  python -c \"from matinee import Run; print(Run('{run.pathspec}').data.policy)\"")
    return summary


def _grid() -> list[dict[str, Any]]:
    from matinee.apps.artwork.flow import DEFAULT_GRID

    return DEFAULT_GRID
