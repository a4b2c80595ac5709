"""The Ray executor: every task attempt is a Ray task, placed by Ray on any node of the cluster.

Ray does the distribution: the runner submits at most ``max_workers`` attempts at
once, each as a call of one remote function with the step's ``@resources`` as its
Ray resource request (``num_cpus``, ``num_gpus``, ``memory`` in bytes); Ray
queues and places them. The remote function runs the same task body as the
process executor's forked worker (:func:`~matinee.core.runtime.task.worker_attempt`):
it opens the run's stores from the run's settings, so artifacts and metadata go
through the shared store and a run on Ray is inspected afterwards exactly like a
local one. Use a metadata database and a blob store every node reaches
(PostgreSQL and an object store) when the cluster has more than one machine.

Retries, ``@catch`` and ``@timeout`` keep their local meaning: Ray's own retries
are off (the runner retries per ``@retry``), a step raises ``TimeoutError`` at its
deadline as everywhere, and a Ray task still running ``KILL_GRACE`` seconds later
is cancelled with ``ray.cancel(force=True)``. A worker that dies mid-task fails
that attempt (``ProcessDied``) and ``@retry`` runs it again.

Each task's output is captured in its worker (at the file-descriptor level) and
shipped back with its result; on a local Ray the runner also shows it live, reading
the capture files as they grow.

Without an address, a local Ray is started for the run (bound to 127.0.0.1, no
dashboard) and stopped after it; with one (``--ray-address`` or the
``ray_address`` setting) the run connects to that cluster. If this process is
already connected to Ray (``ray.init`` was called), that connection is used and
left open.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from matinee.config import Settings
from matinee.core.flows.decorators import timeout_seconds
from matinee.core.runtime.task import AttemptResult, RunContext, TaskSpec, worker_attempt
from matinee.errors import ConfigError, missing_extra

#: Seconds past a step's @timeout before its Ray task is cancelled (the step itself raises first).
KILL_GRACE = 5.0

#: Resource names of ``@resources`` and the Ray task options they become.
_OPTION_NAMES = {"cpu": "num_cpus", "gpu": "num_gpus", "memory": "memory"}


def import_ray() -> Any:
    """The ``ray`` module, or the one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise missing_extra("ray", "ray") from None
    return ray


