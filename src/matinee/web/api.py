"""The REST API, ``/api/v1``: JSON in and out, every route guarded by a role.

Reads cover what the dashboard shows; writes are what a remote client store
(:mod:`matinee.core.storage.remote`) needs to run flows, track and register
models against this server. The routes mirror :class:`~matinee.core.storage.metadata.MetadataStore`
method for method, so the remote store is a thin translation.

Request values are checked here, before they reach the store, and a bad one is
a 4xx naming the field (``points.3.value``). Artifact bytes are addressed by
content key only: a key must be 64 hex digits before anything touches the blob
store, and an upload must hash to its key.

This module holds runs, metrics, tasks, artifacts and blobs, and the route
table; :mod:`matinee.web._api_registry` the model registry, experiments,
events, tokens and the audit log; :mod:`matinee.web._api_io` the request checks
and JSON answers they share.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from matinee.core.artifacts.hashing import ContentHasher
from matinee.core.artifacts.store import ArtifactRef
from matinee.core.storage.metadata import foreach_key
from matinee.errors import NotFoundError
from matinee.web._api_io import (
    CHUNK,
    MAX_ID,
    MAX_INT,
    NON_FINITE,
    PREFIX,
    bad,
    blobs,
    body,
    content_key,
    found,
    ids,
    integer,
    is_content_key,
    json_value,
    meta,
    number,
    ok,
    path_int,
    principal_name,
    query_int,
    query_text,
    query_time,
    ref_dict,
    status_value,
    stored_key,
    stored_task,
    text,
    texts,
    write,
)
from matinee.web._api_registry import (
    add_model_version,
    alias_history,
    audit_log,
    bandits,
    change_experiment,
    create_experiment,
    create_token,
    delete_alias,
    delete_experiment,
    experiment_analysis,
    get_experiment,
    list_events,
    list_experiments,
    list_models,
    list_tokens,
    model_alias,
    model_aliases,
    model_version,
    model_versions,
    move_alias,
    revoke_token,
    rollback_alias,
)
from matinee.web.auth import HttpError, public, requires


# -- health and the document ---------------------------------------------------------------------
@public
async def health(request: Request) -> Response:
    from matinee import __version__

    return ok({"status": "ok", "version": __version__})


@public
async def openapi_document(request: Request) -> Response:
    from matinee.web.openapi import document

    return JSONResponse(document())


# -- runs -----------------------------------------------------------------------------------------
SORTS = ("id", "created", "finished")


@requires("reader")
async def list_runs(request: Request) -> Response:
    store = meta(request)
    flow, tag = query_text(request, "flow"), query_text(request, "tag")
    if request.query_params.get("plain") == "1":  # rows exactly as the store lists them: newest first, by id
        limit = query_int(request, "limit", None, low=0)
        rows = await run_in_threadpool(store.list_runs, flow, tag=tag, kind=query_text(request, "kind"),
                                       limit=limit, before=query_int(request, "before", None))
        return ok({"runs": rows, "total": len(rows), "limit": limit, "offset": 0})
    limit = query_int(request, "limit", 50, low=1, high=1000)
    status = query_text(request, "status")
    if status is not None:
        status_value(status)
    sort = query_text(request, "sort") or "id"
    if sort not in SORTS and not (sort.startswith("metric:") and len(sort) > len("metric:")):
        raise bad("sort", "must be id, created, finished or metric:<name>")
    order = query_text(request, "order") or "desc"
    if order not in ("asc", "desc"):
        raise bad("order", "must be asc or desc")
    rows, total = store.search_runs(
        flow=flow, status=status, tag=tag, user=query_text(request, "user"), since=query_time(request, "since"),
        until=query_time(request, "until"), sort=sort, order=order, limit=limit,
        offset=query_int(request, "offset", 0, high=10**9),
    )
    if request.query_params.get("metrics", "1") != "0":
        latest = store.latest_metrics([r["id"] for r in rows]) if rows else {}
        for row in rows:
            row["metrics"] = latest.get(row["id"], {})
    return ok({"runs": rows, "total": total, "limit": limit, "offset": query_int(request, "offset", 0)})


@requires("reader")
async def get_run(request: Request) -> Response:
    run_id = path_int(request, "run_id")
    store = meta(request)
    run = found(store.get_run(run_id), f"run {run_id}", "run_id")
    latest = store.latest_metrics([run_id]).get(run_id, {})
    return ok({"run": run, "params": store.run_params(run_id), "tags": store.run_tags(run_id), "metrics": latest})


@requires("writer")
async def create_run(request: Request) -> Response:
    data = await body(request)
    args = dict(
        kind=text(data.get("kind", "flow"), "kind", max_len=16),
        code_hash=text(data.get("code_hash"), "code_hash", required=False, max_len=64),
        origin_run_id=integer(data.get("origin_run_id"), "origin_run_id", required=False),
        executor=text(data.get("executor"), "executor", required=False, max_len=16),
        tags=texts(data.get("tags"), "tags"),
        system_tags=texts(data.get("system_tags"), "system_tags"),
        params=_params(data.get("params")),
    )
    flow = text(data.get("flow_name"), "flow_name", max_len=255)
    user = text(data.get("user", principal_name(request)), "user", max_len=255)
    if args["origin_run_id"] is not None:
        found(meta(request).get_run(args["origin_run_id"]), f"run {args['origin_run_id']}", "origin_run_id")
    # the client's process, so its run is reaped when that process dies
    args["pid"] = integer(data.get("pid"), "pid", required=False, high=1 << 31)
    args["hostname"] = text(data.get("hostname"), "hostname", required=False, max_len=255)
    run_id = await write(meta(request).create_run, flow, user, **args)
    return ok({"run_id": run_id}, 201)


def _params(value: Any, field: str = "params") -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad(field, "must be an object of name -> JSON value")
    return {text(k, f"{field}.{k}", max_len=255): json_value(v, f"{field}.{k}") for k, v in value.items()}


async def _existing_run(request: Request) -> int:
    run_id = path_int(request, "run_id")
    found(meta(request).get_run(run_id), f"run {run_id}", "run_id")
    return run_id


@requires("writer")
async def finish_run(request: Request) -> Response:
    run_id = await _existing_run(request)
    data = await body(request)
    status = status_value(data.get("status"))
    error = text(data.get("error"), "error", required=False, empty=True, max_len=1 << 20)
    await write(meta(request).finish_run, run_id, status, error)
    return ok({"run_id": run_id, "status": status})


@requires("writer")
async def heartbeat(request: Request) -> Response:
    run_id = await _existing_run(request)
    meta(request).heartbeat(run_id)
    return ok({"run_id": run_id})


@requires("reader")
async def run_tags(request: Request) -> Response:
    run_id = await _existing_run(request)
    return ok({"tags": meta(request).run_tags(run_id)})


@requires("writer")
async def change_tags(request: Request) -> Response:
    run_id = await _existing_run(request)
    data = await body(request)
    add, remove = texts(data.get("add"), "add"), texts(data.get("remove"), "remove")
    if add:
        await write(meta(request).add_tags, run_id, add)
    if remove:
        await write(meta(request).remove_tags, run_id, remove)
    return ok({"tags": meta(request).run_tags(run_id)})


@requires("reader")
async def tags_of_runs(request: Request) -> Response:
    data = await body(request)
    tags = meta(request).tags_of_runs(ids(data.get("run_ids"), "run_ids"))
    return ok({"tags": {str(k): v for k, v in tags.items()}})


@requires("reader")
async def run_params(request: Request) -> Response:
    run_id = await _existing_run(request)
    return ok({"params": meta(request).run_params(run_id)})


@requires("writer")
async def log_params(request: Request) -> Response:
    run_id = await _existing_run(request)
    params = _params((await body(request)).get("params")) or {}
    if params:
        await write(meta(request).log_params, run_id, params)
    return ok({"run_id": run_id, "logged": len(params)})


@requires("reader")
async def list_flows(request: Request) -> Response:
    return ok({"flows": meta(request).list_flows()})


# -- metrics -------------------------------------------------------------------------------------
@requires("writer")
async def log_metrics(request: Request) -> Response:
    """``{"points": [[task_id, name, step, value, ts], ...]}``; ``ts`` may be null (now).

    ``value`` is a number or ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (JSON has no such numbers).
    """
    run_id = await _existing_run(request)
    points = (await body(request)).get("points")
    if not isinstance(points, list):
        raise bad("points", "must be a list of [task_id, name, step, value, ts]")
    now = time.time()
    rows = []
    for i, point in enumerate(points):
        if not isinstance(point, list) or len(point) != 5:
            raise bad(f"points.{i}", "must be [task_id, name, step, value, ts]")
        task_id, name, step, value, ts = point
        if task_id is not None and (type(task_id) is not int or not 0 <= task_id <= MAX_ID):
            integer(task_id, f"points.{i}.task_id")
        if type(name) is not str or not name or len(name) > 255:
            text(name, f"points.{i}.name", max_len=255)
        if step is not None and (type(step) is not int or abs(step) > MAX_INT):
            integer(step, f"points.{i}.step", low=-MAX_INT, high=MAX_INT)
        if type(value) is not float or not math.isfinite(value):
            if isinstance(value, str) and value in NON_FINITE:  # what JSON cannot hold travels as text
                value = NON_FINITE[value]
            else:
                value = number(value, f"points.{i}.value")
        if ts is None:
            ts = now
        elif type(ts) is not float or not 0 <= ts < 1e11:
            ts = number(ts, f"points.{i}.ts")
            if not 0 <= ts < 1e11:
                raise bad(f"points.{i}.ts", "must be epoch seconds")
        rows.append((run_id, task_id, name, step, value, ts))
    names = {row[2] for row in rows}
    for name in names:  # once per distinct name: strings the database cannot store
        text(name, "points.name", max_len=255)
    tasks = {row[1] for row in rows if row[1] is not None}
    store = meta(request)
    for task_id in tasks:
        task = store.get_task(task_id)
        if task is None or task["run_id"] != run_id:
            raise bad("points.task_id", f"task {task_id} is not a task of run {run_id}")
    if rows:
        await write(store.log_metrics, rows)
    return ok({"run_id": run_id, "logged": len(rows)})


@requires("reader")
async def run_metrics(request: Request) -> Response:
    run_id = await _existing_run(request)
    return ok({"metrics": meta(request).metrics(run_id, query_text(request, "name"))})


@requires("reader")
async def latest_metrics(request: Request) -> Response:
    data = await body(request)
    latest = meta(request).latest_metrics(ids(data.get("run_ids"), "run_ids"))
    return ok({"latest": {str(k): v for k, v in latest.items()}})


@requires("reader")
async def metric_names(request: Request) -> Response:
    run_ids = None
    if request.method == "POST":
        data = await body(request)
        run_ids = None if data.get("run_ids") is None else ids(data.get("run_ids"), "run_ids")
    return ok({"names": meta(request).metric_names(run_ids)})


# -- tasks ---------------------------------------------------------------------------------------
def _stack(value: Any, field: str = "foreach_stack") -> list[list[Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(field, "must be a list of [step, index, ...] frames")
    out = []
    for i, frame in enumerate(value):
        if not isinstance(frame, list) or len(frame) < 2:
            raise bad(f"{field}.{i}", "must be a list [step, index, ...]")
        out.append(json_value(frame, f"{field}.{i}"))
    if len(foreach_key(out)) > 1024:
        raise bad(field, "is too long (its position key is over 1024 characters)")
    return out


@requires("writer")
async def create_task(request: Request) -> Response:
    run_id = path_int(request, "run_id")  # a missing run: the database refuses it (409), as in the local store
    data = await body(request)
    step = text(data.get("step"), "step", max_len=255)
    stack = _stack(data.get("foreach_stack"))
    inputs = ids(data.get("input_paths", []), "input_paths")
    task_id = await write(meta(request).create_task, run_id, step, stack, inputs, field="step")
    return ok({"task_id": task_id}, 201)


@requires("writer")
async def clone_task(request: Request) -> Response:
    run_id = await _existing_run(request)
    data = await body(request)
    origin = stored_task(request, integer(data.get("origin_task_id"), "origin_task_id"), "origin_task_id")
    stack = _stack(data.get("foreach_stack"))
    inputs = ids(data.get("input_paths", []), "input_paths")
    task_id = await write(meta(request).clone_task, run_id, origin, stack, inputs, field="foreach_stack")
    return ok({"task_id": task_id}, 201)


@requires("reader")
async def list_tasks(request: Request) -> Response:
    run_id = await _existing_run(request)
    return ok({"tasks": meta(request).list_tasks(run_id, query_text(request, "step"))})


@requires("reader")
async def get_task(request: Request) -> Response:
    return ok({"task": stored_task(request, path_int(request, "task_id"))})


@requires("writer")
async def start_attempt(request: Request) -> Response:
    task_id = path_int(request, "task_id")
    stored_task(request, task_id)
    attempt = integer((await body(request)).get("attempt"), "attempt", high=1_000_000)
    await write(meta(request).start_attempt, task_id, attempt, field="attempt")
    return ok({"task_id": task_id, "attempt": attempt}, 201)


@requires("writer")
async def finish_attempt(request: Request) -> Response:
    task_id, attempt = path_int(request, "task_id"), path_int(request, "attempt")
    stored_task(request, task_id)
    data = await body(request)
    fields = {name: text(data.get(name), name, required=False, empty=True, max_len=1 << 20)
              for name in ("exception", "traceback")}
    for name in ("stdout_key", "stderr_key"):
        fields[name] = None if data.get(name) is None else stored_key(data.get(name), name)
    status = status_value(data.get("status"))
    await write(meta(request).finish_attempt, task_id, attempt, status, **fields)
    return ok({"task_id": task_id, "attempt": attempt, "status": status})


def _refs(value: Any, field: str = "artifacts") -> dict[str, ArtifactRef]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(field, "must be an object of name -> {key, codec, size}")
    refs = {}
    for name, ref in value.items():
        where = f"{field}.{name}"
        text(name, where, max_len=255)
        if not isinstance(ref, dict):
            raise bad(where, "must be {key, codec, size}")
        key = stored_key(ref.get("key"), f"{where}.key")
        refs[name] = ArtifactRef(key, text(ref.get("codec"), f"{where}.codec", max_len=16),
                                 integer(ref.get("size"), f"{where}.size", high=MAX_INT))
    return refs


@requires("writer")
async def finish_task(request: Request) -> Response:
    task_id = path_int(request, "task_id")
    stored_task(request, task_id)
    data = await body(request)
    status = status_value(data.get("status"))
    transition = data.get("transition")
    if transition is not None:
        if not isinstance(transition, dict):
            raise bad("transition", "must be an object or null")
        transition = json_value(transition, "transition")
    refs = _refs(data.get("artifacts"))
    await write(meta(request).finish_task, task_id, status, transition=transition, artifacts=refs, field="artifacts")
    return ok({"task_id": task_id, "status": status})


@requires("reader")
async def task_artifacts(request: Request) -> Response:
    task_id = path_int(request, "task_id")
    stored_task(request, task_id)
    refs = meta(request).task_artifacts(task_id)
    return ok({"artifacts": {name: ref_dict(ref) for name, ref in refs.items()}})


@requires("reader")
async def task_attempts(request: Request) -> Response:
    task_id = path_int(request, "task_id")
    stored_task(request, task_id)
    return ok({"attempts": meta(request).task_attempts(task_id)})


def _artifact(request: Request) -> ArtifactRef:
    """The artifact named in the path, found through the database (never through a path)."""
    run_id, task_id = path_int(request, "run_id"), path_int(request, "task_id")
    task = stored_task(request, task_id)
    if task["run_id"] != run_id:
        raise NotFoundError(f"task {task_id} is not a task of run {run_id}", field="task_id")
    name = str(request.path_params["name"])
    ref = meta(request).task_artifacts(task_id).get(name)
    return found(ref, f"artifact {name!r} of task {task_id}", "name")


@requires("reader")
async def artifact_preview(request: Request) -> Response:
    """The artifact's reference and a safe preview (:mod:`matinee.web.previews`: no stored code ever runs)."""
    from matinee.web.previews import preview

    ref = _artifact(request)
    out: dict[str, Any] = {"name": request.path_params["name"], **ref_dict(ref)}
    if is_content_key(ref.key):
        out["preview"] = await run_in_threadpool(preview, blobs(request), ref)
    else:
        out["preview"] = {"kind": "unavailable", "summary": f"{ref.key!r} is not a content key"}
    return ok(out)


