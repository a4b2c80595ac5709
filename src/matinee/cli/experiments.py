"""``matinee experiments ...``: A/B tests and interleaving experiments from the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from matinee.cli.output import emit_json, json_option

#: The same ``--json`` flag every command of ``matinee`` takes.


def _when(ts: float | None) -> str:
    from matinee.cli.views import when

    return when(ts)


def _table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    from matinee.cli.views import print_table

    print_table(rows, columns, title=title)


@click.group()
def experiments() -> None:
    """Online experiments: A/B tests of a model's aliases, and interleaving of two rankers."""


def _summary(e: Any) -> dict[str, Any]:
    return {"name": e.name, "kind": e.kind, "status": e.status, "model": e.model, "endpoint": e.endpoint,
            "arms": ", ".join(f"{a.alias}={a.weight:g}" for a in e.arms), "metric": e.primary_metric,
            "owner": e.owner, "started": _when(e.started_at) if e.started_at else "",
            "stopped": _when(e.stopped_at) if e.stopped_at else ""}


@experiments.command()
@click.argument("name")
@click.option("--arm", "arms", multiple=True, required=True, metavar="MODEL@ALIAS[=WEIGHT]",
              help="An arm (repeatable; the first is the control). Weights left out share the rest equally.")
@click.option("--kind", default="ab", show_default=True, type=click.Choice(["ab", "interleaving"]),
              help="Split members between arms, or interleave two rankers in every list.")
@click.option("--endpoint", default="recs", show_default=True, type=click.Choice(["recs", "artwork"]),
              help="The serving endpoint whose decisions are the exposures.")
@click.option("--salt", default="", help="Salt of the assignment hash [default: the experiment's name].")
@click.option("--metric", "primary_metric", default=None,
              help="Primary metric [default: take_rate; preference for interleaving].")
@click.option("--guardrail", "guardrails", multiple=True, help="A guardrail metric (repeatable).")
@click.option("--owner", default="", help="Who is responsible [default: the user].")
@click.option("--description", default="", help="What the experiment tests.")
@click.option("--alpha", default=0.05, show_default=True, type=float, help="Significance level.")
@json_option
def create(name: str, arms: tuple[str, ...], kind: str, endpoint: str, salt: str, primary_metric: str | None,
           guardrails: tuple[str, ...], owner: str, description: str, alpha: float, as_json: bool) -> None:
    """Create experiment NAME as a draft.

    \b
    Examples:
      matinee experiments create ranker-v2 --arm ranker@champion=0.5 --arm ranker@challenger=0.5 \\
          --metric take_rate --guardrail impressions_per_member
      matinee experiments create ranker-il --kind interleaving --arm ranker@champion --arm ranker@challenger
    """
    from matinee.core.experiments import Experiment, create_experiment

    metric = primary_metric or ("preference" if kind == "interleaving" else "take_rate")
    experiment = Experiment.build(name, list(arms), kind=kind, endpoint=endpoint, salt=salt, primary_metric=metric,
                                  guardrails=tuple(guardrails), owner=owner, description=description, alpha=alpha)
    stored = create_experiment(experiment)
    if as_json:
        emit_json(stored.as_dict())
        return
    click.echo(f"created experiment {stored.name} (draft): {_summary(stored)['arms']}")
    _print_deployment(stored)


def _print_deployment(e: Any) -> None:
    if e.kind == "interleaving":
        click.echo(f"serve interleaved lists of {e.model}@{e.aliases[0]} (team a) and {e.model}@{e.aliases[1]} "
                   f"(team b), logged with arm {e.interleaved_arm!r}")
        return
    config = e.endpoint_config()
    split = ", ".join(f"{k} = {v:g}" for k, v in config["split"].items())
    click.echo(f"deployment: [{e.endpoint}] model = \"{config['model']}\", salt = \"{config['salt']}\", "
               f"split = {{ {split} }}")