def ray_options(decorators: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Ray task options for a step's decorators: its ``@resources``, or one CPU.

    ``memory`` is in megabytes, as in ``@resources``; Ray counts bytes.
    """
    settings = decorators.get("resources")
    if not settings:
        return {"num_cpus": 1}
    options: dict[str, Any] = {"num_cpus": float(settings.get("cpu") or 0)}
    if settings.get("gpu"):
        options["num_gpus"] = float(settings["gpu"])
    if settings.get("memory"):
        options["memory"] = int(float(settings["memory"]) * 1024 * 1024)
    return options


def start_local_ray(ray: Any, num_cpus: int | None = None) -> Any:
    """Start a Ray on this machine for one run: 127.0.0.1, no dashboard, workers' output not echoed."""
    return ray.init(
        num_cpus=num_cpus or os.cpu_count() or 1,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level="WARNING",
        configure_logging=True,
    )


# -- the worker side ------------------------------------------------------------------

#: Run contexts this Ray worker has already loaded, by the object id of their payload.
_contexts: dict[str, RunContext] = {}


def _capture_stem(run_id: int, spec: TaskSpec) -> str:
    """Where a task's output is captured on the node that runs it (``<stem>.out``, ``<stem>.err``)."""
    folder = Path(tempfile.gettempdir()) / "matinee-ray"
    return str(folder / f"{os.getpid()}-{run_id}-{spec.task_id}-{spec.attempt}")


def run_on_ray(boxed_payload: list[Any], spec: TaskSpec, capture_stem: str) -> AttemptResult:
    """The Ray task: load the run's context (once per worker), run the attempt, return its result and output.

    ``boxed_payload`` holds the object reference of the run's context in a list, so
    Ray does not resolve it for every call; ``capture_stem`` names the files the
    output goes to, which the driver reads back if this worker dies.
    """
    import ray

    from matinee.core.store import open_store

    ref = boxed_payload[0]
    key = ref.hex()
    ctx = _contexts.get(key)
    if ctx is None:
        payload, settings = ray.get(ref)
        ctx = dataclasses.replace(payload, store=open_store(settings))
        while len(_contexts) >= 4:
            del _contexts[next(iter(_contexts))]
        _contexts[key] = ctx
    out_path, err_path = Path(capture_stem + ".out"), Path(capture_stem + ".err")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with _run_settings_in_environment(ctx.store.settings), open(out_path, "w+b") as out, \
            open(err_path, "w+b") as err:
        try:
            result = worker_attempt(ctx, spec, out.fileno(), err.fileno())
            out.seek(0)
            err.seek(0)
            result.stdout, result.stderr = out.read(), err.read()
        finally:
            out_path.unlink(missing_ok=True)
            err_path.unlink(missing_ok=True)
    return result


#: Settings a task's own code may resolve again (``load_settings()``), e.g. to register a model.
_TASK_SETTINGS = ("home", "metadata_url", "blob_url", "user", "namespace")


@contextmanager
def _run_settings_in_environment(settings: Settings) -> Iterator[None]:
    """Point ``MATINEE_*`` at the run's stores while its task runs in this (long-lived) Ray worker,
    so code in the step that opens the default store opens the run's, as it would locally."""
    saved = {}
    for name in _TASK_SETTINGS:
        key = f"MATINEE_{name.upper()}"
        saved[key] = os.environ.get(key)
        value = getattr(settings, name)
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = str(value)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def run_on_ray_reporting_start(boxed_payload: list[Any], spec: TaskSpec, capture_stem: str) -> Iterator[Any]:
    """:func:`run_on_ray` as a streaming Ray task that first reports it has started.

    Used for steps with ``@timeout``: their deadline counts from the start, not from
    the submission (a task may wait in Ray's queue for its resources).
    """
    yield None
    yield run_on_ray(boxed_payload, spec, capture_stem)


# -- the driver side --------------------------------------------------------------------


@dataclass
class _Pending:
    spec: TaskSpec
    capture_stem: str
    limit: float  # the step's @timeout in seconds, 0 for none
    started: bool = False
    deadline: float | None = None
    killed_for_timeout: bool = False
    echoed: list[int] = field(default_factory=lambda: [0, 0])  # bytes of stdout, stderr shown so far
    partial: list[bytes] = field(default_factory=lambda: [b"", b""])  # an unfinished last line of each


_remote: dict[str, Any] = {}


def _remote_function(ray: Any, reporting_start: bool) -> Any:
    """The remote function (defined once per process): plain, or streaming with a start report."""
    name = "reporting_start" if reporting_start else "plain"
    if name not in _remote:
        if reporting_start:
            _remote[name] = ray.remote(max_retries=0, num_returns="streaming")(run_on_ray_reporting_start)
        else:
            _remote[name] = ray.remote(max_retries=0, retry_exceptions=False)(run_on_ray)
    return _remote[name]


def _pickle_flow_module_by_value(ray: Any, flow_cls: type) -> None:
    """Ship the flow's own code with its tasks when workers could not import its module.

    A flow run as a script (``__main__``) is always shipped; a module found on
    ``sys.path`` (an installed package) is imported by the workers instead.
    """
    name = flow_cls.__module__
    if name == "__main__" or name not in sys.modules:
        return
    top = name.split(".")[0]
    if importlib.machinery.PathFinder.find_spec(top) is None:
        ray.cloudpickle.register_pickle_by_value(sys.modules[name])


class RayExecutor:
    def __init__(self, ctx: RunContext, max_workers: int, echo: Any, address: str | None = None) -> None:
        self.ray = ray = import_ray()
        self.ctx = ctx
        self.max_workers = max(1, max_workers)
        self.echo = echo
        self.address = address
        self.owns_ray = False
        self.init_seconds = 0.0
        if not ray.is_initialized():
            started = time.monotonic()
            if address:
                _check_reachable(address)
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, logging_level="WARNING")
                else:
                    start_local_ray(ray)
            except Exception as exc:
                what = f"connect to the Ray cluster at {address}" if address else "start a local Ray"
                raise ConfigError(f"cannot {what}: {type(exc).__name__}: {exc}", setting="ray_address") from exc
            self.owns_ray = True
            self.init_seconds = time.monotonic() - started
            what = f"Connected to the Ray cluster at {address}" if address else "Started a local Ray"
            echo(f"{what} in {self.init_seconds:.1f}s ({_describe(ray.cluster_resources())})")
        self.capacity = ray.cluster_resources()
        # a Ray whose nodes all live on loopback cannot grow: refuse what it can never run
        self.fixed_size = not address and all(
            n.get("NodeManagerAddress") in ("127.0.0.1", "localhost") for n in ray.nodes() if n.get("Alive")
        )
        _pickle_flow_module_by_value(ray, ctx.flow_cls)
        payload = dataclasses.replace(ctx, store=cast(Any, None), parents={})
        self.payload_ref = ray.put((payload, ctx.store.settings))
        self.pending: dict[Any, _Pending] = {}  # object ref (or streaming generator) -> attempt
        self._refused: list[tuple[TaskSpec, AttemptResult]] = []

    @property
    def running(self) -> int:
        return len(self.pending) + len(self._refused)

    @property
    def free(self) -> int:
        return self.max_workers - self.running

    def submit(self, spec: TaskSpec) -> None:
        node = self.ctx.graph[spec.step]
        options = ray_options(node.decorators)
        missing = self._unavailable(options)
        if missing:
            error = (f"ResourcesUnavailable: step {spec.step} asks for {missing}; "
                     f"this Ray has {_describe(self.capacity)}")
            self._refused.append((spec, AttemptResult(False, error=error)))
            return
        stem = _capture_stem(self.ctx.run_id, spec)
        limit = timeout_seconds(node.decorators["timeout"]) if "timeout" in node.decorators else 0
        remote = _remote_function(self.ray, reporting_start=bool(limit))
        key = remote.options(name=f"{self.ctx.flow_name}/{self.ctx.pathspec(spec)}", **options).remote(
            [self.payload_ref], spec, stem
        )
        self.pending[key] = _Pending(spec, stem, limit)

    def _unavailable(self, options: dict[str, Any]) -> str | None:
        """What a task asks for beyond the whole of a Ray that cannot grow (a local one)."""
        if not self.fixed_size:
            return None  # a cluster may add nodes (autoscaling): let Ray queue the task
        names = {"num_cpus": ("CPU", "cpu", 1.0), "num_gpus": ("GPU", "gpu", 1.0), "memory": ("memory", "memory", 2**20)}
        for option, (resource, label, unit) in names.items():
            wanted = float(options.get(option) or 0)
            if wanted > float(self.capacity.get(resource, 0)):
                return f"{label}={wanted / unit:g}" + (" MB" if label == "memory" else "")
        return None

    def wait(self, timeout: float | None) -> list[tuple[TaskSpec, AttemptResult]]:
        """Wait until at least one attempt finishes (or ``timeout`` passes); returns the finished ones."""
        finished, self._refused = self._refused, []
        start = time.monotonic()
        while self.pending and not finished:
            wait_for = 0.25 if self.fixed_size else 0.5  # a local Ray's output is shown live, polled
            deadlines = [p.deadline for p in self.pending.values() if p.deadline and not p.killed_for_timeout]
            if deadlines:
                wait_for = max(0.0, min(wait_for, min(deadlines) - time.monotonic()))
            if timeout is not None:
                wait_for = max(0.0, min(wait_for, start + timeout - time.monotonic()))
            keys = list(self.pending)
            ready, _ = self.ray.wait(keys, num_returns=1, timeout=wait_for)
            if ready:
                ready, _ = self.ray.wait(keys, num_returns=len(keys), timeout=0)
            for key in ready:
                pending = self.pending[key]
                result = self._collect(key, pending)
                if result is not None:
                    del self.pending[key]
                    finished.append((pending.spec, result))
                    self._echo_rest(pending, result)
            if self.fixed_size:
                for pending in self.pending.values():
                    self._echo_live(pending)
            self._enforce_deadlines()
            if timeout is not None and time.monotonic() - start >= timeout:
                break
        return finished

    def _collect(self, key: Any, pending: _Pending) -> AttemptResult | None:
        """The result of a ready task; ``None`` when it only reported its start (its deadline starts now)."""
        if not pending.limit:
            return self._result(key, pending)
        try:
            ref = next(key)
        except StopIteration:  # the stream ended without its second item
            return AttemptResult(False, error="ProcessDied: the task's Ray worker ended without a result")
        if pending.started:
            return self._result(ref, pending)
        try:
            self.ray.get(ref)  # the start report: None, or the error of a task that died first
        except Exception:
            return self._result(ref, pending)
        pending.started = True
        pending.deadline = time.monotonic() + pending.limit + KILL_GRACE
        return None

    def _result(self, ref: Any, pending: _Pending) -> AttemptResult:
        ray = self.ray
        try:
            result = ray.get(ref)
            if isinstance(result, AttemptResult):
                return result
            error = f"ProcessDied: the task's Ray worker returned {type(result).__name__}, not a result"
        except ray.exceptions.RayTaskError as exc:  # raised in run_on_ray itself, outside the step
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
            error = f"{type(cause).__name__}: {cause}"
        except (ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.RayError) as exc:
            if pending.killed_for_timeout:
                error = f"TimeoutError: step {pending.spec.step} exceeded its @timeout and was killed"
            else:
                error = f"ProcessDied: the task's Ray worker died ({type(exc).__name__}: {_first_line(exc)})"
        stdout, stderr = _read_capture(pending.capture_stem)
        return AttemptResult(False, error=error, stdout=stdout, stderr=stderr)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for key, pending in self.pending.items():
            if pending.deadline is not None and now >= pending.deadline and not pending.killed_for_timeout:
                pending.killed_for_timeout = True
                self.ray.cancel(key, force=True)

    def _echo_live(self, pending: _Pending) -> None:
        """Show what a running task has written so far (its capture files are on this machine)."""
        for stream, suffix in ((0, ".out"), (1, ".err")):
            try:
                with open(pending.capture_stem + suffix, "rb") as fh:
                    fh.seek(pending.echoed[stream])
                    data = fh.read(1 << 20)
            except OSError:
                continue
            if data:
                pending.echoed[stream] += len(data)
                self._echo_lines(pending, stream, data, final=False)

    def _echo_rest(self, pending: _Pending, result: AttemptResult) -> None:
        """Show a finished task's output not shown yet, with its ``[run/step/task]`` prefix."""
        for stream, data in ((0, result.stdout), (1, result.stderr)):
            self._echo_lines(pending, stream, data[pending.echoed[stream]:], final=True)

    def _echo_lines(self, pending: _Pending, stream: int, data: bytes, final: bool) -> None:
        text = pending.partial[stream] + data
        lines = text.split(b"\n")
        pending.partial[stream] = b"" if final else lines.pop()
        if final and lines and not lines[-1]:
            lines.pop()
        if not lines:
            return
        prefix = f"[{self.ctx.pathspec(pending.spec)}] "
        target = sys.stdout if stream == 0 else sys.stderr
        target.write("".join(prefix + line.decode("utf-8", "replace") + "\n" for line in lines))
        target.flush()

    def shutdown(self) -> None:
        """Cancel what still runs; stop (or disconnect from) the Ray this executor started."""
        for ref in list(self.pending):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass
        for pending in self.pending.values():
            _read_capture(pending.capture_stem)
        self.pending.clear()
        if self.owns_ray and self.ray.is_initialized():
            self.ray.shutdown()
            self.owns_ray = False


def _check_reachable(address: str) -> None:
    """Fail at once, not after Ray's minutes of retries, when nothing listens at ``host:port``."""
    import socket

    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", "local" or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} (setting ray_address, --ray-address)",
            setting="ray_address",
        ) from None


def _read_capture(stem: str) -> tuple[bytes, bytes]:
    """The output a dead worker left in its capture files (on this node), removing them."""
    out = []
    for suffix in (".out", ".err"):
        path = Path(stem + suffix)
        try:
            out.append(path.read_bytes())
            path.unlink()
        except OSError:
            out.append(b"")
    return out[0], out[1]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"


def _describe(resources: dict[str, Any]) -> str:
    parts = [f"{resources.get('CPU', 0):g} CPU"]
    if resources.get("GPU"):
        parts.append(f"{resources['GPU']:g} GPU")
    if resources.get("memory"):
        parts.append(f"{resources['memory'] / 2**30:.1f} GiB memory")
    return ", ".join(parts)
