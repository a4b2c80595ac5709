"""Where a model version comes from: resolving a source to an artifact, and its lineage."""

from __future__ import annotations

import importlib.metadata
import json
import re
from dataclasses import dataclass, field
from typing import Any

from matinee.core.artifacts.store import ArtifactRef
from matinee.core.store import Store
from matinee.errors import NotFoundError, ParameterError

#: Libraries whose versions are recorded with every model version, when installed.
LIBRARIES = ("numpy", "scipy", "pandas", "implicit")

_ARTIFACT_SOURCE = re.compile(r"^(?P<path>[^:]+):(?P<artifact>[A-Za-z_][A-Za-z0-9_]*)$")


@dataclass
class Source:
    """A resolved model source: the artifact, and the run and task it belongs to."""

    ref: ArtifactRef
    run_id: int | None = None
    task_id: int | None = None
    artifact_name: str | None = None
    dataset_hash: str | None = None
    code_version: str | None = None
    libraries: dict[str, str] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        from matinee import __version__

        return {
            "run_id": self.run_id,
            "task_id": self.task_id,
            "artifact_name": self.artifact_name,
            "artifact_key": self.ref.key,
            "codec": self.ref.codec,
            "size": self.ref.size,
            "code_version": self.code_version,
            "matinee_version": __version__,
            "package_versions": json.dumps(self.libraries or package_versions()),
        }


def package_versions() -> dict[str, str]:
    """Installed versions of the libraries models depend on (read from metadata, not imported)."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def resolve_source(store: Store, source: Any, artifact: str | None = None) -> Source:
    """Turn what :func:`~matinee.core.registry.register_model` was given into a :class:`Source`."""
    from matinee.core.client import Run, Task

    if isinstance(source, str):
        match = _ARTIFACT_SOURCE.match(source.strip())
        if match is None:
            raise ParameterError(
                f"cannot read the model source {source!r}: use 'Flow/RUN/STEP/TASK:artifact' or 'Flow/RUN:artifact'",
                parameter="source",
            )
        if artifact is not None:
            raise ParameterError("give the artifact in the source string or as artifact=, not both",
                                 parameter="artifact")
        return _from_pathspec(store, match["path"].strip("/"), match["artifact"])
    if isinstance(source, (Run, Task)):
        if artifact is None:
            raise ParameterError(f"name the artifact of {source.pathspec} to register: artifact='model'",
                                 parameter="artifact")
        return _from_pathspec(store, source.pathspec, artifact)
    if artifact is not None:
        raise ParameterError("artifact= applies only to a run or task source", parameter="artifact")
    return from_object(store, source)


def from_object(
    store: Store, value: Any, *, run_id: int | None = None, task_id: int | None = None,
    artifact_name: str | None = None,
) -> Source:
    """Store ``value`` as an artifact; lineage from the run it was made in, if any."""
    ref = store.artifacts.save(value)
    code = None
    if run_id is not None:
        run = store.metadata.get_run(run_id)
        code = run["code_hash"] if run else None
    return Source(ref, run_id=run_id, task_id=task_id, artifact_name=artifact_name, code_version=code)


def _from_pathspec(store: Store, pathspec: str, artifact: str) -> Source:
    parts = pathspec.split("/")
    if len(parts) not in (2, 4) or not all(parts):
        raise ParameterError(
            f"model source {pathspec!r} must be a run (Flow/RUN) or a task (Flow/RUN/STEP/TASK)",
            parameter="source",
        )
    flow, run_text = parts[0], parts[1]
    run = store.metadata.get_run(_number(run_text, pathspec)) if run_text.isdigit() else None
    if run is None or run["flow_name"] != flow:
        raise NotFoundError(f"run {flow}/{run_text} does not exist", pathspec=pathspec)
    if len(parts) == 4:
        task = store.metadata.get_task(_number(parts[3], pathspec))
        if task is None or task["run_id"] != run["id"] or task["step_name"] != parts[2]:
            raise NotFoundError(f"task {pathspec} does not exist", pathspec=pathspec)
    else:
        ends = store.metadata.list_tasks(run["id"], "end")
        if not ends:
            raise NotFoundError(f"run {pathspec} has no end task yet; name a task: Flow/RUN/STEP/TASK:artifact",
                                pathspec=pathspec)
        task = ends[-1]
    refs = store.metadata.task_artifacts(task["id"])
    if artifact not in refs:
        raise NotFoundError(
            f"task {flow}/{run['id']}/{task['step_name']}/{task['id']} has no artifact {artifact!r}; "
            f"it has: {', '.join(refs) or 'none'}",
            pathspec=pathspec,
            artifact=artifact,
        )
    dataset = None
    if "dataset_hash" in refs:
        value = store.artifacts.load(refs["dataset_hash"])
        dataset = str(value) if value is not None else None
    return Source(
        refs[artifact], run_id=run["id"], task_id=task["id"], artifact_name=artifact, dataset_hash=dataset,
        code_version=run["code_hash"],
    )


def _number(text: str, pathspec: str) -> int:
    if not text.isdigit():
        raise NotFoundError(f"{text!r} in {pathspec!r} must be a number", pathspec=pathspec)
    return int(text)
