"""Step decorators: ``@step``, ``@retry``, ``@catch``, ``@timeout``, ``@resources``.

Each decorator only records its settings on the function; the runtime reads them.
All but ``@step`` work with or without arguments (``@retry`` or ``@retry(times=2)``),
and may be stacked in any order with ``@step``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from matinee.errors import FlowError

F = TypeVar("F", bound=Callable[..., Any])

#: name -> default settings of every decorator the runtime understands.
DECORATORS: dict[str, dict[str, Any]] = {
    "retry": {"times": 3, "minutes_between_retries": 2},
    "catch": {"var": None, "print_exception": True},
    "timeout": {"seconds": 0, "minutes": 0, "hours": 0},
    "resources": {"cpu": 1, "gpu": 0, "memory": 4096, "disk": None},
}


def step(func: F) -> F:
    """Mark a method of a :class:`~matinee.FlowSpec` as a step of the flow.

    Examples
    --------
    >>> from matinee import FlowSpec, step
    >>> class Hello(FlowSpec):
    ...     @step
    ...     def start(self):
    ...         self.next(self.end)
    ...     @step
    ...     def end(self):
    ...         pass
    """
    func._matinee_step = True  # type: ignore[attr-defined]
    if not hasattr(func, "_matinee_decorators"):
        func._matinee_decorators = {}  # type: ignore[attr-defined]
    return func


def step_decorators(func: Callable[..., Any]) -> dict[str, dict[str, Any]]:
    """The decorator settings recorded on a step function."""
    return dict(getattr(func, "_matinee_decorators", {}))


def _decorator(name: str) -> Callable[..., Any]:
    defaults = DECORATORS[name]

    def decorator(func: Callable[..., Any] | None = None, **settings: Any) -> Any:
        unknown = sorted(set(settings) - set(defaults))
        if unknown:
            raise FlowError(
                f"@{name} has no argument {unknown[0]!r}; it takes {', '.join(defaults)}",
                decorator=name,
            )

        def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
            recorded = dict(getattr(fn, "_matinee_decorators", {}))
            recorded[name] = {**defaults, **settings}
            fn._matinee_decorators = recorded  # type: ignore[attr-defined]
            return fn

        return apply(func) if func is not None else apply

    decorator.__name__ = decorator.__qualname__ = name
    return decorator


retry = _decorator("retry")
retry.__doc__ = """Retry a failing step ``times`` times, waiting ``minutes_between_retries`` between tries."""
catch = _decorator("catch")
catch.__doc__ = """If the step still fails after its retries, store the exception in ``var`` and go on."""
timeout = _decorator("timeout")
timeout.__doc__ = """Fail the step (and let ``@retry`` retry it) if it runs longer than the given time."""
resources = _decorator("resources")
resources.__doc__ = """Record the CPU, GPU, memory (MB) and disk a step needs; honoured by the Ray executor."""


def timeout_seconds(settings: dict[str, Any]) -> float:
    """Total seconds of a ``@timeout`` setting (0 means no limit)."""
    return float(settings["seconds"]) + 60 * float(settings["minutes"]) + 3600 * float(settings["hours"])