@experiments.command("ls")
@click.option("--status", type=click.Choice(["draft", "running", "stopped"]), help="Only experiments in this state.")
@json_option
def list_command(status: str | None, as_json: bool) -> None:
    """List experiments, newest first."""
    from matinee.core.experiments import list_experiments

    found = list_experiments(status)
    if as_json:
        emit_json([e.as_dict() for e in found])
        return
    _table([_summary(e) for e in found],
           ["name", "kind", "status", "model", "endpoint", "arms", "metric", "owner", "started", "stopped"],
           "Experiments")


@experiments.command()
@click.argument("name")
@json_option
def show(name: str, as_json: bool) -> None:
    """Describe experiment NAME, with the deployment that serves it."""
    from matinee.core.experiments import get_experiment

    e = get_experiment(name)
    info = e.as_dict()
    info["deployment"] = e.endpoint_config() if e.kind == "ab" else None
    if as_json:
        emit_json(info)
        return
    for key, value in info.items():
        if key in ("created_at", "started_at", "stopped_at"):
            value = _when(value) if value else ""
        elif key == "arms":
            value = ", ".join(f"{a['alias']}={a['weight']:g}" for a in value)
        elif isinstance(value, (list, tuple)):
            value = ", ".join(map(str, value))
        elif isinstance(value, dict):
            value = json.dumps(value)
        click.echo(f"{key:>15}: {'' if value is None else value}")


@experiments.command()
@click.argument("name")
@json_option
def start(name: str, as_json: bool) -> None:
    """Start draft experiment NAME: its window of exposures opens now."""
    from matinee.core.experiments import start_experiment

    e = start_experiment(name)
    emit_json(e.as_dict()) if as_json else click.echo(f"started {e.name} at {_when(e.started_at)}")


@experiments.command()
@click.argument("name")
@json_option
def stop(name: str, as_json: bool) -> None:
    """Stop running experiment NAME: its window closes now."""
    from matinee.core.experiments import stop_experiment

    e = stop_experiment(name)
    emit_json(e.as_dict()) if as_json else click.echo(f"stopped {e.name} at {_when(e.stopped_at)}")


@experiments.command()
@click.argument("name")
@json_option
def delete(name: str, as_json: bool) -> None:
    """Delete experiment NAME if it never started."""
    from matinee.core.experiments import delete_experiment

    delete_experiment(name)
    emit_json({"name": name, "deleted": True}) if as_json else click.echo(f"deleted {name}")


@experiments.command()
@click.argument("name")
@click.option("--sequential", is_flag=True,
              help="Always-valid p-values and confidence sequences: look as often as you like.")
@click.option("--no-cuped", is_flag=True, help="Do not adjust per-member metrics with the pre-period.")
@click.option("--pre-period-days", default=14.0, show_default=True, type=click.FloatRange(min=0),
              help="Days before the start read as the CUPED covariate.")
@click.option("--until", "until_text", metavar="TIME",
              help="Analyse as of TIME (ISO 8601 or epoch seconds): what a look at that moment saw.")