@requires("reader")
async def artifact_download(request: Request) -> Response:
    ref = _artifact(request)
    return await _stream_blob(request, ref.key, f"{request.path_params['name']}.{ref.codec}")


# -- blobs -------------------------------------------------------------------------------------------
@requires("reader")
async def get_blob(request: Request) -> Response:
    key = content_key(request)
    if request.method == "HEAD":
        exists = await run_in_threadpool(blobs(request).exists, key)
        return Response(status_code=200 if exists else 404)
    return await _stream_blob(request, key, key)


async def _stream_blob(request: Request, key: str, filename: str) -> Response:
    if not is_content_key(key):
        raise NotFoundError(f"{key!r} is not a content key: nothing is stored under it", field="key")
    fh = await run_in_threadpool(blobs(request).open, key)
    headers = {"Content-Disposition": f'attachment; filename="{_safe_filename(filename)}"'}
    with contextlib.suppress(AttributeError, OSError, ValueError):  # not a local file: no length to give
        headers["Content-Length"] = str(os.fstat(fh.fileno()).st_size)
    return StreamingResponse(_chunks(fh), media_type="application/octet-stream", headers=headers)


def _safe_filename(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:200] or "artifact"


def _chunks(fh: Any) -> Iterator[bytes]:
    with fh:
        while chunk := fh.read(CHUNK):
            yield chunk


