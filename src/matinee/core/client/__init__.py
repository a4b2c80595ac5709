"""The client API: read runs, steps, tasks, artifacts and metrics from Python.

Paths follow Metaflow's: ``Flow("Train")``, ``Run("Train/12")``,
``Step("Train/12/fit")``, ``Task("Train/12/fit/345")``. Artifacts load lazily, on
attribute access. Only runs in the current :func:`namespace` are visible (by
default your own: ``user:<you>``); ``namespace(None)`` sees everyone's.

Examples
--------
>>> from matinee import Flow, Run                      # doctest: +SKIP
>>> run = Flow("TrainFlow").latest_successful_run      # doctest: +SKIP
>>> run.data.model, run["train"].task.stdout           # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from matinee.core.artifacts.store import ArtifactRef
from matinee.core.storage.metadata import COMPLETED, RUNNING
from matinee.core.store import Store, open_store
from matinee.errors import NamespaceError, NotFoundError

_UNSET = object()
_namespace: Any = _UNSET


def _store() -> Store:
    return open_store()


def namespace(ns: str | None) -> str | None:
    """Switch the namespace: a tag such as ``user:alice``, or ``None`` for all runs."""
    global _namespace
    _namespace = ns
    return ns


def default_namespace() -> str:
    """Go back to the default namespace (``user:<you>``, or the ``namespace`` setting)."""
    global _namespace
    _namespace = _UNSET
    return get_namespace() or ""


def get_namespace() -> str | None:
    """The current namespace."""
    if _namespace is _UNSET:
        from matinee.config import load_settings

        settings = load_settings()
        return settings.namespace or f"user:{settings.user}"
    return _namespace


def _parse(pathspec: str, parts: int, kind: str) -> list[str]:
    pieces = str(pathspec).strip("/").split("/")
    if len(pieces) != parts or not all(pieces):
        shape = "/".join(["Flow", "run_id", "step", "task_id"][:parts])
        raise NotFoundError(f"{kind} pathspec {pathspec!r} must look like {shape}", pathspec=pathspec)
    return pieces


def _int(value: str, what: str, pathspec: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise NotFoundError(f"{what} in {pathspec!r} must be a number, not {value!r}", pathspec=pathspec) from None


class MetricSeries:
    """The points of one metric: ``steps``, ``values``, ``timestamps``, in logging order."""

    def __init__(self, name: str, rows: list[dict[str, Any]]) -> None:
        self.name = name
        self.steps = [r["step"] for r in rows]
        self.values = [r["value"] for r in rows]
        self.timestamps = [r["ts"] for r in rows]

    @property
    def last(self) -> float | None:
        return self.values[-1] if self.values else None

    def __len__(self) -> int:
        return len(self.values)

    def to_pandas(self) -> Any:
        """The series as a DataFrame with columns step, value, timestamp."""
        import pandas as pd

        return pd.DataFrame({"step": self.steps, "value": self.values, "timestamp": self.timestamps})

    def __repr__(self) -> str:
        return f"MetricSeries({self.name!r}, {len(self)} points, last={self.last})"


def _series(rows: Iterable[dict[str, Any]]) -> dict[str, MetricSeries]:
    """Metric rows grouped into one series per name."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["name"], []).append(row)
    return {name: MetricSeries(name, points) for name, points in grouped.items()}


class Flow:
    """All runs of one flow (or of one ``start_run`` name)."""

    def __init__(self, name: str) -> None:
        self.name = self.id = self.pathspec = name
        if not _store().metadata.list_runs(name, limit=1):
            raise NotFoundError(f"no flow named {name!r} has run in this store", flow=name)

    def runs(self, *tags: str) -> Iterator[Run]:
        """Runs in the current namespace, newest first, carrying every tag given."""
        metadata = _store().metadata
        before, page = None, 20  # pages grow, so latest_run reads one small page and a full listing few
        while True:
            rows = metadata.list_runs(self.name, tag=get_namespace(), limit=page, before=before)
            tags_by_run = metadata.tags_of_runs(row["id"] for row in rows)  # one query per page
            for row in rows:
                run = Run._from_row(row, tags_by_run[row["id"]])
                if all(t in run.tags or t in run.system_tags for t in tags):
                    yield run
            if len(rows) < page:
                return
            before, page = rows[-1]["id"], min(page * 5, 5_000)

    def __iter__(self) -> Iterator[Run]:
        return self.runs()

    @property
    def latest_run(self) -> Run | None:
        return next(self.runs(), None)

    @property
    def latest_successful_run(self) -> Run | None:
        return next((r for r in self.runs() if r.successful), None)

    def __repr__(self) -> str:
        return f"Flow({self.name!r})"


