"""``matinee models ...``: the model registry from the command line."""

from __future__ import annotations

from typing import Any

import click

from matinee.cli.output import emit_json, json_option

#: The same ``--json`` flag every listing command of ``matinee`` takes.


@click.group()
def models() -> None:
    """Registered models: versions with lineage, aliases and their history."""


def _when(ts: float | None) -> str:
    from matinee.cli.views import when

    return when(ts)


def _table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    from matinee.cli.views import print_table

    print_table(rows, columns, title=title)


def _version_row(v: Any) -> dict[str, Any]:
    return {
        "version": v.version,
        "aliases": ", ".join(v.aliases),
        "created": _when(v.created_at),
        "user": v.user,
        "source": v.source or "(object)",
        "metrics": ", ".join(f"{k}={val:.4g}" for k, val in v.metrics.items()),
        "tags": ", ".join(v.tags),
    }


@models.command("ls")
@json_option
def list_command(as_json: bool) -> None:
    """List registered models: versions, newest version, aliases."""
    from matinee.core.registry import list_models

    rows = list_models()
    if as_json:
        emit_json(rows)
        return
    _table(
        [{**r, "aliases": ", ".join(f"{a}={v}" for a, v in r["aliases"].items()), "updated": _when(r["updated_at"])}
         for r in rows],
        ["name", "versions", "latest_version", "aliases", "updated"],
        "Models",
    )


@models.command()
@click.argument("model")
@json_option
def show(model: str, as_json: bool) -> None:
    """Describe a version with its lineage: NAME (newest), NAME/VERSION or NAME@ALIAS."""
    from matinee.core.registry import get_model, parse_model_uri

    name, version, alias = parse_model_uri(model)
    info = get_model(name, version, alias).as_dict()
    if as_json:
        emit_json(info)
        return
    info["created_at"] = _when(info["created_at"])
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        click.echo(f"{key:>17}: {'' if value is None else value}")


@models.command()
@click.argument("name")
@json_option
def versions(name: str, as_json: bool) -> None:
    """List every version of model NAME, oldest first."""
    from matinee.core.registry import versions as all_versions

    found = all_versions(name)
    if as_json:
        emit_json([v.as_dict() for v in found])
        return
    _table([_version_row(v) for v in found], ["version", "aliases", "created", "user", "source", "metrics", "tags"],
           f"Versions of {name}")


@models.command()
@click.argument("name")
@click.argument("alias")
@click.argument("version", required=False, type=int)
@click.option("--delete", is_flag=True, help="Remove the alias instead of setting it.")
@json_option
def alias(name: str, alias: str, version: int | None, delete: bool, as_json: bool) -> None:
    """Point ALIAS of model NAME at VERSION (or remove it with --delete)."""
    from matinee.core.registry import delete_alias, set_alias
    from matinee.errors import ParameterError

    if delete:
        old = delete_alias(name, alias)
        result = {"name": name, "alias": alias, "deleted": True, "version": old}
        message = f"deleted {name}@{alias} (was version {old})"
    else:
        if version is None:
            raise ParameterError("give the VERSION the alias should point at, or --delete", parameter="version")
        set_alias(name, alias, version)
        result = {"name": name, "alias": alias, "version": version}
        message = f"{name}@{alias} -> version {version}"
    emit_json(result) if as_json else click.echo(message)


@models.command()
@click.argument("name")
@click.argument("version", type=int)
@click.option("--alias", "alias_name", default="champion", show_default=True, help="The alias to move.")
@json_option
def promote(name: str, version: int, alias_name: str, as_json: bool) -> None:
    """Promote VERSION of model NAME to an alias (default champion), atomically."""
    from matinee.core.registry import promote as promote_version

    promote_version(name, version, alias_name)
    result = {"name": name, "alias": alias_name, "version": version}
    emit_json(result) if as_json else click.echo(f"promoted {name}/{version} to {alias_name}")


@models.command()
@click.argument("name")
@click.option("--alias", "alias_name", default="champion", show_default=True, help="The alias to move back.")
@json_option
def rollback(name: str, alias_name: str, as_json: bool) -> None:
    """Move an alias of model NAME back to the version it pointed at before."""
    from matinee.core.registry import get_model
    from matinee.core.registry import rollback as roll_back

    before = get_model(name, alias=alias_name).version
    after = roll_back(name, alias_name).version
    result = {"name": name, "alias": alias_name, "from_version": before, "to_version": after}
    emit_json(result) if as_json else click.echo(f"rolled {name}@{alias_name} back from version {before} to {after}")


@models.command()
@click.argument("name")
@click.option("--alias", "alias_name", help="Only this alias.")
@json_option
def history(name: str, alias_name: str | None, as_json: bool) -> None:
    """The append-only history of model NAME's aliases: who moved what, when, from and to."""
    from matinee.core.registry import alias_history

    rows = [c.as_dict() for c in alias_history(name, alias_name)]
    if as_json:
        emit_json(rows)
        return
    _table([{**r, "at": _when(r["at"])} for r in rows],
           ["at", "alias", "action", "from_version", "to_version", "user"], f"Alias history of {name}")