@requires("writer")
async def claim_blob(request: Request) -> Response:
    key = content_key(request)
    return ok({"key": key, "exists": await run_in_threadpool(blobs(request).claim, key)})


@requires("writer")
async def put_blob(request: Request) -> Response:
    """Store the body under ``key`` if it hashes to ``key``: spooled while hashed, then written once."""
    key = content_key(request)
    limit = int(getattr(request.app.state, "max_upload_bytes", 1 << 30))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"the upload is over the server's limit of {limit} bytes", field="body")
    hasher = ContentHasher()
    size = 0
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"the upload is over the server's limit of {limit} bytes", field="body")
            hasher.update(chunk)
            spool.write(chunk)
        digest = hasher.hexdigest()
        if digest != key:
            raise bad("key", f"the body hashes to {digest}, not to the key")
        store = blobs(request)
        created = False
        if not await run_in_threadpool(store.claim, key):
            spool.seek(0)
            await run_in_threadpool(store.put, key, iter(lambda: spool.read(CHUNK), b""))
            created = True
    return ok({"key": key, "size": size, "created": created}, 201 if created else 200)


# -- the table ------------------------------------------------------------------------------------------
def _route(path: str, handler: Callable[..., Any], methods: list[str]) -> Route:
    return Route(PREFIX + path, handler, methods=methods)


