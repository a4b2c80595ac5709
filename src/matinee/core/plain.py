"""Plain data ready for JSON, whose standard has no NaN or infinity."""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any, *, spell: bool = False) -> Any:
    """``value`` with every float that is not finite replaced, through dicts, lists and tuples.

    Parameters
    ----------
    value
        Plain data: dicts, lists, tuples (returned as lists), numbers, strings.
    spell
        Replace with the text ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (what a
        script reading the output can still tell apart) instead of ``None``.

    Examples
    --------
    >>> finite({"lift": float("nan"), "n": [1.5, float("inf")]})
    {'lift': None, 'n': [1.5, None]}
    >>> finite([float("-inf")], spell=True)
    ['-Infinity']
    """
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if not spell:
            return None
        return "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: finite(v, spell=spell) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v, spell=spell) for v in value]
    return value
