"""The model registry: named models, numbered versions with lineage, and aliases.

A model name has versions ``1, 2, 3, ...`` (monotonic, never reused), each
pointing at a content-addressed artifact and at the run, dataset hash and code
version that made it. Aliases (``champion``, ``challenger``, any name) point at
one version each; every change to an alias is appended to its history, and
:func:`promote` and :func:`rollback` move an alias and record it in one
transaction.

Examples
--------
>>> import matinee                                          # doctest: +SKIP
>>> v = matinee.register_model("ranker", {"weights": [1, 2]})  # doctest: +SKIP
>>> promote("ranker", v.version)                            # doctest: +SKIP
>>> matinee.load_model("ranker@champion")                   # doctest: +SKIP
{'weights': [1, 2]}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from matinee.core.artifacts.store import ArtifactRef
from matinee.core.registry.lineage import Source, from_object, resolve_source
from matinee.core.storage.metadata import Row
from matinee.core.store import Store, open_store
from matinee.errors import NotFoundError, ParameterError

__all__ = [
    "AliasChange",
    "ModelVersion",
    "advance_alias",
    "alias_history",
    "delete_alias",
    "get_model",
    "list_models",
    "load_model",
    "promote",
    "register_model",
    "rollback",
    "set_alias",
    "versions",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,254}$")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model, with where it came from.

    Attributes
    ----------
    name, version
        The model and its version number (1, 2, ... per name).
    artifact_key, codec, size
        The content-addressed artifact holding the model object.
    run_pathspec, task_pathspec, artifact_name
        The run and task that produced it and the artifact's name there
        (``None`` for an object registered outside a flow).
    dataset_hash, code_version, matinee_version, package_versions
        Lineage: the data, the flow's code hash, and the software versions.
    metrics, tags, description, user, created_at
        What the registering user attached, who, and when.
    aliases
        The aliases pointing at this version when it was read.

    Examples
    --------
    >>> from matinee import register_model                 # doctest: +SKIP
    >>> v = register_model("ranker", {"weights": [1, 2]})  # doctest: +SKIP
    >>> v.name, v.version, v.load()                         # doctest: +SKIP
    ('ranker', 1, {'weights': [1, 2]})
    """

    name: str
    version: int
    artifact_key: str
    codec: str | None
    size: int | None
    created_at: float
    run_id: int | None = None
    task_id: int | None = None
    run_pathspec: str | None = None
    task_pathspec: str | None = None
    artifact_name: str | None = None
    dataset_hash: str | None = None
    code_version: str | None = None
    matinee_version: str | None = None
    package_versions: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    description: str | None = None
    user: str | None = None
    aliases: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        """``name/version``, accepted by :func:`load_model`."""
        return f"{self.name}/{self.version}"

    @property
    def source(self) -> str | None:
        """``Flow/RUN/STEP/TASK:artifact`` when the version came from a task."""
        if self.task_pathspec and self.artifact_name:
            return f"{self.task_pathspec}:{self.artifact_name}"
        return self.task_pathspec or self.run_pathspec

    def load(self) -> Any:
        """Load (and verify) the model object."""
        return open_store().artifacts.load(ArtifactRef(self.artifact_key, self.codec or "pickle", self.size or 0))

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        return {**asdict(self), "uri": self.uri, "source": self.source}


