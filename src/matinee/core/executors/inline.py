"""The inline executor: each task runs in the runner's own process, one at a time.

The fastest path for a linear flow (no process start per task) and the one
where ``breakpoint()`` in a step opens the debugger on your terminal.
"""

from __future__ import annotations

import sys
from typing import Any

from matinee.core.runtime.task import AttemptResult, LineTee, RunContext, TaskSpec, execute_attempt


class InlineExecutor:
    running = 0

    def __init__(self, ctx: RunContext, echo: Any) -> None:
        self.ctx = ctx
        self.echo = echo
        self._done: list[tuple[TaskSpec, AttemptResult]] = []

    @property
    def free(self) -> int:
        return 0 if self._done else 1

    def submit(self, spec: TaskSpec) -> None:
        prefix = f"[{self.ctx.pathspec(spec)}] "
        out, err = LineTee(sys.stdout, prefix), LineTee(sys.stderr, prefix)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            result = execute_attempt(self.ctx, spec)
        finally:
            sys.stdout, sys.stderr = saved
        result.stdout, result.stderr = out.getvalue(), err.getvalue()
        self._done.append((spec, result))

    def wait(self, timeout: float | None) -> list[tuple[TaskSpec, AttemptResult]]:
        done, self._done = self._done, []
        return done

    def shutdown(self) -> None:
        pass
