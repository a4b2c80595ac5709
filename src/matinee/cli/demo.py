"""``matinee demo``: the whole loop on the embedded default, with nothing to start.

1. Train and compare recommenders on the simulated streaming service (or
   MovieLens), then artwork policies on the simulator's bandit problem, in
   real flows.
2. Register the winners in the model registry from the runs' artifacts: the
   best recommender as ``champion``; the artwork policy picked by DR as
   ``champion`` and the runner-up as ``challenger``.
3. Serve them with ``matinee serve`` on a free port of 127.0.0.1: the artwork
   aliases split 50/50 by member, learning online from feedback.
4. Drive simulated members through real HTTP; the simulator's ground truth
   decides plays; every artwork decision gets its feedback.
5. Stop the server with SIGTERM, read the event log and the registry back,
   compare the off-policy estimates with the online take rates, and write an
   HTML report.

``--only recs|artwork`` runs and registers one part without serving;
``--movielens`` trains the recommenders on MovieLens and skips serving (the
simulated members are not MovieLens users). The serving half lives in
:mod:`matinee.cli.demo_loop`.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Any

import click

COLUMNS = ["model", "ndcg@10", "recall@20", "map@10", "coverage@10", "fit_seconds"]

#: Size of the artwork part per --sim-size: logged rounds, online rounds, bootstrap resamples.
ARTWORK_SIZES = {"tiny": (4_000, 6_000, 50), "small": (12_000, 30_000, 100), "medium": (40_000, 60_000, 200),
                 "large": (100_000, 200_000, 500)}
#: The artwork part with --quick, whatever the size.
ARTWORK_QUICK = (4_000, 3_000, 20)


def run_demo(*, movielens: str | None, sim_size: str, seed: int, as_json: bool, only: str | None = None,
             quick: bool = False) -> None:
    """Train, register, serve, drive traffic, and report (see the module docstring); JSON on stdout with ``as_json``.

    Parameters
    ----------
    movielens
        A MovieLens folder for the recommenders instead of the simulator (no serving then).
    sim_size
        Size of the simulated service the recommenders train on.
    seed
        Seed of the simulation, the flows and the simulated traffic.
    as_json
        Print one JSON document on stdout (progress goes to stderr).
    only
        ``"recs"`` or ``"artwork"``: train and register that part only, without serving.
    quick
        Smaller artwork training and less traffic: the whole loop in a few seconds.
    """
    from matinee.cli import demo_loop
    from matinee.config import load_settings
    from matinee.progress import enabled

    def echo(line: str) -> None:
        click.echo(line, err=as_json)

    began = time.time()
    mode = "quick" if quick else "full"
    summary: dict[str, Any] = {"mode": mode}
    recs = artwork = None
    if only in (None, "recs"):
        _phase(echo, "Training recommenders")
        recs = run_recs(movielens=movielens, sim_size=sim_size, seed=seed, as_json=as_json)
        summary.update(recs)
    if only in (None, "artwork"):
        _phase(echo, "Training artwork policies")
        artwork = run_artwork(sim_size=sim_size, seed=seed, as_json=as_json, quick=quick)
        summary["artwork"] = artwork
    _phase(echo, "Registering the winners")
    registered = demo_loop.register_winners(recs, artwork)
    summary["registry"] = registered
    for name, aliases in registered.items():
        for alias, info in aliases.items():
            what = info.get("policy") or info.get("model")
            echo(f"  {name} version {info['version']} ({what}, from {info['source']}) -> {alias}")
    serve = recs is not None and artwork is not None and not movielens
    if serve:
        assert recs is not None and artwork is not None
        _phase(echo, "Serving: champion vs challenger, learning online")
        traffic = "quick" if quick or sim_size == "tiny" else "full"  # tiny is for tests: quick traffic too
        online = demo_loop.run_loop(artwork=artwork, registered=registered, sim_size=sim_size, seed=seed,
                                    mode=traffic, since=began,
                                    home=load_settings().home, echo=echo, show_progress=enabled())
        _phase(echo, "Reading back the event log and the registry")
        report = demo_loop.write_report(online, recs, artwork)
        summary["online"] = {k: v for k, v in online.items() if not k.startswith("_")}
        summary["report"] = None if report is None else str(report)
        if not as_json:
            demo_loop.print_summary(online, recs, registered)
        if report is not None:
            echo(f"\nReport (take rate per arm over time, estimate vs observed; opens offline): {report}")
    elif movielens and only is None:
        echo("\n(--movielens: the simulated members are not MovieLens users, so nothing is served)")
    summary["seconds"] = time.time() - began
    summary["dashboard"] = dashboard_command()
    echo(f"\nmatinee demo ({mode}) finished in {summary['seconds']:.0f}s")
    echo(f"See the runs, models, experiment, bandits and events it made in the dashboard:\n"
         f"  {summary['dashboard']}   (then open http://127.0.0.1:5173)")
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))


def dashboard_command() -> str:
    """The command that opens the dashboard on this store (naming the store unless it is the default)."""
    import os
    import shlex

    home = os.environ.get("MATINEE_HOME")
    return f"MATINEE_HOME={shlex.quote(home)} matinee ui" if home else "matinee ui"


def _phase(echo: Any, title: str) -> None:
    echo(f"\n== {title} ==")


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


def run_artwork(*, sim_size: str, seed: int, as_json: bool, quick: bool = False) -> dict[str, object]:
    """Artwork policies on the simulator: online learning curves and off-policy estimates, in a flow."""
    from matinee.apps.artwork.flow import ArtworkTrainingFlow, label
    from matinee.core.client import Run
    from matinee.core.runtime.runner import Runner

    rounds, online_rounds, bootstrap = ARTWORK_QUICK if quick else ARTWORK_SIZES[sim_size]
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
        "shape": list(data.shape),
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
