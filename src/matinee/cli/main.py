"""The ``matinee`` command line.

Thin on purpose: each command parses its options, calls the library, and
renders the answer as a table (or JSON with ``--json``). A
:class:`~matinee.errors.MatineeError` becomes one line on stderr and a non-zero
exit; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
from typing import Any

import click

from matinee import __version__
from matinee.cli.output import emit_json, json_option
from matinee.errors import MatineeError, RunFailed

FLOW_COMMAND = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


class _Group(click.Group):
    """Turns matinee errors into one clean line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MatineeError as exc:
            if ctx.params.get("debug") or os.environ.get("MATINEE_DEBUG"):
                raise
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(1 if isinstance(exc, RunFailed) else 2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="matinee")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """matinee: develop, deploy and enhance personalization models.

    Runs and artifacts live under MATINEE_HOME (default ./.matinee).
    Every listing command takes --json for scripts.
    """


# -- running flows ---------------------------------------------------------------
@cli.command(context_settings=FLOW_COMMAND)
@click.argument("flow_file", metavar="FLOW_FILE")
@click.pass_context
def run(ctx: click.Context, flow_file: str) -> None:
    """Run a flow file: the same as `python FLOW_FILE run [OPTIONS]`.

    Flow options (parameters, --max-workers, --tag, --executor) follow the file;
    `matinee run FLOW_FILE --help` lists them.
    """
    _flow_command(ctx, flow_file, "run")


@cli.command(context_settings=FLOW_COMMAND)
@click.argument("flow_file", metavar="FLOW_FILE")
@click.pass_context
def resume(ctx: click.Context, flow_file: str) -> None:
    """Resume the latest (or --origin-run-id) run of a flow file from where it failed.

    `matinee resume FLOW_FILE --help` lists the options.
    """
    _flow_command(ctx, flow_file, "resume")


def _flow_command(ctx: click.Context, flow_file: str, command: str) -> None:
    """Hand the rest of the command line to the flow file's own CLI."""
    if flow_file in ("-h", "--help"):
        click.echo(ctx.get_help())
        return
    from matinee.cli.flows import load_flow
    from matinee.core.runtime.cli import main

    flow_cls = load_flow(flow_file)
    main(flow_cls, [command, *ctx.args], prog=f"matinee {command} {flow_file}")


# -- looking at runs ---------------------------------------------------------------
@cli.command()
@click.argument("flow", required=False)
@click.option("--limit", default=20, show_default=True, help="How many runs to show.")
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (repeatable).")
@click.option("--all-users", is_flag=True, help="Include other users' runs.")
@json_option
def runs(flow: str | None, limit: int, tags: tuple[str, ...], all_users: bool, as_json: bool) -> None:
    """List runs, newest first (of one FLOW if given)."""
    from matinee.cli import views

    rows = views.list_runs(flow, limit=limit, tags=tags, all_users=all_users)
    emit_json(rows) if as_json else views.print_runs(rows)


@cli.command()
@click.argument("pathspec")
@click.option("--graph", is_flag=True, help="Draw a run's flow graph: steps in layers with status and time.")
@json_option
def show(pathspec: str, graph: bool, as_json: bool) -> None:
    """Describe a flow, run, step or task: Flow, Flow/RUN, Flow/RUN/STEP or Flow/RUN/STEP/TASK."""
    from matinee.cli import views

    if graph:
        shape = views.run_graph(pathspec)
        emit_json(shape) if as_json else views.print_graph(shape)
        return
    info = views.describe(pathspec)
    emit_json(info) if as_json else views.print_description(info)


@cli.command()
@click.argument("pathspec")
@click.option("--stderr", "stream", flag_value="stderr", help="Show stderr only.")
@click.option("--stdout", "stream", flag_value="stdout", help="Show stdout only.")
@json_option
def logs(pathspec: str, stream: str | None, as_json: bool) -> None:
    """Print the stored output of a task, or of every task of a step or run."""
    from matinee.cli import views

    entries = views.collect_logs(pathspec, stream)
    if as_json:
        emit_json(entries)
        return
    for entry in entries:
        for name in ("stdout", "stderr"):
            text = entry.get(name) or ""
            for line in text.splitlines():
                click.echo(f"[{entry['task']}] {line}", err=name == "stderr")


