"""The REST API's model registry, experiments, events, tokens and audit log routes (see :mod:`matinee.web.api`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from matinee.errors import ConflictError, MatineeError
from matinee.web._api_io import (
    ANALYSIS_TIMEOUT,
    EVENT_KINDS,
    MAX_INT,
    bad,
    body,
    found,
    integer,
    meta,
    number,
    ok,
    path_int,
    principal_name,
    query_int,
    query_text,
    query_time,
    refuse_constant,
    stored_key,
    stored_task,
    text,
    write,
)
from matinee.web.auth import HttpError, audit, requires


# -- models ---------------------------------------------------------------------------------------------
def _model(request: Request, *, new: bool = False) -> str:
    """The model named in the path; a name written (``new``) must be one the registry accepts."""
    name = str(text(request.path_params["name"], "name", max_len=255))
    if new:
        from matinee.core.registry import check_name

        check_name(name)
    return name


def _alias(request: Request, *, new: bool = False) -> str:
    alias = str(text(request.path_params["alias"], "alias", max_len=255))
    if new:
        from matinee.core.registry import check_alias

        check_alias(alias)
    return alias


@requires("reader")
async def list_models(request: Request) -> Response:
    return ok({"models": meta(request).list_models()})


@requires("reader")
async def model_versions(request: Request) -> Response:
    name = _model(request)
    return ok({"versions": meta(request).model_versions(name)})


@requires("reader")
async def model_version(request: Request) -> Response:
    name = _model(request)
    version = path_int(request, "version") if "version" in request.path_params else None
    what = f"model {name!r} version {version}" if version is not None else f"model {name!r}"
    return ok({"version": found(meta(request).model_version(name, version), what, "version")})


#: Optional text fields of a model version and their longest values (None: any length).
VERSION_TEXT = {"artifact_name": 255, "codec": 16, "dataset_hash": 255, "code_version": 64, "matinee_version": 64,
                "package_versions": None, "metrics": None, "tags": None, "description": None, "user_name": 255}


def _json_text(value: str | None, field: str, kind: type) -> None:
    """A JSON-encoded field of a model version (``metrics``, ``tags``, ...) must decode, to the right kind."""
    if value is None:
        return
    try:
        decoded: Any = json.loads(value, parse_constant=refuse_constant)
    except (ValueError, RecursionError):
        raise bad(field, f"must be JSON text (a {kind.__name__})") from None
    if not isinstance(decoded, kind):
        raise bad(field, f"must be JSON text of a {kind.__name__}")
    if isinstance(decoded, dict):
        values = list(decoded.values())
        if field == "metrics" and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise bad(field, "must map names to numbers")
        if field == "package_versions" and not all(isinstance(v, str) for v in values):
            raise bad(field, "must map package names to version strings")
    elif isinstance(decoded, list) and not all(isinstance(t, str) for t in decoded):
        raise bad(field, "must be a list of strings")


@requires("writer")
async def add_model_version(request: Request) -> Response:
    name = _model(request, new=True)
    data = await body(request)
    fields: dict[str, Any] = {}
    for column in ("run_id", "task_id"):
        fields[column] = integer(data.get(column), column, required=False)
    fields["size"] = integer(data.get("size"), "size", required=False, high=MAX_INT)
    fields["artifact_key"] = stored_key(data.get("artifact_key"), "artifact_key")
    created = data.get("created_at")
    fields["created_at"] = None if created is None else number(created, "created_at")
    for column, longest in VERSION_TEXT.items():
        fields[column] = text(data.get(column), column, required=False, empty=True, max_len=longest or 1 << 20)
    for column, kind in (("metrics", dict), ("tags", list), ("package_versions", dict)):
        _json_text(fields[column], column, kind)
    if fields["run_id"] is not None:
        found(meta(request).get_run(fields["run_id"]), f"run {fields['run_id']}", "run_id")
    if fields["task_id"] is not None:
        stored_task(request, fields["task_id"])
    version = await write(meta(request).add_model_version, name, fields)
    return ok({"name": name, "version": version}, 201)


@requires("reader")
async def model_aliases(request: Request) -> Response:
    return ok({"aliases": meta(request).model_aliases(_model(request))})


@requires("reader")
async def model_alias(request: Request) -> Response:
    name, alias = _model(request), _alias(request)
    return ok({"alias": found(meta(request).model_alias(name, alias), f"alias {name}@{alias}", "alias")})


@requires("reader")
async def alias_history(request: Request) -> Response:
    name = _model(request)
    return ok({"history": meta(request).alias_history(name, query_text(request, "alias"))})


@requires("admin")
async def move_alias(request: Request) -> Response:
    name, alias = _model(request), _alias(request, new=True)
    data = await body(request)
    version = integer(data.get("version"), "version", low=1)
    expected = integer(data.get("expected"), "expected", required=False, low=1)
    action = text(data.get("action", "move"), "action", max_len=16)
    if not action.isascii() or not action.replace("_", "").isalpha() or action != action.lower() \
            or action in ("rollback", "delete"):
        raise bad("action", "must be a lowercase word (set, move, promote, ...); rollback and delete have routes")
    user = text(data.get("user", principal_name(request)), "user", max_len=255)
    target = f"{name}@{alias}"
    try:
        previous = await write(meta(request).move_alias, name, alias, version, action, user, expected)
    except MatineeError as exc:
        if isinstance(exc, ConflictError):
            exc.fields["field"] = "expected"
        await audit(request, "alias.move", target, outcome="refused", detail=exc.message)
        raise
    await audit(request, "alias.move", target, outcome="ok", detail=f"{previous} -> {version} by {user}")
    return ok({"name": name, "alias": alias, "version": version, "previous": previous})


@requires("admin")
async def delete_alias(request: Request) -> Response:
    name, alias = _model(request), _alias(request)
    user = query_text(request, "user") or principal_name(request)
    target = f"{name}@{alias}"
    try:
        previous = await write(meta(request).delete_alias, name, alias, user)
    except MatineeError as exc:
        await audit(request, "alias.delete", target, outcome="refused", detail=exc.message)
        raise
    await audit(request, "alias.delete", target, outcome="ok", detail=f"was {previous}, by {user}")
    return ok({"name": name, "alias": alias, "previous": previous})


@requires("admin")
async def rollback_alias(request: Request) -> Response:
    name, alias = _model(request), _alias(request)
    data = await body(request)
    user = text(data.get("user", principal_name(request)), "user", max_len=255)
    target = f"{name}@{alias}"
    try:
        old, new = await write(meta(request).rollback_alias, name, alias, user)
    except MatineeError as exc:
        await audit(request, "alias.rollback", target, outcome="refused", detail=exc.message)
        raise
    await audit(request, "alias.rollback", target, outcome="ok", detail=f"{old} -> {new} by {user}")
    return ok({"name": name, "alias": alias, "from": old, "to": new})


# -- experiments and events --------------------------------------------------------------------------------
def _events_path(request: Request) -> Path:
    return Path(request.app.state.settings.home) / "events" / "events.db"


@requires("reader")
async def list_experiments(request: Request) -> Response:
    from matinee.core.experiments.store import list_experiments as listed

    status = query_text(request, "status")
    found_ = await run_in_threadpool(listed, status)
    return ok({"experiments": [e.as_dict() for e in found_]})


@requires("reader")
async def get_experiment(request: Request) -> Response:
    from matinee.core.experiments.store import get_experiment as got

    experiment = await write(got, str(text(request.path_params["name"], "name", max_len=255)), field="name")
    return ok({"experiment": experiment.as_dict()})


def _experiment_name(request: Request) -> str:
    from matinee.core.experiments.model import check_name

    return check_name(str(text(request.path_params["name"], "name", max_len=255)))


@requires("writer")
async def create_experiment(request: Request) -> Response:
    """A new draft experiment from the ``as_dict`` form (``owner`` defaulting to the caller)."""
    from matinee.core.experiments.model import Experiment
    from matinee.core.experiments.store import create_experiment as create

    data = await body(request)
    fields = data.get("experiment")
    if not isinstance(fields, dict):
        raise bad("experiment", "must be an object: the experiment's fields (name, model, arms, ...)")
    check = data.get("check_aliases", True)
    if not isinstance(check, bool):
        raise bad("check_aliases", "must be true or false")
    experiment = Experiment.from_dict({**fields, "owner": fields.get("owner") or principal_name(request)})
    stored = await write(create, experiment, check_aliases=check, field="name")
    await audit(request, "experiment.create", stored.name, outcome="ok")
    return ok({"experiment": stored.as_dict()}, status=201)


@requires("writer")
async def change_experiment(request: Request) -> Response:
    """Start or stop an experiment, as the path's last segment says (``at``: seconds since the epoch, default now)."""
    from matinee.core.experiments.store import start_experiment, stop_experiment

    name, action = _experiment_name(request), request.url.path.rsplit("/", 1)[-1]
    data = await body(request)
    at = None if data.get("at") is None else number(data["at"], "at")
    changed = await write(start_experiment if action == "start" else stop_experiment, name, at, field="name")
    await audit(request, f"experiment.{action}", name, outcome="ok")
    return ok({"experiment": changed.as_dict()})


