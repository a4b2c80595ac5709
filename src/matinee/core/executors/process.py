"""The process executor: each attempt in a forked worker process, up to ``max_workers`` at once.

Forking starts a task in milliseconds (the flow module and matinee are already
imported), isolates it (a step that calls ``os._exit`` or is killed fails only its
task), and lets branches and foreach items run in parallel. Each worker's stdout
and stderr are piped back, echoed live with a ``[run/step/task]`` prefix and kept
for the task's logs. A worker that outlives its ``@timeout`` is killed.
"""

from __future__ import annotations

import os
import selectors
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from matinee.core.flows.decorators import timeout_seconds
from matinee.core.runtime.task import AttemptResult, RunContext, TaskSpec, worker_attempt

#: Seconds past a step's @timeout before its worker is killed (the step itself raises first).
KILL_GRACE = 5.0


@dataclass
class _Worker:
    spec: TaskSpec
    pid: int
    prefix: bytes
    deadline: float | None
    streams: dict[int, bytearray] = field(default_factory=dict)
    partial: dict[int, bytes] = field(default_factory=dict)
    open_fds: set[int] = field(default_factory=set)
    killed_for_timeout: bool = False


class ProcessExecutor:
    def __init__(self, ctx: RunContext, max_workers: int, echo: Any) -> None:
        self.ctx = ctx
        self.max_workers = max(1, max_workers)
        self.echo = echo
        self.selector = selectors.DefaultSelector()
        self.workers: dict[int, _Worker] = {}  # pid -> worker
        self._fd_owner: dict[int, tuple[_Worker, int]] = {}  # fd -> (worker, 1 | 2)

    @property
    def running(self) -> int:
        return len(self.workers)

    @property
    def free(self) -> int:
        return self.max_workers - len(self.workers)

    def submit(self, spec: TaskSpec) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(out_r)
            os.close(err_r)
            self._run_child(spec, out_w, err_w)
        os.close(out_w)
        os.close(err_w)
        node = self.ctx.graph[spec.step]
        limit = timeout_seconds(node.decorators["timeout"]) if "timeout" in node.decorators else 0
        worker = _Worker(
            spec, pid, f"[{self.ctx.pathspec(spec)}] ".encode(), time.monotonic() + limit + KILL_GRACE if limit else None
        )
        for fd, stream in ((out_r, 1), (err_r, 2)):
            os.set_blocking(fd, False)
            worker.streams[stream] = bytearray()
            worker.open_fds.add(fd)
            self._fd_owner[fd] = (worker, stream)
            self.selector.register(fd, selectors.EVENT_READ)
        self.workers[pid] = worker

    def _run_child(self, spec: TaskSpec, out_w: int, err_w: int) -> None:
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0 if worker_attempt(self.ctx, spec, out_w, err_w).ok else 1
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    def wait(self, timeout: float | None) -> list[tuple[TaskSpec, AttemptResult]]:
        """Pump output until at least one worker finishes (or ``timeout`` passes)."""
        finished: list[tuple[TaskSpec, AttemptResult]] = []
        start = time.monotonic()
        while self.workers and not finished:
            wait_for = 0.5
            deadlines = [w.deadline for w in self.workers.values() if w.deadline is not None]
            if deadlines:
                wait_for = max(0.0, min(wait_for, min(deadlines) - time.monotonic()))
            if timeout is not None:
                wait_for = max(0.0, min(wait_for, start + timeout - time.monotonic()))
            for key, _ in self.selector.select(wait_for):
                self._read(key.fd)
            finished.extend(self._reap())
            self._enforce_deadlines()
            if timeout is not None and time.monotonic() - start >= timeout:
                break
        return finished

    def _read(self, fd: int) -> None:
        worker, stream = self._fd_owner[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self._close(fd)
            return
        worker.streams[stream] += data
        text = worker.partial.pop(stream, b"") + data
        lines = text.split(b"\n")
        worker.partial[stream] = lines.pop()
        if lines:
            self._echo(worker, stream, b"".join(worker.prefix + line + b"\n" for line in lines))

    def _echo(self, worker: _Worker, stream: int, data: bytes) -> None:
        target = sys.stdout if stream == 1 else sys.stderr
        target.flush()
        buffer = getattr(target, "buffer", None)
        if buffer is not None:
            buffer.write(data)
        else:
            target.write(data.decode("utf-8", "replace"))
        target.flush()

    def _close(self, fd: int) -> None:
        worker, stream = self._fd_owner.pop(fd)
        self.selector.unregister(fd)
        os.close(fd)
        worker.open_fds.discard(fd)
        rest = worker.partial.pop(stream, b"")
        if rest:
            self._echo(worker, stream, worker.prefix + rest + b"\n")

    def _reap(self) -> list[tuple[TaskSpec, AttemptResult]]:
        done = []
        for pid, worker in list(self.workers.items()):
            if worker.open_fds:
                waited, status = os.waitpid(pid, os.WNOHANG)
                if not waited:
                    continue
                for fd in list(worker.open_fds):  # drain what the worker left in its pipes
                    while fd in worker.open_fds:
                        self._read(fd)
                        if fd in worker.open_fds and not _readable(fd):
                            self._close(fd)
            else:
                _, status = os.waitpid(pid, 0)
            del self.workers[pid]
            done.append((worker.spec, self._result(worker, status)))
        return done

    def _result(self, worker: _Worker, status: int) -> AttemptResult:
        stdout, stderr = bytes(worker.streams[1]), bytes(worker.streams[2])
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            row = self.ctx.store.metadata.get_task(worker.spec.task_id)
            transition = _json(row["transition"]) if row else None
            return AttemptResult(True, transition=transition, stdout=stdout, stderr=stderr)
        if worker.killed_for_timeout:
            error = f"TimeoutError: step {worker.spec.step} exceeded its @timeout and was killed"
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1:
            error = self._recorded_error(worker.spec) or "the step failed (exit code 1)"
        elif os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            error = f"ProcessDied: the task's process was killed by signal {sig} ({signal.Signals(sig).name})"
        else:
            error = f"ProcessDied: the task's process exited with code {os.WEXITSTATUS(status)}"
        return AttemptResult(False, error=error, stdout=stdout, stderr=stderr)

    def _recorded_error(self, spec: TaskSpec) -> str | None:
        for attempt in self.ctx.store.metadata.task_attempts(spec.task_id):
            if attempt["attempt"] == spec.attempt:
                return attempt["exception"]
        return None

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in self.workers.values():
            if worker.deadline is not None and now >= worker.deadline and not worker.killed_for_timeout:
                worker.killed_for_timeout = True
                _kill(worker.pid)

    def shutdown(self) -> None:
        """Kill every running worker (the run is being abandoned)."""
        for pid in list(self.workers):
            _kill(pid)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        for fd in list(self._fd_owner):
            self._close(fd)
        self.workers.clear()
        self.selector.close()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


def _json(text: str | None) -> Any:
    import json

    return json.loads(text) if text else None