@click.option("--log", "log_file", type=click.Path(dir_okay=False), help="Read this event log file instead.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Where to write the HTML report [default: MATINEE_HOME/experiments/NAME/report.html].")
@click.option("--no-report", is_flag=True, help="Write no HTML report.")
@json_option
def analyze(name: str, sequential: bool, no_cuped: bool, pre_period_days: float, until_text: str | None,
            log_file: str | None, report_path: str | None, no_report: bool, as_json: bool) -> None:
    """Analyse experiment NAME from the event log: effects with intervals, SRM check, HTML report."""
    from matinee.core.events import parse_time
    from matinee.core.experiments import analyze as run_analysis
    from matinee.core.experiments import write_report

    analysis = run_analysis(name, log_file, sequential=sequential, cuped=not no_cuped,
                            pre_period_days=pre_period_days, until=parse_time(until_text, "until"))
    written = None
    if not no_report:
        if report_path is None:
            from matinee.config import load_settings

            report_path = str(Path(load_settings().home) / "experiments" / name / "report.html")
        written = str(write_report(analysis, report_path))
    if as_json:
        emit_json({**analysis.as_dict(), "report": written})
        return
    for line in analysis.warnings:
        click.secho(f"WARNING: {line}", fg="red" if "MISMATCH:" in line else "yellow", err=True)
    e = analysis.experiment
    click.echo(f"{e.name}: {e.kind} on {e.model} ({e.endpoint}), {_when(analysis.since)} to "
               f"{_when(analysis.until)}; method {analysis.method}{' + CUPED' if analysis.cuped else ''}; "
               f"{analysis.correction}")
    _table([{k: _fmt(v) for k, v in r.items()} for r in analysis.arms], list(analysis.arms[0]), "Arms")
    rows = [{"metric": f"{x['metric']}{'' if x['role'] == 'primary' else ' (guardrail)'}",
             "arm": f"{x['treatment']} vs {x['control']}", "control": _fmt(x["mean_control"]),
             "treatment": _fmt(x["mean_treatment"]),
             "diff [CI]": f"{_fmt(x['diff'])} [{_fmt(x['diff_low'])}, {_fmt(x['diff_high'])}]",
             "relative [CI]": _relative(x), "p": _fmt(x["p_value"], 3), "p adj": _fmt(x["p_adjusted"], 3),
             "sig": "yes" if x["significant"] else "no"} for x in analysis.effects]
    _table(rows, ["metric", "arm", "control", "treatment", "diff [CI]", "relative [CI]", "p", "p adj", "sig"],
           "Effects")
    if analysis.srm is not None:
        s = analysis.srm
        click.echo(f"SRM check: p = {s.p_value:.3g} -> {'MISMATCH' if s.flagged else 'ok'}")
    if written:
        click.echo(f"report: {written}")


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def _relative(x: dict[str, Any]) -> str:
    if not math.isfinite(x["relative"]):
        return ""
    return f"{x['relative']:+.2%} [{x['relative_low']:+.2%}, {x['relative_high']:+.2%}]"


@experiments.command()
@click.option("--baseline", type=float, required=True, help="The control's value (e.g. a take rate of 0.3).")
@click.option("--mde", type=float, required=True, help="The smallest difference worth detecting (absolute).")
@click.option("--relative", is_flag=True, help="Read --mde as relative to the baseline (0.05 = 5%).")
@click.option("--sd", type=float, help="Per-unit standard deviation [default: a proportion's, sqrt(p(1-p))].")
@click.option("--alpha", default=0.05, show_default=True, type=float, help="Significance level.")
@click.option("--power", "power_", default=0.8, show_default=True, type=float, help="The chance to detect the MDE.")
@click.option("--arms", "n_arms", default=2, show_default=True, type=click.IntRange(min=2),
              help="Arms including control (Bonferroni over the treatment arms).")
@json_option
def size(baseline: float, mde: float, relative: bool, sd: float | None, alpha: float, power_: float, n_arms: int,
         as_json: bool) -> None:
    """Members needed per arm to detect a difference: the power / sample-size calculator."""
    from matinee.core.experiments import stats

    effect = mde * baseline if relative else mde
    spread = stats.proportion_sd(baseline) if sd is None else sd
    alpha_each = alpha / (n_arms - 1)
    per_arm = stats.sample_size(effect, spread, alpha_each, power_)
    result = {"baseline": baseline, "effect": effect, "sd": spread, "alpha": alpha, "alpha_per_comparison":
              alpha_each, "power": power_, "arms": n_arms, "per_arm": per_arm, "total": per_arm * n_arms}
    if as_json:
        emit_json(result)
        return
    click.echo(f"{per_arm:,} units per arm ({per_arm * n_arms:,} in all) to detect {effect:+.4g} on a baseline of "
               f"{baseline:g} (sd {spread:.4g}) with {power_:.0%} power at alpha {alpha_each:.4g}")