@requires("writer")
async def delete_experiment(request: Request) -> Response:
    from matinee.core.experiments.store import delete_experiment as delete

    name = _experiment_name(request)
    await write(delete, name, field="name")
    await audit(request, "experiment.delete", name, outcome="ok")
    return ok({"name": name, "deleted": True})


@requires("reader")
async def experiment_analysis(request: Request) -> Response:
    from matinee.core.experiments.analysis import analyze

    name = str(text(request.path_params["name"], "name", max_len=255))
    sequential = request.query_params.get("sequential", "0") in ("1", "true")
    work = write(analyze, name, _events_path(request), sequential=sequential, field="name")
    try:
        analysis = await asyncio.wait_for(work, ANALYSIS_TIMEOUT)
    except asyncio.TimeoutError:
        raise HttpError(504, f"the analysis of {name!r} took over {ANALYSIS_TIMEOUT:.0f} s; "
                             "run `matinee experiments analyze` instead", field="name") from None
    return ok({"analysis": analysis.as_dict()})


@requires("reader")
async def list_events(request: Request) -> Response:
    """The newest decisions or feedback events of the event log, filtered (:mod:`matinee.web.eventdata`)."""
    from matinee.web.eventdata import EVENT_FILTERS, recent_events

    kind = query_text(request, "kind") or "decision"
    if kind not in EVENT_KINDS:
        raise bad("kind", "must be decision or feedback")
    limit = query_int(request, "limit", 100, low=1, high=10_000)
    filters = {name: value for name in EVENT_FILTERS if (value := query_text(request, name)) is not None}
    rows = await run_in_threadpool(recent_events, _events_path(request), kind, filters, limit)
    return ok({"kind": kind, "events": rows or []})


