"""What every ``--json`` option shares: the flag and how the JSON is printed."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import click


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
        text = json.dumps(_finite(data), indent=2, default=str, allow_nan=False)
    click.echo(text)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
