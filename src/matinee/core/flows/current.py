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

    def __reduce__(self) -> str:
        # pickled by name: flow code shipped to another process (a Ray worker) must
        # use that process's ``current``, the one its task binds, not a copy
        return "current"

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

    def register_model(self, name: str, model: Any, **options: Any) -> Any:
        """Register a model this step made as a new version of ``name``.

        Parameters
        ----------
        name
            The model's name in the registry.
        model
            The model object, or the name of an attribute the step has set on
            ``self`` (``"model"``), which is then recorded as the artifact's name.
        **options
            ``metrics``, ``tags``, ``description``, ``dataset_hash``, as for
            :func:`matinee.register_model`. The dataset hash defaults to the
            step's ``self.dataset_hash`` when it has one.

        Returns
        -------
        ModelVersion
            The new version, recording this run and task as its lineage.

        Examples
        --------
        >>> from matinee import FlowSpec, current, step
        >>> class Train(FlowSpec):
        ...     @step
        ...     def start(self):
        ...         self.model = {"weights": [0.1, 0.2]}
        ...         current.register_model("ranker", "model", metrics={"auc": 0.7})
        ...         self.next(self.end)
        ...     @step
        ...     def end(self):
        ...         pass
        """
        import sys

        from matinee.core.registry import register_in_step

        self._buffer("register_model")
        flow = sys._getframe(1).f_locals.get("self")
        artifact = None
        if isinstance(model, str):
            if flow is None or not hasattr(flow, model):
                raise FlowError(
                    f"current.register_model({name!r}, {model!r}): the step has no artifact {model!r}; "
                    f"set self.{model} first, or pass the model object itself",
                )
            artifact, model = model, getattr(flow, model)
        if "dataset_hash" not in options and flow is not None:
            dataset = getattr(flow, "dataset_hash", None)
            if isinstance(dataset, str):
                options["dataset_hash"] = dataset
        assert self.run_id is not None and self.task_id is not None
        return register_in_step(
            name, model, run_id=int(self.run_id), task_id=int(self.task_id), artifact_name=artifact, **options
        )

    def __repr__(self) -> str:
        return f"<current {self.pathspec or '(not running)'}>"


current = Current()
