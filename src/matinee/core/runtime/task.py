"""Running one attempt of one task: the part every executor shares.

:func:`execute_attempt` builds the step's ``self`` from the parent tasks'
artifact references, binds ``current``, calls the step, and on success stores
the task's artifacts and transition in one transaction. A failure is recorded on
the attempt (exception and traceback) and reported to the caller, which decides
whether to retry, catch or fail the run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from matinee.core.artifacts.store import ArtifactRef
from matinee.core.flows.current import current
from matinee.core.flows.decorators import timeout_seconds
from matinee.core.flows.graph import FlowGraph
from matinee.core.flows.spec import FlowSpec, Inputs, InputView
from matinee.core.runtime.state import TaskState
from matinee.core.storage.metadata import COMPLETED, FAILED
from matinee.core.store import Store
from matinee.core.tracking.tracker import MetricBuffer
from matinee.errors import FlowError


@dataclass
class TaskSpec:
    """A task to run: its step, where it sits in foreach splits, and its parents."""

    step: str
    foreach_stack: list[list[Any]]
    input_ids: list[int]
    task_id: int = 0
    attempt: int = 0
    not_before: float = 0.0


@dataclass
class RunContext:
    """What every task of a run needs to know."""

    flow_cls: type[FlowSpec]
    graph: FlowGraph
    store: Store
    run_id: int
    flow_name: str
    user: str
    tags: frozenset[str]
    param_refs: dict[str, ArtifactRef]
    origin_run_id: int | None = None
    parents: dict[int, dict[str, Any]] = field(default_factory=dict)

    def pathspec(self, spec: TaskSpec) -> str:
        return f"{self.run_id}/{spec.step}/{spec.task_id}"


@dataclass
class AttemptResult:
    """How an attempt ended."""

    ok: bool
    error: str | None = None
    transition: dict[str, Any] | None = None
    stdout: bytes = b""
    stderr: bytes = b""


class CaughtException:
    """The record ``@catch`` stores in its ``var`` when a step fails for good."""

    def __init__(self, type_name: str, message: str, traceback_text: str = "") -> None:
        self.type = type_name
        self.message = message
        self.traceback = traceback_text

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"

    def __repr__(self) -> str:
        return f"CaughtException({self.type!r}, {self.message!r})"


def inherited_refs(ctx: RunContext, spec: TaskSpec) -> dict[str, ArtifactRef]:
    """Artifacts a task starts with: the parameters, plus its parent's for a non-join."""
    node = ctx.graph[spec.step]
    if not spec.input_ids or node.is_join:
        return dict(ctx.param_refs)
    return ctx.store.metadata.task_artifacts(spec.input_ids[0])


def execute_attempt(ctx: RunContext, spec: TaskSpec) -> AttemptResult:
    """Run one attempt of ``spec``; never raises for an error in the step itself."""
    metadata, artifacts = ctx.store.metadata, ctx.store.artifacts
    node = ctx.graph[spec.step]
    state = TaskState(artifacts, metadata, ctx.graph, node, inherited_refs(ctx, spec), spec.foreach_stack)
    flow = ctx.flow_cls(use_cli=False)
    flow.__dict__["_task"] = state
    metrics = MetricBuffer(metadata, ctx.run_id, spec.task_id)
    current._bind(
        metrics=metrics,
        on_params=lambda params: metadata.log_params(ctx.run_id, params),
        flow_name=ctx.flow_name,
        run_id=str(ctx.run_id),
        step_name=spec.step,
        task_id=str(spec.task_id),
        retry_count=spec.attempt,
        origin_run_id=str(ctx.origin_run_id) if ctx.origin_run_id else None,
        username=ctx.user,
        tags=ctx.tags,
        namespace=f"user:{ctx.user}",
    )
    try:
        inputs = _join_inputs(ctx, spec) if node.is_join else None
        func = getattr(flow, spec.step)
        with _time_limit(spec.step, timeout_seconds(node.decorators["timeout"]) if "timeout" in node.decorators else 0):
            func(inputs) if node.is_join else func()
        if node.out_funcs and state.transition is None:
            raise FlowError(
                f"step {spec.step} finished without calling self.next(); end it with "
                f"self.next(self.{node.out_funcs[0]})",
                step=spec.step,
            )
        refs = state.collect(flow)
        metrics.flush()
        metadata.finish_task(spec.task_id, COMPLETED, transition=state.transition, artifacts=refs)
        return AttemptResult(True, transition=state.transition)
    except BaseException as exc:  # the step's own failure, whatever it is
        if isinstance(exc, KeyboardInterrupt) and threading.current_thread() is not threading.main_thread():
            raise
        text = _user_traceback(exc)
        print(text, end="", file=sys.stderr, flush=True)
        error = f"{type(exc).__name__}: {exc}"
        try:
            metrics.flush()
        finally:
            metadata.finish_attempt(spec.task_id, spec.attempt, FAILED, exception=error, traceback=text)
        if isinstance(exc, KeyboardInterrupt):
            raise
        return AttemptResult(False, error=error)
    finally:
        current._clear()


