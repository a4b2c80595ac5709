"""Durations written the way people type them on a command line: ``30d``, ``12h``, ``1w2d``, ``1.5h``."""

from __future__ import annotations

import math
import re

from matinee.errors import ParameterError

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_span(text: str, parameter: str, *, positive: bool = False) -> float:
    """Seconds in ``text``: one or more parts of a number and a unit (s, m, h, d, w).

    Parameters
    ----------
    text
        Such as ``30d``, ``12h``, ``90m``, ``45s``, ``1w2d``, ``1d 12h`` or ``1.5h``
        (any case, spaces between parts allowed). A bare number is refused: its unit
        would be a guess.
    parameter
        The option or field the text came from, named in the error.
    positive
        Refuse zero as well as what cannot be read.

    Raises
    ------
    ParameterError
        ``text`` is not such a duration (or is zero with ``positive``); the error names ``parameter``.

    Examples
    --------
    >>> parse_span("1w2d", "expires") / 86400
    9.0
    >>> parse_span("1.5h", "grace")
    5400.0
    """
    value = str(text).strip().lower()
    parts = _PART.findall(value)
    seconds = sum(float(n) * _UNITS[unit] for n, unit in parts) if parts else math.nan
    if not parts or _PART.sub("", value).strip() or not math.isfinite(seconds) or (positive and seconds <= 0):
        what = "a positive duration" if positive else "a duration"
        raise ParameterError(f"{parameter} must be {what} such as 30d, 12h, 90m or 1w2d, not {text!r}",
                             parameter=parameter)
    return seconds
