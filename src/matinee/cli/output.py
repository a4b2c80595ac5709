"""What every ``--json`` option shares: the flag and how the JSON is printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--json`` flag, passed to the command as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON; values JSON does not know are printed as text."""
    click.echo(json.dumps(data, indent=2, default=str))