class Run:
    """One run: ``Run("Flow/12")``."""

    def __init__(
        self, pathspec: str, _row: dict[str, Any] | None = None, _tags: list[dict[str, Any]] | None = None
    ) -> None:
        flow, run_id = _parse(pathspec, 2, "run")
        row = _row or _store().metadata.get_run(_int(run_id, "the run id", pathspec))
        if row is None or row["flow_name"] != flow:
            raise NotFoundError(f"run {pathspec} does not exist", pathspec=pathspec)
        self._row = row
        self.id = row["id"]
        self.flow_name = flow
        self.pathspec = f"{flow}/{self.id}"
        self._tags = _tags if _tags is not None else _store().metadata.run_tags(self.id)
        ns = get_namespace()
        if ns is not None and ns not in self.tags | self.system_tags:
            raise NamespaceError(
                f"run {self.pathspec} is not in namespace {ns}; use namespace(None) to see every user's runs",
                pathspec=self.pathspec,
            )

    @classmethod
    def _from_row(cls, row: dict[str, Any], tags: list[dict[str, Any]] | None = None) -> Run:
        return cls(f"{row['flow_name']}/{row['id']}", _row=row, _tags=tags)

    @property
    def tags(self) -> frozenset[str]:
        return frozenset(t["tag"] for t in self._tags if not t["system"])

    @property
    def system_tags(self) -> frozenset[str]:
        return frozenset(t["tag"] for t in self._tags if t["system"])

    @property
    def status(self) -> str:
        return str(self._row["status"])

    @property
    def successful(self) -> bool:
        return self.status == COMPLETED

    @property
    def finished(self) -> bool:
        return self.status != RUNNING

    @property
    def user(self) -> str:
        return str(self._row["user_name"])

    @property
    def created_at(self) -> float:
        return float(self._row["created_at"])

    @property
    def finished_at(self) -> float | None:
        return self._row["finished_at"]

    @property
    def error(self) -> str | None:
        return self._row["error"]

    @property
    def origin_run_id(self) -> int | None:
        return self._row["origin_run_id"]

    @property
    def code_hash(self) -> str | None:
        return self._row["code_hash"]

    @property
    def params(self) -> dict[str, Any]:
        return _store().metadata.run_params(self.id)

    def steps(self) -> Iterator[Step]:
        seen: dict[str, None] = {}
        for row in _store().metadata.list_tasks(self.id):
            seen.setdefault(row["step_name"], None)
        for name in seen:
            yield Step(f"{self.pathspec}/{name}", _run=self)

    def __iter__(self) -> Iterator[Step]:
        return self.steps()

    def __getitem__(self, step: str) -> Step:
        return Step(f"{self.pathspec}/{step}", _run=self)

    def __contains__(self, step: str) -> bool:
        return bool(_store().metadata.list_tasks(self.id, step))

    @property
    def end_task(self) -> Task | None:
        return self["end"].task if "end" in self else None

    @property
    def data(self) -> Any:
        """The artifacts of the end step (``None`` until it has run)."""
        task = self.end_task
        return task.data if task is not None else None

    def metric(self, name: str) -> MetricSeries:
        """One metric series of the run (all tasks)."""
        return MetricSeries(name, _store().metadata.metrics(self.id, name))

    @property
    def metrics(self) -> dict[str, MetricSeries]:
        """Every metric series of the run, by name."""
        return _series(_store().metadata.metrics(self.id))

    def add_tag(self, *tags: str) -> None:
        _store().metadata.add_tags(self.id, tags)
        self._tags = _store().metadata.run_tags(self.id)

    def remove_tag(self, *tags: str) -> None:
        _store().metadata.remove_tags(self.id, tags)
        self._tags = _store().metadata.run_tags(self.id)

    def __repr__(self) -> str:
        return f"Run({self.pathspec!r})"


class Step:
    """The tasks of one step of a run: ``Step("Flow/12/train")``."""

    def __init__(self, pathspec: str, _run: Run | None = None) -> None:
        flow, run_id, name = _parse(pathspec, 3, "step")
        self.run = _run or Run(f"{flow}/{run_id}")
        self.name = self.id = name
        self.pathspec = f"{self.run.pathspec}/{name}"
        self._rows = _store().metadata.list_tasks(self.run.id, name)
        if not self._rows:
            raise NotFoundError(f"step {self.pathspec} has no tasks", pathspec=self.pathspec)

    def tasks(self) -> Iterator[Task]:
        for row in self._rows:
            yield Task(f"{self.pathspec}/{row['id']}", _row=row, _run=self.run)

    def __iter__(self) -> Iterator[Task]:
        return self.tasks()

    def __getitem__(self, task_id: str | int) -> Task:
        return Task(f"{self.pathspec}/{task_id}", _run=self.run)

    @property
    def task(self) -> Task:
        """The step's task (the first one, for a foreach step)."""
        return next(self.tasks())

    def __repr__(self) -> str:
        return f"Step({self.pathspec!r})"