@dataclass(frozen=True)
class AliasChange:
    """One entry of an alias's append-only history."""

    name: str
    alias: str
    action: str
    from_version: int | None
    to_version: int | None
    user: str
    at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_name(name: Any) -> str:
    """Refuse a model name that is empty or holds ``@``, ``/`` or spaces."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ParameterError(
            f"invalid model name {name!r}: use letters, digits, '_', '-' and '.', starting with a letter or digit",
            parameter="name",
        )
    return name


def check_alias(alias: Any) -> str:
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise ParameterError(
            f"invalid alias {alias!r}: use letters, digits, '_', '-' and '.', starting with a letter",
            parameter="alias",
        )
    return alias


def check_version(version: Any) -> int:
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ParameterError(f"invalid model version {version!r}: use a whole number from 1", parameter="version")
    return version


def register_model(
    name: str,
    source: Any,
    *,
    artifact: str | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Sequence[str] | None = None,
    description: str | None = None,
    dataset_hash: str | None = None,
) -> ModelVersion:
    """Register a new version of model ``name``.

    Parameters
    ----------
    name
        The model's name: letters, digits, ``_``, ``-`` and ``.``.
    source
        Where the model is: an artifact of a task or run as a string
        (``"Flow/12/train/345:model"`` or ``"Flow/12:model"`` for the end
        task), a :class:`~matinee.Run` or :class:`~matinee.Task` with
        ``artifact``, or any Python object, which is stored as an artifact.
    artifact
        The artifact's name when ``source`` is a run or a task.
    metrics
        Numbers to keep with the version (``{"ndcg@10": 0.31}``).
    tags
        Free-form labels.
    description
        A sentence about this version.
    dataset_hash
        The data it was trained on; by default the ``dataset_hash`` artifact
        of the source task, if it has one.

    Returns
    -------
    ModelVersion
        The new version: numbers grow by one per name and are never reused,
        even when several processes register at once.

    Raises
    ------
    ParameterError
        The name, metrics or tags are malformed.
    NotFoundError
        The run, task or artifact named by ``source`` does not exist.

    Examples
    --------
    >>> from matinee import register_model, load_model     # doctest: +SKIP
    >>> v = register_model("popularity", {"top": [3, 1, 2]}, metrics={"recall@10": 0.2})  # doctest: +SKIP
    >>> load_model(f"popularity/{v.version}")              # doctest: +SKIP
    {'top': [3, 1, 2]}
    """
    check_name(name)
    store = open_store()
    src = resolve_source(store, source, artifact)
    return _register(store, name, src, metrics=metrics, tags=tags, description=description,
                     dataset_hash=dataset_hash)


def register_in_step(
    name: str,
    model: Any,
    *,
    run_id: int,
    task_id: int,
    artifact_name: str | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Sequence[str] | None = None,
    description: str | None = None,
    dataset_hash: str | None = None,
) -> ModelVersion:
    """Register ``model`` from inside a running task (what ``current.register_model`` calls)."""
    check_name(name)
    store = open_store()
    src = from_object(store, model, run_id=run_id, task_id=task_id, artifact_name=artifact_name)
    return _register(store, name, src, metrics=metrics, tags=tags, description=description,
                     dataset_hash=dataset_hash)


def _register(
    store: Store,
    name: str,
    src: Source,
    *,
    metrics: Mapping[str, float] | None,
    tags: Sequence[str] | None,
    description: str | None,
    dataset_hash: str | None,
) -> ModelVersion:
    metric_values = _check_metrics(metrics)
    tag_list = _check_tags(tags)
    if description is not None and not isinstance(description, str):
        raise ParameterError("description must be a string", parameter="description")
    fields = {
        **src.fields(),
        "dataset_hash": dataset_hash if dataset_hash is not None else src.dataset_hash,
        "metrics": json.dumps(metric_values),
        "tags": json.dumps(tag_list),
        "description": description,
        "user_name": store.settings.user,
    }
    version = store.metadata.add_model_version(name, fields)
    return get_model(name, version)


def _check_metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise ParameterError("metrics must be a mapping of names to numbers", parameter="metrics")
    out = {}
    for key, value in metrics.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"metric {key!r} must be a number, not {value!r}", parameter="metrics") from None
    return out


def _check_tags(tags: Sequence[str] | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str) or not all(isinstance(t, str) and t.strip() for t in tags):
        raise ParameterError("tags must be a list of non-empty strings", parameter="tags")
    return list(dict.fromkeys(tags))


def _version_from_row(store: Store, row: Row, aliases: list[str]) -> ModelVersion:
    run_pathspec = task_pathspec = None
    if row["run_id"] is not None:
        run = store.metadata.get_run(row["run_id"])
        if run is not None:
            run_pathspec = f"{run['flow_name']}/{run['id']}"
            if row["task_id"] is not None:
                task = store.metadata.get_task(row["task_id"])
                if task is not None:
                    task_pathspec = f"{run_pathspec}/{task['step_name']}/{task['id']}"
    return ModelVersion(
        name=row["name"],
        version=int(row["version"]),
        artifact_key=row["artifact_key"],
        codec=row["codec"],
        size=row["size"],
        created_at=float(row["created_at"]),
        run_id=row["run_id"],
        task_id=row["task_id"],
        run_pathspec=run_pathspec,
        task_pathspec=task_pathspec,
        artifact_name=row["artifact_name"],
        dataset_hash=row["dataset_hash"],
        code_version=row["code_version"],
        matinee_version=row["matinee_version"],
        package_versions=json.loads(row["package_versions"] or "{}"),
        metrics=json.loads(row["metrics"] or "{}"),
        tags=json.loads(row["tags"] or "[]"),
        description=row["description"],
        user=row["user_name"],
        aliases=aliases,
    )


def _require_model(store: Store, name: str) -> None:
    if store.metadata.model_version(check_name(name)) is None:
        raise NotFoundError(f"no model named {name!r} is registered", model=name)


def get_model(name: str, version: int | None = None, alias: str | None = None) -> ModelVersion:
    """One version of a model: by number, by alias, or the newest.

    Parameters
    ----------
    name
        The model's name.
    version
        A version number; with neither this nor ``alias``, the newest version.
    alias
        An alias such as ``"champion"``.

    Returns
    -------
    ModelVersion

    Raises
    ------
    NotFoundError
        No such model, version or alias.
    ParameterError
        A malformed name, version or alias, or both ``version`` and ``alias``.
    """
    store = open_store()
    _require_model(store, name)
    if version is not None and alias is not None:
        raise ParameterError("give a version or an alias, not both", parameter="version")
    if alias is not None:
        row = store.metadata.model_alias(name, check_alias(alias))
        if row is None:
            raise NotFoundError(f"model {name!r} has no alias {alias!r}", model=name, alias=alias)
        version = int(row["version"])
    found = store.metadata.model_version(name, None if version is None else check_version(version))
    if found is None:
        raise NotFoundError(f"model {name!r} has no version {version}", model=name, version=version)
    aliases = [a["alias"] for a in store.metadata.model_aliases(name) if a["version"] == found["version"]]
    return _version_from_row(store, found, aliases)


def parse_model_uri(uri: str) -> tuple[str, int | None, str | None]:
    """``"name@alias"``, ``"name/3"`` or ``"name"`` as ``(name, version, alias)``."""
    if not isinstance(uri, str):
        raise ParameterError(f"a model reference must be a string, not {uri!r}", parameter="model")
    if "@" in uri:
        name, alias = uri.split("@", 1)
        return check_name(name), None, check_alias(alias)
    if "/" in uri:
        name, version = uri.split("/", 1)
        return check_name(name), check_version(version), None
    return check_name(uri), None, None


def load_model(uri: str) -> Any:
    """Load a registered model object: ``"name@alias"``, ``"name/3"`` or ``"name"`` (newest).

    Parameters
    ----------
    uri
        The model, with an alias or a version number.

    Returns
    -------
    object
        The model, loaded and verified against its content hash.

    Raises
    ------
    NotFoundError
        No such model, version or alias.
    ParameterError
        A malformed reference.

    Examples
    --------
    >>> from matinee import load_model                     # doctest: +SKIP
    >>> model = load_model("ranker@champion")              # doctest: +SKIP
    """
    name, version, alias = parse_model_uri(uri)
    return get_model(name, version, alias).load()


def versions(name: str) -> list[ModelVersion]:
    """Every version of a model, oldest first."""
    store = open_store()
    _require_model(store, name)
    aliases = store.metadata.model_aliases(name)
    return [
        _version_from_row(store, row, [a["alias"] for a in aliases if a["version"] == row["version"]])
        for row in store.metadata.model_versions(name)
    ]


def list_models() -> list[dict[str, Any]]:
    """Every registered model: name, version count, newest version, aliases, last registration."""
    store = open_store()
    out = []
    for row in store.metadata.list_models():
        aliases = {a["alias"]: a["version"] for a in store.metadata.model_aliases(row["name"])}
        out.append({**row, "aliases": aliases})
    return out


def set_alias(name: str, alias: str, version: int) -> ModelVersion:
    """Point ``alias`` of model ``name`` at ``version`` (creating or moving it), and record it."""
    return _move(name, alias, version, "set")


def promote(name: str, version: int, alias: str = "champion") -> ModelVersion:
    """Make ``version`` the model's ``alias`` (default ``champion``) in one transaction.

    Parameters
    ----------
    name
        The model.
    version
        The version to promote.
    alias
        The alias to move.

    Returns
    -------
    ModelVersion
        The promoted version.

    Raises
    ------
    NotFoundError
        No such model or version.
    """
    return _move(name, alias, version, "promote")


def advance_alias(name: str, alias: str, version: int, *, expected: int, action: str = "snapshot") -> ModelVersion:
    """Move ``alias`` to ``version`` only if it still points at ``expected``, in one transaction.

    What a process uses to publish work built on the version it loaded (an
    online-learning server's snapshot) without undoing a promotion someone made
    in the meantime.

    Raises
    ------
    ConflictError
        The alias no longer points at ``expected``; nothing changed.
    NotFoundError
        No such model or version.
    """
    return _move(name, alias, version, action, expected=check_version(expected))


def _move(name: str, alias: str, version: int, action: str, expected: int | None = None) -> ModelVersion:
    store = open_store()
    check_alias(alias)
    version = check_version(version)
    _require_model(store, name)
    store.metadata.move_alias(name, alias, version, action, store.settings.user, expected=expected)
    return get_model(name, version)


def delete_alias(name: str, alias: str) -> int:
    """Remove an alias; returns the version it pointed at."""
    store = open_store()
    check_alias(alias)
    _require_model(store, name)
    return store.metadata.delete_alias(name, alias, store.settings.user)


def rollback(name: str, alias: str = "champion") -> ModelVersion:
    """Move ``alias`` back to the version it pointed at before, in one transaction.

    Rolling back twice goes back two steps: a rollback undoes the change it
    rolls back, so the next one undoes the change before that.

    Raises
    ------
    NotFoundError
        No such model or alias, or the alias has no earlier version.
    """
    store = open_store()
    check_alias(alias)
    _require_model(store, name)
    _, to = store.metadata.rollback_alias(name, alias, store.settings.user)
    return get_model(name, to)


def alias_history(name: str, alias: str | None = None) -> list[AliasChange]:
    """Every change to the model's aliases (or to one), oldest first: who, when, from, to."""
    store = open_store()
    _require_model(store, name)
    return [
        AliasChange(r["name"], r["alias"], r["action"], r["from_version"], r["to_version"], r["user_name"], r["at"])
        for r in store.metadata.alias_history(name, None if alias is None else check_alias(alias))
    ]
