"""Metric logging with batched writes.

Points are buffered in memory and written in one transaction when the buffer
holds :attr:`MetricBuffer.max_points` points or :attr:`MetricBuffer.max_seconds`
have passed since the last write, and always on :meth:`~MetricBuffer.flush`
(a step's end, a tracked run's exit, and interpreter exit). A crash therefore
loses at most the last unflushed batch; a clean exit loses nothing.
"""

from __future__ import annotations

import atexit
import numbers
import time
import weakref
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from matinee.core.storage.metadata import COMPLETED, FAILED, MetadataStore
from matinee.errors import MatineeError, ParameterError

_live: weakref.WeakSet[MetricBuffer] = weakref.WeakSet()


def _flush_all() -> None:
    for buffer in list(_live):
        try:
            buffer.flush()
        except MatineeError:
            pass


atexit.register(_flush_all)


class MetricBuffer:
    """Buffers metric points for one run (and optionally one task)."""

    def __init__(
        self,
        metadata: MetadataStore,
        run_id: int,
        task_id: int | None = None,
        *,
        max_points: int = 1000,
        max_seconds: float = 1.0,
    ) -> None:
        self.metadata = metadata
        self.run_id = run_id
        self.task_id = task_id
        self.max_points = max_points
        self.max_seconds = max_seconds
        self._points: list[tuple[int, int | None, str, int | None, float, float]] = []
        self._last_flush = time.monotonic()
        _live.add(self)

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record one point of the series ``name``."""
        self._points.append((self.run_id, self.task_id, _check_name(name), _check_step(step, name),
                             _check_value(value, name), time.time()))
        if len(self._points) >= self.max_points or time.monotonic() - self._last_flush >= self.max_seconds:
            self.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record one point for each ``name: value`` in ``metrics``, all at ``step``."""
        if not isinstance(metrics, Mapping):
            raise ParameterError(
                f"log_metrics takes a dict of name -> value, not {type(metrics).__name__}", parameter="metrics"
            )
        self.log_batch((name, value, step) for name, value in metrics.items())

    def log_batch(self, points: Iterable[tuple[str, float, int | None]]) -> None:
        """Record many ``(name, value, step)`` points in one call."""
        now = time.time()
        run, task = self.run_id, self.task_id
        try:
            checked = [
                (run, task, _check_name(n), _check_step(s, n), _check_value(v, n), now) for n, v, s in points
            ]
        except (TypeError, ValueError):
            raise ParameterError(
                "log_batch takes (name, value, step) tuples", parameter="points"
            ) from None
        self._points.extend(checked)  # all or nothing: a bad point rejects the whole batch
        if len(self._points) >= self.max_points or time.monotonic() - self._last_flush >= self.max_seconds:
            self.flush()

    def flush(self) -> None:
        """Write every buffered point now."""
        points, self._points = self._points, []
        self._last_flush = time.monotonic()
        if points:
            self.metadata.log_metrics(points)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ParameterError(f"a metric name must be a non-empty string, not {name!r}", parameter="name")
    return name


def _check_value(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(
            f"metric {name!r} must be a number, not {type(value).__name__} {value!r}", parameter=name
        )
    return float(value)  # NaN and infinities too: a diverged loss is recorded, as MLflow records it


def _check_step(step: Any, name: str) -> int | None:
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise ParameterError(f"the step of metric {name!r} must be a whole number, not {step!r}", parameter="step")
    return int(step)


class TrackedRun:
    """A run outside any flow, made by :func:`matinee.start_run`.

    Use it as a context manager: the run is marked completed on a clean exit,
    failed if the block raises, and its metrics are flushed either way.
    """

    def __init__(self, metadata: MetadataStore, run_id: int, name: str) -> None:
        self.metadata = metadata
        self.id = run_id
        self.name = name
        self.pathspec = f"{name}/{run_id}"
        self._buffer = MetricBuffer(metadata, run_id)
        self.finished = False

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record one metric point (buffered)."""
        self._buffer.log_metric(name, value, step)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record several metrics at one step (buffered)."""
        self._buffer.log_metrics(metrics, step)

    def log_batch(self, points: Iterable[tuple[str, float, int | None]]) -> None:
        """Record many ``(name, value, step)`` points in one call (buffered)."""
        self._buffer.log_batch(points)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record parameters (JSON-encodable values; others are stored as text)."""
        self.metadata.log_params(self.id, params)

    def set_tags(self, *tags: str) -> None:
        """Add tags to the run."""
        self.metadata.add_tags(self.id, tags)

    def flush(self) -> None:
        self._buffer.flush()

    def end(self, status: str = COMPLETED, error: str | None = None) -> None:
        """Flush and mark the run finished (done for you by ``with``)."""
        if self.finished:
            return
        self._buffer.flush()
        self.metadata.finish_run(self.id, status, error)
        self.finished = True

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.end(COMPLETED)
        else:
            self.end(FAILED, f"{type(exc).__name__}: {exc}")

    def __repr__(self) -> str:
        return f"TrackedRun({self.pathspec!r})"