@requires("reader")
async def bandits(request: Request) -> Response:
    """What the bandits page shows: reward over time per policy, and off-policy estimates with intervals."""
    from matinee.web.eventdata import bandit_summary

    since, endpoint = query_time(request, "since"), query_text(request, "endpoint")
    summary = await run_in_threadpool(bandit_summary, request.app.state.store, since, endpoint)
    return ok({"summary": summary})


# -- tokens and the audit log -----------------------------------------------------------------------------
def _token_row(row: dict[str, Any]) -> dict[str, Any]:
    from matinee.web.auth import token_state

    return {**{k: v for k, v in row.items() if k != "secret_hash"}, "state": token_state(row)}


@requires("admin")
async def list_tokens(request: Request) -> Response:
    return ok({"tokens": [_token_row(t) for t in meta(request).list_tokens()]})


@requires("admin")
async def create_token(request: Request) -> Response:
    from matinee.web.auth import check_role, check_token_name, parse_duration
    from matinee.web.auth import create_token as created

    data = await body(request)
    name = check_token_name(text(data.get("name"), "name", max_len=64))
    role = check_role(data.get("role"))
    expires = parse_duration(text(data.get("expires"), "expires", required=False, max_len=40))
    try:
        token, row = await run_in_threadpool(created, meta(request), name, role, principal_name(request), expires)
    except MatineeError as exc:
        await audit(request, "token.create", name, outcome="refused", detail=exc.message)
        raise
    await audit(request, "token.create", name, outcome="ok", detail=f"role {role}")
    return ok({"token": token, **_token_row(row)}, 201)


@requires("admin")
async def revoke_token(request: Request) -> Response:
    name = str(text(request.path_params["name"], "name", max_len=200))
    try:
        row = await run_in_threadpool(meta(request).revoke_token, name)
    except MatineeError as exc:
        await audit(request, "token.revoke", name, outcome="refused", detail=exc.message)
        raise
    await audit(request, "token.revoke", name, outcome="ok")
    return ok(_token_row(row))


@requires("admin")
async def audit_log(request: Request) -> Response:
    outcome = query_text(request, "outcome")
    rows = meta(request).audit_log(limit=query_int(request, "limit", 100, low=1, high=1000),
                                   before=query_int(request, "before", None), outcome=outcome)
    return ok({"entries": rows})
