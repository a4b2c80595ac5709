"""Executors run task attempts: ``inline`` (in this process), ``process`` (forked workers), ``ray``.

An executor takes :class:`~matinee.core.runtime.task.TaskSpec` attempts with
:meth:`submit` while :attr:`free` is positive, and hands back finished ones from
:meth:`wait`. Retries, ``@catch`` and scheduling stay in the runner.
"""

from __future__ import annotations

from typing import Any, Protocol

from matinee.core.runtime.task import AttemptResult, RunContext, TaskSpec
from matinee.errors import ConfigError

EXECUTORS = ("inline", "process", "ray")


class Executor(Protocol):
    @property
    def free(self) -> int:
        """How many more attempts :meth:`submit` takes now."""

    @property
    def running(self) -> int:
        """Attempts submitted and not yet handed back by :meth:`wait`."""

    def submit(self, spec: TaskSpec) -> None: ...

    def wait(self, timeout: float | None) -> list[tuple[TaskSpec, AttemptResult]]: ...

    def shutdown(self) -> None: ...


def make_executor(
    name: str, ctx: RunContext, max_workers: int, echo: Any, ray_address: str | None = None
) -> Executor:
    """The executor called ``name`` (``inline``, ``process`` or ``ray``)."""
    if name == "inline":
        from matinee.core.executors.inline import InlineExecutor

        return InlineExecutor(ctx, echo)
    if name == "process":
        from matinee.core.executors.process import ProcessExecutor

        return ProcessExecutor(ctx, max_workers, echo)
    if name == "ray":
        from matinee.core.executors.ray import RayExecutor

        return RayExecutor(ctx, max_workers, echo, address=ray_address or ctx.store.settings.ray_address)
    raise ConfigError(f"unknown executor {name!r}: use auto, inline, process or ray (--executor)", parameter="executor")
