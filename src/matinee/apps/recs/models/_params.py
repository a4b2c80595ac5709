"""Hyperparameter checks shared by the models, run at ``fit`` time.

Each returns the value in a canonical type or raises a :class:`ParameterError`
that names the model, the hyperparameter and what it accepts.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np

from matinee.errors import ParameterError


def whole(model: object, name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an ``int`` of at least ``minimum`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ParameterError(
            f"{type(model).__name__}: {name} must be a whole number >= {minimum}, not {value!r}", parameter=name
        )
    return int(value)


def real(model: object, name: str, value: Any, *, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` as a finite ``float`` that is ``>= minimum`` (``> minimum`` when ``strict``)."""
    number = float(value) if isinstance(value, Real) and not isinstance(value, bool) else float("nan")
    if not (np.isfinite(number) and (number > minimum if strict else number >= minimum)):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ParameterError(f"{type(model).__name__}: {name} must be a finite number {bound}, not {value!r}",
                             parameter=name)
    return number


def flag(model: object, name: str, value: Any) -> bool:
    """``value`` as a ``bool`` (numpy bools accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{type(model).__name__}: {name} must be True or False, not {value!r}", parameter=name)
    return bool(value)


def random_state(model: object, value: Any) -> int | np.random.Generator | None:
    """A seed (``int >= 0``), a ``numpy.random.Generator`` or ``None`` (fresh entropy)."""
    if value is None or isinstance(value, np.random.Generator):
        return value
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ParameterError(
            f"{type(model).__name__}: random_state must be None, a whole number >= 0 or a numpy Generator, "
            f"not {value!r}",
            parameter="random_state",
        )
    return int(value)
