"""Experiments kept in the metadata database (the ``experiments`` table), and their lifecycle.

Portable SQL with ``:name`` parameters through the metadata store's
:class:`~matinee.core.storage.db.Database`, so the same statements run on SQLite
and PostgreSQL. Changes of status happen in one transaction under a lock, so
two processes starting experiments at once cannot both start overlapping ones.
Through a remote store (``MATINEE_TRACKING_URI``) every function asks the
server's REST API, which runs the same function on its own store.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from matinee.core.experiments.model import Arm, Experiment, check_name
from matinee.core.store import Store, open_store
from matinee.errors import ConflictError, NotFoundError, ParameterError

__all__ = ["create_experiment", "delete_experiment", "get_experiment", "list_experiments", "start_experiment",
           "stop_experiment"]

_COLUMNS = ("name", "kind", "endpoint", "model", "unit", "arms", "salt", "primary_metric", "guardrails", "owner",
            "description", "alpha", "status", "created_at", "started_at", "stopped_at", "extra")


def _remote(store: Store) -> Any:
    """The HTTP client of a remote store (``MATINEE_TRACKING_URI``), or None for a local one."""
    from matinee.core.storage.remote import RemoteMetadataStore

    return store.metadata.client if isinstance(store.metadata, RemoteMetadataStore) else None


def _lock(db: Any) -> None:
    """Serialize changes to experiments (PostgreSQL: an advisory lock; SQLite's write lock already does)."""
    lock = getattr(db, "lock", None)
    if lock is not None:
        lock("experiments")


def _row(experiment: Experiment) -> dict[str, Any]:
    data = experiment.as_dict()
    row = {c: data[c] for c in _COLUMNS}
    row["arms"] = json.dumps(data["arms"])
    row["guardrails"] = json.dumps(data["guardrails"])
    row["extra"] = json.dumps(data["extra"])
    return row


def _from_row(row: dict[str, Any]) -> Experiment:
    return Experiment(
        name=row["name"], model=row["model"], arms=tuple(Arm(a["alias"], float(a["weight"]))
                                                         for a in json.loads(row["arms"])),
        endpoint=row["endpoint"], kind=row["kind"], salt=row["salt"], primary_metric=row["primary_metric"],
        guardrails=tuple(json.loads(row["guardrails"] or "[]")), unit=row["unit"], owner=row["owner"] or "",
        description=row["description"] or "", alpha=float(row["alpha"]), status=row["status"],
        created_at=row["created_at"], started_at=row["started_at"], stopped_at=row["stopped_at"],
        extra=json.loads(row["extra"] or "{}"),
    )


def _check_aliases(experiment: Experiment) -> None:
    """Every arm must be an existing alias of the model (an unknown alias is an error naming it)."""
    from matinee.core.registry import get_model

    for alias in experiment.aliases:
        try:
            get_model(experiment.model, alias=alias)
        except NotFoundError as exc:
            raise NotFoundError(f"arm {experiment.model}@{alias}: {exc.message}", field="arms",
                                model=experiment.model, alias=alias) from None


def create_experiment(experiment: Experiment, *, check_aliases: bool = True) -> Experiment:
    """Store a new experiment as a ``draft``.

    Parameters
    ----------
    experiment
        The experiment (see :class:`~matinee.core.experiments.model.Experiment`).
    check_aliases
        Refuse arms whose alias the registry does not know (default).

    Returns
    -------
    Experiment
        As stored: ``status="draft"``, ``created_at`` set, ``owner`` defaulting to the user.

    Raises
    ------
    ConflictError
        An experiment of that name exists.
    NotFoundError
        The model or one of the arms' aliases is not registered.
    """
    store = open_store()
    experiment = dataclasses.replace(experiment, owner=experiment.owner or store.settings.user)
    client = _remote(store)
    if client is not None:
        answer = client.call("POST", "experiments", json_body={"experiment": experiment.as_dict(),
                                                              "check_aliases": check_aliases})
        return Experiment.from_dict(answer["experiment"])
    if check_aliases:
        _check_aliases(experiment)
    stored = dataclasses.replace(experiment, status="draft", created_at=time.time(), started_at=None,
                                 stopped_at=None)
    row = _row(stored)
    with store.metadata.db.transaction():
        _lock(store.metadata.db)
        if _select(store, stored.name) is not None:
            raise ConflictError(f"an experiment named {stored.name!r} exists already", experiment=stored.name)
        store.metadata.db.execute(
            f"INSERT INTO experiments ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)})", row)
    return stored


def _select(store: Store, name: str) -> dict[str, Any] | None:
    rows = store.metadata.db.query(f"SELECT {', '.join(_COLUMNS)} FROM experiments WHERE name = :name",
                                   {"name": name})
    return rows[0] if rows else None


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``.

    Raises
    ------
    NotFoundError
        No experiment has that name.
    """
    store = open_store()
    client = _remote(store)
    if client is not None:
        return Experiment.from_dict(client.call("GET", "experiments", check_name(name))["experiment"])
    row = _select(store, check_name(name))
    if row is None:
        raise NotFoundError(f"no experiment named {name!r}", experiment=name)
    return _from_row(row)


def list_experiments(status: str | None = None) -> list[Experiment]:
    """Every experiment (or those of one ``status``), newest first."""
    sql = f"SELECT {', '.join(_COLUMNS)} FROM experiments"
    params: dict[str, Any] = {}
    if status is not None:
        from matinee.core.experiments.model import STATUSES

        if status not in STATUSES:
            raise ParameterError(f"status must be one of {', '.join(STATUSES)}, not {status!r}", parameter="status")
        sql += " WHERE status = :status"
        params["status"] = status
    store = open_store()
    client = _remote(store)
    if client is not None:
        query = {"status": status} if status is not None else None
        return [Experiment.from_dict(e) for e in client.call("GET", "experiments", query=query)["experiments"]]
    rows = store.metadata.db.query(sql + " ORDER BY created_at DESC, name", params)
    return [_from_row(r) for r in rows]


def start_experiment(name: str, at: float | None = None) -> Experiment:
    """Start a draft experiment: its window opens now (or at ``at``, seconds since the epoch).

    Raises
    ------
    NotFoundError
        No such experiment.
    ConflictError
        It is not a draft, or another running experiment uses the same model on the
        same endpoint (their members' exposures could not be told apart).
    """
    store = open_store()
    client = _remote(store)
    if client is not None:
        return _remote_change(client, name, "start", at)
    db = store.metadata.db
    with db.transaction():
        _lock(db)
        experiment = get_experiment(name)
        if experiment.status != "draft":
            raise ConflictError(f"experiment {name!r} is {experiment.status}; only a draft can start",
                                experiment=name)
        for other in list_experiments("running"):
            if other.model == experiment.model and other.endpoint == experiment.endpoint:
                raise ConflictError(f"experiment {other.name!r} is running on {other.endpoint} with model "
                                    f"{other.model}; stop it before starting {name!r}", experiment=name)
        db.execute("UPDATE experiments SET status = 'running', started_at = :at WHERE name = :name",
                   {"at": time.time() if at is None else float(at), "name": name})
    return get_experiment(name)


def stop_experiment(name: str, at: float | None = None) -> Experiment:
    """Stop a running experiment: its window closes now (or at ``at``).

    Raises
    ------
    NotFoundError
        No such experiment.
    ConflictError
        It is not running.
    """
    store = open_store()
    client = _remote(store)
    if client is not None:
        return _remote_change(client, name, "stop", at)
    db = store.metadata.db
    with db.transaction():
        _lock(db)
        experiment = get_experiment(name)
        if experiment.status != "running":
            raise ConflictError(f"experiment {name!r} is {experiment.status}; only a running one can stop",
                                experiment=name)
        stop = time.time() if at is None else float(at)
        assert experiment.started_at is not None
        if stop < experiment.started_at:
            raise ParameterError("an experiment cannot stop before it started", parameter="at")
        db.execute("UPDATE experiments SET status = 'stopped', stopped_at = :at WHERE name = :name",
                   {"at": stop, "name": name})
    return get_experiment(name)


def delete_experiment(name: str) -> None:
    """Remove an experiment that never started (a draft).

    Raises
    ------
    NotFoundError
        No such experiment.
    ConflictError
        It has started: its record is kept for its analysis.
    """
    store = open_store()
    client = _remote(store)
    if client is not None:
        client.call("DELETE", "experiments", check_name(name))
        return
    with store.metadata.db.transaction():
        experiment = get_experiment(name)
        if experiment.status != "draft":
            raise ConflictError(f"experiment {name!r} is {experiment.status}; only a draft can be deleted",
                                experiment=name)
        store.metadata.db.execute("DELETE FROM experiments WHERE name = :name", {"name": name})


def _remote_change(client: Any, name: str, action: str, at: float | None) -> Experiment:
    body = {} if at is None else {"at": float(at)}
    answer = client.call("POST", "experiments", check_name(name), action, json_body=body)
    return Experiment.from_dict(answer["experiment"])