@cli.command()
@click.argument("pathspec")
@json_option
def artifacts(pathspec: str, as_json: bool) -> None:
    """List the artifacts of a task (or of every task of a step or run)."""
    from matinee.cli import views

    rows = views.list_artifacts(pathspec)
    emit_json(rows) if as_json else views.print_table(
        rows, ["task", "name", "codec", "size", "key"], title=f"Artifacts of {pathspec}"
    )


@cli.command()
@click.argument("run_pathspec", metavar="RUN")
@click.option("--name", help="Show every point of this metric.")
@json_option
def metrics(run_pathspec: str, name: str | None, as_json: bool) -> None:
    """Summarise the metrics of RUN (Flow/RUN), or list one series with --name."""
    from matinee.cli import views

    rows = views.metric_rows(run_pathspec, name)
    if as_json:
        emit_json(rows)
    elif name:
        views.print_table(rows, ["step", "value", "time"], title=f"{name} in {run_pathspec}")
    else:
        views.print_table(rows, ["name", "points", "last", "min", "max", "last_step"], title=f"Metrics of {run_pathspec}")


# -- housekeeping ----------------------------------------------------------------------
@cli.command()
@click.option("--older-than", help="Delete runs older than this (30d, 12h, 15m, ...).")
@click.option("--keep-last", type=int, help="Keep the newest N runs of each flow; delete the rest.")
@click.option("--tag", "tags", multiple=True, help="Delete runs with this tag (repeatable: all must match).")
@click.option("--flow", help="Only consider runs of this flow.")
@click.option("--grace", default="1h", show_default=True, help="Never delete blobs younger than this.")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@json_option
def gc(
    older_than: str | None,
    keep_last: int | None,
    tags: tuple[str, ...],
    flow: str | None,
    grace: str,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Delete runs by age, count or tag, then every blob nothing references any more.

    Running runs and runs a registered model comes from are never deleted, nor
    is any blob a kept run or a model version still uses. With no criteria only
    unreferenced blobs are removed.
    """
    from matinee.cli import views
    from matinee.core.gc import apply_gc, plan_gc
    from matinee.core.store import open_store
    from matinee.core.timespan import parse_span

    store = open_store()
    plan = plan_gc(
        store,
        older_than=parse_span(older_than, "older-than") if older_than else None,
        keep_last=keep_last,
        tags=tags,
        flow=flow,
        grace=parse_span(grace, "grace"),
    )
    if not dry_run:
        apply_gc(store, plan)
    if as_json:
        emit_json({**plan.as_dict(), "dry_run": dry_run})
        return
    verb = "would delete" if dry_run else "deleted"
    views.print_table(
        [{"run": f"{r['flow_name']}/{r['id']}", "status": r["status"], "created": views.when(r["created_at"])} for r in plan.runs],
        ["run", "status", "created"],
        title=f"Runs {verb}",
    )
    click.echo(f"{verb} {len(plan.runs)} runs and {len(plan.blobs)} blobs ({views.size(plan.blob_bytes)})")
    if plan.kept_for_models:
        click.echo(f"kept {len(plan.kept_for_models)} runs that registered models come from")


@cli.command()
@json_option
def config(as_json: bool) -> None:
    """Show the settings in force and where each can be changed."""
    from matinee.cli import views
    from matinee.config import SETTINGS, load_settings

    settings = load_settings().as_dict()
    rows = [{"setting": k, "value": settings[k], "env": f"MATINEE_{k.upper()}", "help": SETTINGS[k][1]} for k in SETTINGS]
    emit_json(settings) if as_json else views.print_table(rows, ["setting", "value", "env", "help"], title="Settings")


@cli.command()
@click.option("--movielens", type=click.Path(exists=True, file_okay=False), help="Train on a MovieLens folder instead.")
@click.option("--sim-size", default="small", show_default=True,
              type=click.Choice(["tiny", "small", "medium", "large"]), help="Size of the simulated service.")
@click.option("--seed", default=7, show_default=True, help="Random seed of the simulation.")
@click.option("--only", type=click.Choice(["recs", "artwork"]),
              help="Train and register only the recommendations or the artwork part (nothing is served).")
@click.option("--quick", is_flag=True, help="Less training and traffic: the whole loop in a few seconds.")
@json_option
def demo(movielens: str | None, sim_size: str, seed: int, only: str | None, quick: bool, as_json: bool) -> None:
    """The whole loop: train, register, serve, learn online from simulated members, and report.

    Trains six recommenders and six artwork policies in real flows on the
    built-in simulated streaming service; registers the best recommender and
    the artwork policy picked by off-policy DR as champions (the runner-up as
    challenger); serves them with `matinee serve` on a free port of 127.0.0.1
    with a 50/50 artwork split that learns online; sends simulated members'
    traffic over HTTP with feedback decided by the simulator's ground truth;
    stops the server with SIGTERM; and prints online take rates against the
    off-policy estimates, the event log and the registry versions it created
    (online snapshots included), with an HTML report. Nothing to start, no
    network beyond 127.0.0.1. With --movielens DIR the recommenders train on a
    MovieLens folder and nothing is served.
    """
    from matinee.cli.demo import run_demo

    run_demo(movielens=movielens, sim_size=sim_size, seed=seed, as_json=as_json, only=only, quick=quick)


@cli.command()
@click.argument("deployment_file", metavar="[DEPLOYMENT.toml]", required=False, type=click.Path(dir_okay=False))
@click.option("--recs", metavar="NAME@ALIAS", help="Serve this recommender at /recommendations.")
@click.option("--artwork", metavar="NAME@ALIAS", help="Serve this artwork policy at /artwork.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes sharing the port.")
@click.option("--poll-interval", type=float, help="Seconds between registry checks for moved aliases [default: 2].")
@click.option("--durability", type=click.Choice(["relaxed", "strict"]),
              help="Event log durability: strict answers only after the decision is fsync'ed [default: relaxed].")
@click.option("--max-in-flight", type=click.IntRange(min=1),
              help="Requests handled at once beyond which POSTs get 503 + Retry-After [default: 256].")
@click.option("--learn/--no-learn", default=None,
              help="Let the artwork policy learn online from feedback and snapshot itself to the registry.")
@click.option("--snapshot-interval", type=click.FloatRange(min=0),
              help="Seconds between online snapshots; 0 only at shutdown [default: 30].")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]), help="Server log level.")
def serve(deployment_file: str | None, recs: str | None, artwork: str | None, host: str, port: int, workers: int,
          poll_interval: float | None, durability: str | None, max_in_flight: int | None, learn: bool | None,
          snapshot_interval: float | None, log_level: str) -> None:
    """Serve registered models over HTTP, swapping in new versions when their aliases move.

    Give a deployment file (TOML: [recs] and [artwork] tables with model, and
    optionally split and salt; top-level poll_interval, durability,
    max_in_flight, learn, learn_batch, snapshot_interval, event_log) or
    --recs / --artwork; the options override the file. SIGTERM drains the
    requests in flight and flushes the event log before exiting.

    \b
    Examples:
      matinee serve --recs ranker@champion --artwork artwork@champion
      matinee serve deployment.toml --workers 2
      matinee serve --artwork artwork@champion --learn --snapshot-interval 60
    """
    import dataclasses

    from matinee.core.serving import Deployment, Endpoint, load_deployment
    from matinee.core.serving import serve as run_server
    from matinee.errors import ConfigError

    if deployment_file is None and recs is None and artwork is None:
        raise ConfigError("give a deployment file, --recs NAME@ALIAS or --artwork NAME@ALIAS", field="recs")
    changes: dict[str, Any] = {}
    if recs is not None:
        changes["recs"] = Endpoint(recs)
    if artwork is not None:
        changes["artwork"] = Endpoint(artwork)
    options = {"poll_interval": poll_interval, "durability": durability, "max_in_flight": max_in_flight,
               "learn": learn, "snapshot_interval": snapshot_interval}
    changes.update({name: value for name, value in options.items() if value is not None})
    if deployment_file is not None:
        deployment = dataclasses.replace(load_deployment(deployment_file), **changes)
    else:
        deployment = Deployment(**changes)
    run_server(deployment, host=host, port=port, workers=workers, log_level=log_level)


def _add_groups() -> None:
    from matinee.cli.doctor import doctor
    from matinee.cli.events import events
    from matinee.cli.experiments import experiments
    from matinee.cli.models import models
    from matinee.cli.web import audit, server, tokens, ui

    cli.add_command(models)
    cli.add_command(events)
    cli.add_command(experiments)
    cli.add_command(doctor)
    for command in (ui, server, tokens, audit):
        cli.add_command(command)


_add_groups()


def main() -> None:
    """Console entry point."""
    cli(prog_name="matinee")


if __name__ == "__main__":  # pragma: no cover
    main()