@contextmanager
def redirected_output(out_fd: int, err_fd: int) -> Iterator[None]:
    """Send file descriptors 1 and 2 (and ``sys.stdout``/``sys.stderr``) to ``out_fd`` and ``err_fd``,
    with stdin closed; restored on exit.

    At the level of file descriptors, so output of C extensions and child processes is caught too.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(0), os.dup(1), os.dup(2)
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        # write to fds 1 and 2 even when sys.stdout/stderr were something else
        # (a notebook, a test runner capturing output, a Ray worker's wrapper)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
        yield
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            for fd, saved in enumerate(saved_fds):
                os.dup2(saved, fd)
                os.close(saved)
            os.close(devnull)


def worker_attempt(ctx: RunContext, spec: TaskSpec, out_fd: int, err_fd: int) -> AttemptResult:
    """The body of a task in a worker process (a forked one, or a Ray worker).

    Runs :func:`execute_attempt` with stdout and stderr sent to ``out_fd`` and ``err_fd``;
    whatever goes wrong outside the step itself is printed there too and reported as a failure.
    """
    with redirected_output(out_fd, err_fd):
        try:
            return execute_attempt(ctx, spec)
        except BaseException as exc:
            traceback.print_exc()
            return AttemptResult(False, error=f"{type(exc).__name__}: {exc}")


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the step's own frame on, without matinee's frames above it."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _join_inputs(ctx: RunContext, spec: TaskSpec) -> Inputs:
    metadata, artifacts = ctx.store.metadata, ctx.store.artifacts
    views = []
    for task_id in spec.input_ids:
        row = ctx.parents.get(task_id) or metadata.get_task(task_id)
        assert row is not None
        node = ctx.graph[row["step_name"]]
        parent_state = TaskState(
            artifacts, metadata, ctx.graph, node, metadata.task_artifacts(task_id), json.loads(row["foreach_stack"])
        )
        views.append(InputView(parent_state, row["step_name"], task_id))
    return Inputs(views)


def finish_caught(ctx: RunContext, spec: TaskSpec, error: str, traceback_text: str = "") -> dict[str, Any] | None:
    """Complete a task that failed for good under ``@catch``; ``None`` if it cannot be caught."""
    node = ctx.graph[spec.step]
    if node.type == "foreach":
        return None  # the number of branches is unknown without the step's result
    settings = node.decorators["catch"]
    refs = inherited_refs(ctx, spec)
    if settings.get("var"):
        type_name, _, message = error.partition(": ")
        refs[settings["var"]] = ctx.store.artifacts.save(CaughtException(type_name, message, traceback_text))
    transition = {"steps": list(node.out_funcs), "foreach": None, "num": None}
    ctx.store.metadata.finish_task(spec.task_id, COMPLETED, transition=transition, artifacts=refs)
    return transition


@contextmanager
def _time_limit(step: str, seconds: float) -> Iterator[None]:
    """Raise ``TimeoutError`` in the step after ``seconds`` (main thread only; 0 = no limit)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"step {step} timed out after {seconds:g} s (@timeout)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class LineTee:
    """A text stream that copies writes to ``target`` with a prefix on each line and keeps them."""

    def __init__(self, target: IO[str], prefix: str) -> None:
        self.target = target
        self.prefix = prefix
        self.chunks: list[str] = []
        self._at_line_start = True

    def write(self, text: str) -> int:
        if not text:
            return 0
        self.chunks.append(text)
        out = []
        for line in text.splitlines(keepends=True):
            if self._at_line_start:
                out.append(self.prefix)
            out.append(line)
            self._at_line_start = line.endswith("\n")
        self.target.write("".join(out))
        self.target.flush()
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.target, "encoding", "utf-8")

    def getvalue(self) -> bytes:
        return "".join(self.chunks).encode("utf-8", "replace")


def elapsed(since: float) -> str:
    return f"{time.monotonic() - since:.2f}s"
