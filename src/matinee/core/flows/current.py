"""``current``: what a running step knows about itself, and its tracking calls."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from matinee.errors import FlowError

if TYPE_CHECKING:
    from matinee.core.tracking.tracker import MetricBuffer


class Current:
    """The running task's identity (``flow_name``, ``run_id``, ``step_name``, ...).

    Outside a running step every attribute is ``None`` and ``is_running_flow``
    is false; the tracking calls raise, pointing at :func:`matinee.start_run`.

    Examples
    --------
    >>> from matinee import current
    >>> current.is_running_flow
    False
    """

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.flow_name: str | None = None
        self.run_id: str | None = None
        self.step_name: str | None = None
        self.task_id: str | None = None
        self.retry_count: int = 0
        self.origin_run_id: str | None = None
        self.username: str | None = None
        self.tags: frozenset[str] = frozenset()
        self.namespace: str | None = None
        self._metrics: MetricBuffer | None = None
        self._on_params: Any = None

    def _bind(self, *, metrics: MetricBuffer, on_params: Any, **identity: Any) -> None:
        self._clear()
        for key, value in identity.items():
            setattr(self, key, value)
        self._metrics = metrics
        self._on_params = on_params

    @property
    def is_running_flow(self) -> bool:
        return self.run_id is not None

    @property
    def pathspec(self) -> str | None:
        """``Flow/run_id/step/task_id`` of the running task."""
        if not self.is_running_flow:
            return None
        return f"{self.flow_name}/{self.run_id}/{self.step_name}/{self.task_id}"

    def _buffer(self, call: str) -> MetricBuffer:
        if self._metrics is None:
            raise FlowError(
                f"current.{call}() works only inside a running step; "
                "outside flows use: with matinee.start_run('name') as run: run.log_metric(...)"
            )
        return self._metrics

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record one metric point for this task's run."""
        self._buffer("log_metric").log_metric(name, value, step)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record several metrics at one step."""
        self._buffer("log_metrics").log_metrics(metrics, step)

    def log_batch(self, points: Iterable[tuple[str, float, int | None]]) -> None:
        """Record many ``(name, value, step)`` points in one call."""
        self._buffer("log_batch").log_batch(points)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record parameters of the run (beyond the flow's own Parameters)."""
        self._buffer("log_params")
        self._on_params(params)

    def __repr__(self) -> str:
        return f"<current {self.pathspec or '(not running)'}>"


current = Current()
