"""What every ``--json`` option shares: the flag and how the JSON is printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from matinee.core.plain import finite


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--json`` flag, passed to the command as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON; values JSON does not know are printed as text.

    NaN and infinities (a metric may be either) are printed as ``"NaN"``,
    ``"Infinity"`` and ``"-Infinity"``, as the REST API sends them: the output
    stays JSON that any parser reads.
    """
    try:
        text = json.dumps(data, indent=2, default=str, allow_nan=False)
    except ValueError:
        text = json.dumps(finite(data, spell=True), indent=2, default=str, allow_nan=False)
    click.echo(text)
