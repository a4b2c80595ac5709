"""``matinee events ...``: the decision and feedback log from the command line."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from matinee.cli.output import emit_json, json_option

#: The same ``--json`` flag every listing command of ``matinee`` takes.
log_option = click.option(
    "--log", "log_path", type=click.Path(dir_okay=False),
    help="The event log file; default MATINEE_HOME/events/events.db.",
)


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


@click.group()
def events() -> None:
    """The durable log of served decisions and their feedback."""


@events.command()
@click.option("--to", "target", required=True, type=click.Path(dir_okay=False), help="Parquet file to write.")
@click.option("--since", help="Only events at or after this time (ISO 8601 or epoch seconds).")
@click.option("--until", help="Only events before this time (ISO 8601 or epoch seconds).")
@click.option("--what", default="joined", show_default=True, type=click.Choice(["joined", "decisions", "feedback"]),
              help="Decisions joined with their summed feedback, or either table as stored.")
@log_option
@json_option
def export(target: str, since: str | None, until: str | None, what: str, log_path: str | None, as_json: bool) -> None:
    """Write events to a Parquet file, ready for OPE, A/B analysis or retraining."""
    from matinee.core.events import EventLog, parse_time

    low, high = parse_time(since, "since"), parse_time(until, "until")
    rows = EventLog(log_path).export_parquet(target, low, high, what=what)
    if as_json:
        emit_json({"path": target, "rows": rows, "what": what, "since": low, "until": high})
    else:
        click.echo(f"wrote {rows} {what} rows to {target}")


@events.command()
@log_option
@json_option
def stats(log_path: str | None, as_json: bool) -> None:
    """Count decisions and feedback and show the time range each covers."""
    from matinee.cli.views import print_table
    from matinee.core.events import EventLog

    info = EventLog(log_path).stats()
    if as_json:
        emit_json(info)
        return
    rows = [
        {"table": name, "events": info[name], "first": _iso(info[f"first_{key}"]), "last": _iso(info[f"last_{key}"])}
        for name, key in (("decisions", "decision"), ("feedback", "feedback"))
    ]
    print_table(rows, ["table", "events", "first", "last"], title=f"Events in {info['path']}")