class DataArtifact:
    """One artifact of a task: its value (``.data``, loaded on access), key and size."""

    def __init__(self, name: str, ref: ArtifactRef) -> None:
        self.name = self.id = name
        self.ref = ref
        self.key, self.codec, self.size = ref

    @property
    def data(self) -> Any:
        return _store().artifacts.load(self.ref)

    def __repr__(self) -> str:
        return f"DataArtifact({self.name!r}, {self.codec}, {self.size} bytes)"


class TaskData:
    """Attribute access to a task's artifacts, each loaded on first use."""

    def __init__(self, pathspec: str, refs: dict[str, ArtifactRef]) -> None:
        self._pathspec = pathspec
        self._refs = refs
        self._values: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._refs:
            raise AttributeError(f"task {self._pathspec} has no artifact {name!r}; it has: {', '.join(self._refs)}")
        if name not in self._values:
            self._values[name] = _store().artifacts.load(self._refs[name])
        return self._values[name]

    def __contains__(self, name: str) -> bool:
        return name in self._refs

    def __dir__(self) -> list[str]:
        return list(self._refs)

    def __repr__(self) -> str:
        return f"<data of {self._pathspec}: {', '.join(self._refs)}>"


class Task:
    """One task: ``Task("Flow/12/train/345")``."""

    def __init__(self, pathspec: str, _row: dict[str, Any] | None = None, _run: Run | None = None) -> None:
        flow, run_id, step, task_id = _parse(pathspec, 4, "task")
        self.run = _run or Run(f"{flow}/{run_id}")
        row = _row or _store().metadata.get_task(_int(task_id, "the task id", pathspec))
        if row is None or row["run_id"] != self.run.id or row["step_name"] != step:
            raise NotFoundError(f"task {pathspec} does not exist", pathspec=pathspec)
        self._row = row
        self.id = row["id"]
        self.step_name = step
        self.pathspec = f"{self.run.pathspec}/{step}/{self.id}"
        self._refs: dict[str, ArtifactRef] | None = None

    @property
    def status(self) -> str:
        return str(self._row["status"])

    @property
    def successful(self) -> bool:
        return self.status == COMPLETED

    @property
    def finished(self) -> bool:
        return self.status != RUNNING

    @property
    def cloned_from(self) -> int | None:
        return self._row["cloned_from"]

    @property
    def foreach_stack(self) -> list[list[Any]]:
        return json.loads(self._row["foreach_stack"])

    @property
    def index(self) -> int | None:
        stack = self.foreach_stack
        return stack[-1][1] if stack else None

    @property
    def artifacts(self) -> dict[str, DataArtifact]:
        return {name: DataArtifact(name, ref) for name, ref in self._artifact_refs().items()}

    def _artifact_refs(self) -> dict[str, ArtifactRef]:
        if self._refs is None:
            self._refs = _store().metadata.task_artifacts(self.id)
        return self._refs

    @property
    def data(self) -> TaskData:
        return TaskData(self.pathspec, self._artifact_refs())

    def __getitem__(self, name: str) -> DataArtifact:
        refs = self._artifact_refs()
        if name not in refs:
            raise NotFoundError(f"task {self.pathspec} has no artifact {name!r}", pathspec=self.pathspec)
        return DataArtifact(name, refs[name])

    def __contains__(self, name: str) -> bool:
        return name in self._artifact_refs()

    @property
    def attempts(self) -> list[dict[str, Any]]:
        """Every attempt: number, status, start and end times, exception."""
        return _store().metadata.task_attempts(self.id)

    def _log(self, column: str) -> str:
        task_id = self._row["cloned_from"] or self.id
        attempts = _store().metadata.task_attempts(task_id)
        keys = [a[column] for a in attempts if a[column]]
        if not keys:
            return ""
        return _store().artifacts.load_bytes(keys[-1]).decode("utf-8", "replace")

    @property
    def stdout(self) -> str:
        """What the (last attempt of the) task printed."""
        return self._log("stdout_key")

    @property
    def stderr(self) -> str:
        return self._log("stderr_key")

    @property
    def exception(self) -> str | None:
        """The last attempt's exception, as ``Type: message`` (``None`` if it succeeded)."""
        attempts = self.attempts
        return attempts[-1]["exception"] if attempts and attempts[-1]["status"] != COMPLETED else None

    @property
    def traceback(self) -> str | None:
        attempts = self.attempts
        return attempts[-1]["traceback"] if attempts and attempts[-1]["status"] != COMPLETED else None

    @property
    def metrics(self) -> dict[str, MetricSeries]:
        return _series(r for r in _store().metadata.metrics(self.run.id) if r["task_id"] == self.id)

    def __repr__(self) -> str:
        return f"Task({self.pathspec!r})"