def routes() -> list[BaseRoute]:
    """Every ``/api/v1`` route, in the order they are matched."""
    table: list[BaseRoute] = [
        _route("/health", health, ["GET"]),
        _route("/openapi.json", openapi_document, ["GET"]),
        _route("/runs", list_runs, ["GET"]),
        _route("/runs", create_run, ["POST"]),
        _route("/runs/tags", tags_of_runs, ["POST"]),
        _route("/runs/{run_id:int}", get_run, ["GET"]),
        _route("/runs/{run_id:int}/finish", finish_run, ["POST"]),
        _route("/runs/{run_id:int}/heartbeat", heartbeat, ["POST"]),
        _route("/runs/{run_id:int}/tags", run_tags, ["GET"]),
        _route("/runs/{run_id:int}/tags", change_tags, ["POST"]),
        _route("/runs/{run_id:int}/params", run_params, ["GET"]),
        _route("/runs/{run_id:int}/params", log_params, ["POST"]),
        _route("/runs/{run_id:int}/metrics", run_metrics, ["GET"]),
        _route("/runs/{run_id:int}/metrics", log_metrics, ["POST"]),
        _route("/runs/{run_id:int}/tasks", list_tasks, ["GET"]),
        _route("/runs/{run_id:int}/tasks", create_task, ["POST"]),
        _route("/runs/{run_id:int}/tasks/clone", clone_task, ["POST"]),
        _route("/runs/{run_id:int}/tasks/{task_id:int}/artifacts/{name}", artifact_preview, ["GET"]),
        _route("/runs/{run_id:int}/tasks/{task_id:int}/artifacts/{name}/download", artifact_download, ["GET"]),
        _route("/flows", list_flows, ["GET"]),
        _route("/metrics/latest", latest_metrics, ["POST"]),
        _route("/metrics/names", metric_names, ["GET", "POST"]),
        _route("/tasks/{task_id:int}", get_task, ["GET"]),
        _route("/tasks/{task_id:int}/attempts", task_attempts, ["GET"]),
        _route("/tasks/{task_id:int}/attempts", start_attempt, ["POST"]),
        _route("/tasks/{task_id:int}/attempts/{attempt:int}/finish", finish_attempt, ["POST"]),
        _route("/tasks/{task_id:int}/finish", finish_task, ["POST"]),
        _route("/tasks/{task_id:int}/artifacts", task_artifacts, ["GET"]),
        _route("/blobs/{key}", get_blob, ["GET", "HEAD"]),
        _route("/blobs/{key}", put_blob, ["PUT"]),
        _route("/blobs/{key}/claim", claim_blob, ["POST"]),
        _route("/models", list_models, ["GET"]),
        _route("/models/{name}/versions", model_versions, ["GET"]),
        _route("/models/{name}/versions", add_model_version, ["POST"]),
        _route("/models/{name}/versions/latest", model_version, ["GET"]),
        _route("/models/{name}/versions/{version:int}", model_version, ["GET"]),
        _route("/models/{name}/aliases", model_aliases, ["GET"]),
        _route("/models/{name}/aliases/{alias}", model_alias, ["GET"]),
        _route("/models/{name}/aliases/{alias}", move_alias, ["PUT"]),
        _route("/models/{name}/aliases/{alias}", delete_alias, ["DELETE"]),
        _route("/models/{name}/aliases/{alias}/rollback", rollback_alias, ["POST"]),
        _route("/models/{name}/history", alias_history, ["GET"]),
        _route("/experiments", list_experiments, ["GET"]),
        _route("/experiments", create_experiment, ["POST"]),
        _route("/experiments/{name}", get_experiment, ["GET"]),
        _route("/experiments/{name}", delete_experiment, ["DELETE"]),
        _route("/experiments/{name}/start", change_experiment, ["POST"]),
        _route("/experiments/{name}/stop", change_experiment, ["POST"]),
        _route("/experiments/{name}/analysis", experiment_analysis, ["GET"]),
        _route("/events", list_events, ["GET"]),
        _route("/bandits", bandits, ["GET"]),
        _route("/tokens", list_tokens, ["GET"]),
        _route("/tokens", create_token, ["POST"]),
        _route("/tokens/{name}", revoke_token, ["DELETE"]),
        _route("/audit", audit_log, ["GET"]),
    ]
    return table
