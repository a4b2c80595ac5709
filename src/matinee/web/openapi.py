"""The OpenAPI 3.1 document of ``/api/v1``, served at ``/api/v1/openapi.json``.

Built from small helpers so each operation reads as one line of intent: its
path, method, role, parameters, request body and answer. A test checks that the
document and :func:`matinee.web.api.routes` name the same operations.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

Schema = dict[str, Any]

MAX_INT = (1 << 63) - 1
MAX_ID = (1 << 31) - 1
ID: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
SIZE: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_INT}
NAME: Schema = {"type": "string", "minLength": 1, "maxLength": 255}
STORED_KEY: Schema = {"type": "string", "pattern": "^[0-9A-Za-z_-]{1,64}$",
                      "description": "a content key (64 hex digits) as recorded"}
TEXT: Schema = {"type": ["string", "null"], "maxLength": 1_000_000}
KEY: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
TIME: Schema = {"type": "number"}
STATUS: Schema = {"type": "string", "enum": ["running", "completed", "failed"]}
#: A metric value: a number, or what JSON cannot hold as its text (a diverged loss is NaN), both ways.
METRIC_VALUE: Schema = {"anyOf": [{"type": "number"}, {"type": "string", "enum": ["Infinity", "-Infinity", "NaN"]}]}
ANY: Schema = {}


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (), *, closed: bool = False) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


COMPONENTS: dict[str, Schema] = {
    "Error": obj({"error": {"type": "string"}, "detail": {"type": "string"}, "field": {"type": "string"}},
                 ("error", "detail")),
    "Run": obj({"id": ID, "flow_name": {"type": "string"}, "kind": {"type": "string"}, "status": STATUS,
                "user_name": {"type": "string"}, "created_at": TIME, "finished_at": nullable(TIME),
                "heartbeat_at": nullable(TIME), "code_hash": nullable({"type": "string"}),
                "origin_run_id": nullable(ID), "executor": nullable({"type": "string"}),
                "error": nullable({"type": "string"}), "tags": array({"type": "string"}),
                "metrics": {"type": "object", "additionalProperties": METRIC_VALUE},
                "sort_value": METRIC_VALUE},
               ("id", "flow_name", "status")),
    "Tag": obj({"tag": {"type": "string"}, "system": {"type": "integer"}}, ("tag", "system")),
    "Task": obj({"id": ID, "run_id": ID, "step_name": {"type": "string"}, "status": STATUS,
                 "foreach_key": {"type": "string"}, "foreach_stack": {"type": "string"},
                 "input_paths": {"type": "string"}, "attempts": {"type": "integer"}}, ("id", "run_id", "step_name")),
    "Attempt": obj({"task_id": ID, "attempt": {"type": "integer"}, "status": {"type": "string"}}),
    "ArtifactRef": obj({"key": STORED_KEY, "codec": {"type": "string", "minLength": 1, "maxLength": 16},
                        "size": SIZE}, ("key", "codec", "size"), closed=True),
    "Metric": obj({"task_id": nullable(ID), "name": {"type": "string"}, "step": nullable({"type": "integer"}),
                   "value": METRIC_VALUE,
                   "ts": TIME}, ("name", "value")),
    "ModelVersion": obj({"name": {"type": "string"}, "version": {"type": "integer"}, "run_id": nullable(ID),
                         "artifact_key": nullable({"type": "string"}), "created_at": TIME},
                        ("name", "version")),
    "Alias": obj({"alias": {"type": "string"}, "version": {"type": "integer"}, "updated_at": TIME,
                  "updated_by": {"type": "string"}}, ("alias", "version")),
    "Token": obj({"id": {"type": "string"}, "name": {"type": "string"}, "role": {"type": "string"},
                  "state": {"type": "string", "enum": ["active", "expired", "revoked"]}}, ("id", "name", "role")),
    "FrameList": array(array(ANY, minItems=2, maxItems=8), maxItems=16),
}


def param(name: str, where: str, schema: Schema, required: bool = False, description: str = "") -> Schema:
    out: Schema = {"name": name, "in": where, "schema": schema, "required": required or where == "path"}
    if description:
        out["description"] = description
    return out


def q(name: str, schema: Schema, description: str = "") -> Schema:
    return param(name, "query", schema, description=description)


def p(name: str, schema: Schema = ID) -> Schema:
    return param(name, "path", schema)


QSTR: Schema = {"type": "string", "minLength": 1, "maxLength": 200}
QTIME: Schema = {"type": "string", "description": "epoch seconds or ISO 8601",
                 "examples": ["1700000000", "2026-01-01T00:00:00"]}


def answer(schema: Schema, status: int = 200, description: str = "OK") -> dict[str, Any]:
    return {str(status): {"description": description, "content": {"application/json": {"schema": schema}}}}


def operation(summary: str, role: str | None, *, params: tuple[Schema, ...] = (), body: Schema | None = None,
              ok: dict[str, Any] | None = None, raw_body: bool = False, raw_answer: bool = False) -> Schema:
    responses: dict[str, Any] = dict(ok or answer(obj({})))
    if raw_answer:
        responses = {"200": {"description": "the bytes",
                             "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                  "format": "binary"}}}}}
    errors = {"400": "a bad value; `field` names it", "404": "not stored", "409": "the state moved on"}
    if role is not None:
        errors |= {"401": "no valid token", "403": f"needs the {role} role"}
    if body is not None or raw_body:
        errors |= {"413": "the body is too large", "415": "not JSON"}
    for status, text in errors.items():
        responses.setdefault(status, {"description": text,
                                      "content": {"application/json": {"schema": ref("Error")}}})
    op: Schema = {"summary": summary, "responses": responses, "x-required-role": role}
    op["operationId"] = "_".join(summary.lower().replace("'", "").replace(",", "").split())[:60]
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if raw_body:
        op["requestBody"] = {"required": True, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    op["security"] = [] if role is None else [{"bearerAuth": []}]
    return op


RUN, TASK, MODEL, ALIAS = p("run_id"), p("task_id"), p("name", NAME), p("alias", NAME)
NEW_MODEL = p("name", {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$"})
NEW_ALIAS = p("alias", {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_.-]{0,254}$"})
STRINGS: Schema = array({"type": "string", "minLength": 1, "maxLength": 255}, maxItems=100)
IDS: Schema = array(ID, maxItems=10_000)
PARAMS: Schema = {"type": "object", "maxProperties": 100}
POINT: Schema = {"type": "array", "prefixItems": [nullable(ID), NAME, nullable({"type": "integer"}), METRIC_VALUE,
                                                   nullable({"type": "number", "minimum": 0,
                                                                                  "maximum": 1e10})],
                 "minItems": 5, "maxItems": 5}


def _paths() -> dict[str, dict[str, Schema]]:
    runs_answer = obj({"runs": array(ref("Run")), "total": {"type": "integer"}, "limit": {"type": ["integer", "null"]},
                       "offset": {"type": "integer"}}, ("runs", "total"))
    version_fields = obj({
        "run_id": nullable(ID), "task_id": nullable(ID), "size": nullable(SIZE), "created_at": nullable(TIME),
        "artifact_key": STORED_KEY,
        **{c: nullable({"type": "string", "maxLength": n}) for c, n in (
            ("artifact_name", 255), ("codec", 16), ("dataset_hash", 255), ("code_version", 64),
            ("matinee_version", 64), ("user_name", 255))},
        "metrics": nullable({"type": "string", "description": "JSON text of an object: name -> number",
                             "examples": ['{"ndcg@10": 0.31}']}),
        "tags": nullable({"type": "string", "description": "JSON text of a list of strings",
                          "examples": ['["baseline"]']}),
        "package_versions": nullable({"type": "string", "description": "JSON text of an object: package -> version",
                                      "examples": ['{"numpy": "2.1.0"}']}),
        "description": TEXT,
    }, ("artifact_key",))
    return {
        "/health": {"get": operation("Health", None, ok=answer(obj({"status": {"type": "string"},
                                                                       "version": {"type": "string"}})))},
        "/openapi.json": {"get": operation("This document", None)},
        "/runs": {
            "get": operation("Search runs", "reader", params=(
                q("flow", QSTR), q("status", STATUS), q("tag", QSTR), q("user", QSTR), q("since", QTIME),
                q("until", QTIME),
                q("sort", {"type": "string", "pattern": "^(id|created|finished|metric:.+)$", "maxLength": 200},
                  "id, created, finished or metric:<name>"),
                q("order", {"type": "string", "enum": ["asc", "desc"]}),
                q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                q("offset", {"type": "integer", "minimum": 0, "maximum": 10**9}),
                q("metrics", {"type": "integer", "enum": [0, 1]}, "0: leave out each run's latest metric values"),
                q("plain", {"type": "integer", "enum": [0, 1]},
                  "1: the store's list_runs (newest first; kind, before; no count)"),
                q("kind", QSTR), q("before", ID)), ok=answer(runs_answer)),
            "post": operation("Create a run", "writer", body=obj({
                "flow_name": NAME, "user": NAME, "kind": {"type": "string", "minLength": 1, "maxLength": 16},
                "code_hash": nullable({"type": "string", "maxLength": 64}), "origin_run_id": nullable(ID),
                "executor": nullable({"type": "string", "maxLength": 16}), "tags": STRINGS,
                "pid": nullable(ID), "hostname": nullable(NAME),
                "system_tags": STRINGS, "params": nullable(PARAMS)}, ("flow_name",)),
                ok=answer(obj({"run_id": ID}, ("run_id",)), 201)),
        },
        "/runs/tags": {"post": operation("Tags of many runs", "reader", body=obj({"run_ids": IDS}, ("run_ids",)))},
        "/runs/{run_id}": {"get": operation("Get a run", "reader", params=(RUN,), ok=answer(obj({
            "run": ref("Run"), "params": {"type": "object"}, "tags": array(ref("Tag")),
            "metrics": {"type": "object"}}, ("run", "params", "tags", "metrics"))))},
        "/runs/{run_id}/finish": {"post": operation("Finish a run", "writer", params=(RUN,), body=obj(
            {"status": STATUS, "error": TEXT}, ("status",)))},
        "/runs/{run_id}/heartbeat": {"post": operation("Heartbeat", "writer", params=(RUN,), body=obj({}))},
        "/runs/{run_id}/tags": {
            "get": operation("Tags of a run", "reader", params=(RUN,), ok=answer(obj({"tags": array(ref("Tag"))}))),
            "post": operation("Add and remove tags", "writer", params=(RUN,),
                              body=obj({"add": STRINGS, "remove": STRINGS})),
        },
        "/runs/{run_id}/params": {
            "get": operation("Parameters of a run", "reader", params=(RUN,)),
            "post": operation("Log parameters", "writer", params=(RUN,), body=obj({"params": PARAMS}, ("params",))),
        },
        "/runs/{run_id}/metrics": {
            "get": operation("Metrics of a run", "reader", params=(RUN, q("name", QSTR)),
                             ok=answer(obj({"metrics": array(ref("Metric"))}))),
            "post": operation("Log metrics", "writer", params=(RUN,), body=obj(
                {"points": array(POINT, maxItems=10_000, description="[task_id, name, step, value, ts]")},
                ("points",)), ok=answer(obj({"run_id": ID, "logged": {"type": "integer"}}))),
        },
        "/runs/{run_id}/tasks": {
            "get": operation("Tasks of a run", "reader", params=(RUN, q("step", QSTR)),
                             ok=answer(obj({"tasks": array(ref("Task"))}))),
            "post": operation("Create a task", "writer", params=(RUN,), body=obj(
                {"step": NAME, "foreach_stack": ref("FrameList"), "input_paths": IDS}, ("step",)),
                ok=answer(obj({"task_id": ID}), 201)),
        },
        "/runs/{run_id}/tasks/clone": {"post": operation("Clone a task", "writer", params=(RUN,), body=obj(
            {"origin_task_id": ID, "foreach_stack": ref("FrameList"), "input_paths": IDS}, ("origin_task_id",)),
            ok=answer(obj({"task_id": ID}), 201))},
        "/runs/{run_id}/tasks/{task_id}/artifacts/{name}": {"get": operation(
            "Artifact preview", "reader", params=(RUN, TASK, p("name", NAME)))},
        "/runs/{run_id}/tasks/{task_id}/artifacts/{name}/download": {"get": operation(
            "Artifact download", "reader", params=(RUN, TASK, p("name", NAME)), raw_answer=True)},
        "/flows": {"get": operation("Flows", "reader")},
        "/metrics/latest": {"post": operation("Latest metric values", "reader",
                                              body=obj({"run_ids": IDS}, ("run_ids",)))},
        "/metrics/names": {
            "get": operation("Metric names", "reader"),
            "post": operation("Metric names of runs", "reader", body=obj({"run_ids": nullable(IDS)})),
        },
        "/tasks/{task_id}": {"get": operation("Get a task", "reader", params=(TASK,),
                                              ok=answer(obj({"task": ref("Task")})))},
        "/tasks/{task_id}/attempts": {
            "get": operation("Attempts of a task", "reader", params=(TASK,),
                             ok=answer(obj({"attempts": array(ref("Attempt"))}))),
            "post": operation("Start an attempt", "writer", params=(TASK,), body=obj(
                {"attempt": {"type": "integer", "minimum": 0, "maximum": 1_000_000}}, ("attempt",)),
                ok=answer(obj({}), 201)),
        },
        "/tasks/{task_id}/attempts/{attempt}/finish": {"post": operation(
            "Finish an attempt", "writer", params=(TASK, p("attempt")), body=obj(
                {"status": STATUS, "exception": TEXT, "traceback": TEXT, "stdout_key": nullable(STORED_KEY),
                 "stderr_key": nullable(STORED_KEY)}, ("status",)))},
        "/tasks/{task_id}/finish": {"post": operation("Finish a task", "writer", params=(TASK,), body=obj(
            {"status": STATUS, "transition": nullable({"type": "object"}),
             "artifacts": {"type": "object", "additionalProperties": ref("ArtifactRef"), "maxProperties": 50}},
            ("status",)))},
        "/tasks/{task_id}/artifacts": {"get": operation("Artifacts of a task", "reader", params=(TASK,), ok=answer(
            obj({"artifacts": {"type": "object", "additionalProperties": ref("ArtifactRef")}})))},
        "/blobs/{key}": {
            "get": operation("Download a blob", "reader", params=(p("key", KEY),), raw_answer=True),
            "head": operation("Whether a blob is stored", "reader", params=(p("key", KEY),),
                              ok={"200": {"description": "stored"}}),
            "put": operation("Upload a blob", "writer", params=(p("key", KEY),), raw_body=True,
                             ok=answer(obj({"key": KEY, "size": SIZE, "created": {"type": "boolean"}}), 201)),
        },
        "/blobs/{key}/claim": {"post": operation("Claim a blob", "writer", params=(p("key", KEY),),
                                                 ok=answer(obj({"key": KEY, "exists": {"type": "boolean"}})))},
        "/models": {"get": operation("Models", "reader")},
        "/models/{name}/versions": {
            "get": operation("Versions of a model", "reader", params=(MODEL,),
                             ok=answer(obj({"versions": array(ref("ModelVersion"))}))),
            "post": operation("Register a version", "writer", params=(NEW_MODEL,), body=version_fields,
                              ok=answer(obj({"name": NAME, "version": {"type": "integer"}}), 201)),
        },
        "/models/{name}/versions/latest": {"get": operation("Latest version", "reader", params=(MODEL,),
                                                            ok=answer(obj({"version": ref("ModelVersion")})))},
        "/models/{name}/versions/{version}": {"get": operation(
            "One version", "reader", params=(MODEL, p("version")), ok=answer(obj({"version": ref("ModelVersion")})))},
        "/models/{name}/aliases": {"get": operation("Aliases of a model", "reader", params=(MODEL,),
                                                    ok=answer(obj({"aliases": array(ref("Alias"))})))},
        "/models/{name}/aliases/{alias}": {
            "get": operation("One alias", "reader", params=(MODEL, ALIAS), ok=answer(obj({"alias": ref("Alias")}))),
            "put": operation("Move an alias", "admin", params=(MODEL, NEW_ALIAS), body=obj(
                {"version": {"type": "integer", "minimum": 1, "maximum": MAX_INT},
                 "expected": nullable({"type": "integer", "minimum": 1, "maximum": MAX_INT}),
                 "action": {"type": "string", "pattern": "^[a-z_]{1,16}$", "not": {"enum": ["rollback", "delete"]}}, "user": NAME}, ("version",)),
                ok=answer(obj({"previous": nullable({"type": "integer"})}))),
            "delete": operation("Delete an alias", "admin", params=(MODEL, ALIAS, q("user", QSTR))),
        },
        "/models/{name}/aliases/{alias}/rollback": {"post": operation(
            "Roll an alias back", "admin", params=(MODEL, ALIAS), body=obj({"user": NAME}),
            ok=answer(obj({"from": {"type": "integer"}, "to": {"type": "integer"}})))},
        "/models/{name}/history": {"get": operation("Alias history", "reader", params=(MODEL, q("alias", QSTR)))},
        "/experiments": {
            "get": operation("Experiments", "reader", params=(q("status", QSTR),)),
            "post": operation("Create a draft experiment", "writer", body=obj(
                {"experiment": obj({"name": NAME, "model": NAME, "arms": array(obj(
                    {"alias": NAME, "weight": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}},
                    ("alias", "weight"))), "endpoint": {"type": "string", "enum": ["recs", "artwork"]},
                    "kind": {"type": "string", "enum": ["ab", "interleaving"]}, "salt": {"type": "string"},
                    "primary_metric": NAME, "guardrails": array(NAME), "owner": {"type": "string"},
                    "description": {"type": "string"}, "alpha": {"type": "number"}}, ("name", "model", "arms")),
                 "check_aliases": {"type": "boolean"}}, ("experiment",)),
                ok=answer(obj({"experiment": obj({})}), 201, "Created")),
        },
        "/experiments/{name}": {
            "get": operation("One experiment", "reader", params=(p("name", NAME),)),
            "delete": operation("Delete a draft experiment", "writer", params=(p("name", NAME),)),
        },
        "/experiments/{name}/start": {"post": operation(
            "Start an experiment", "writer", params=(p("name", NAME),), body=obj({"at": nullable(TIME)}))},
        "/experiments/{name}/stop": {"post": operation(
            "Stop an experiment", "writer", params=(p("name", NAME),), body=obj({"at": nullable(TIME)}))},
        "/experiments/{name}/analysis": {"get": operation(
            "Experiment analysis", "reader", params=(p("name", NAME), q("sequential", {"type": "integer",
                                                                                      "enum": [0, 1]})))},
        "/events": {"get": operation("Recent events", "reader", params=(
            q("kind", {"type": "string", "enum": ["decision", "feedback"]}), q("endpoint", QSTR), q("model", QSTR),
            q("arm", QSTR), q("unit", QSTR), q("decision", QSTR),
            q("limit", {"type": "integer", "minimum": 1, "maximum": 10_000})))},
        "/bandits": {"get": operation("Reward per policy over time, and off-policy estimates", "reader", params=(
            q("endpoint", QSTR), q("since", QTIME)))},
        "/tokens": {
            "get": operation("Tokens", "admin", ok=answer(obj({"tokens": array(ref("Token"))}))),
            "post": operation("Create a token", "admin", body=obj(
                {"name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"},
                 "role": {"type": "string", "enum": ["reader", "writer", "admin"]},
                 "expires": nullable({"type": "string", "pattern": "^[0-9]{1,4}[smhdw]$"})}, ("name", "role")),
                ok=answer(obj({"token": {"type": "string"}}), 201)),
        },
        "/tokens/{name}": {"delete": operation("Revoke a token", "admin", params=(p("name", NAME),))},
        "/audit": {"get": operation("Audit log", "admin", params=(
            q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}), q("before", ID),
            q("outcome", QSTR)))},
    }


@functools.lru_cache(maxsize=1)
def _document() -> Schema:
    from matinee import __version__

    return {
        "openapi": "3.1.0",
        "info": {"title": "matinee", "version": __version__,
                 "description": "Runs, metrics, artifacts by content key, models and their aliases, "
                                "experiments and events. Send `Authorization: Bearer <token>`."},
        "servers": [{"url": "/api/v1"}],
        "paths": _paths(),
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "a token from `matinee tokens create`"}},
        },
        "security": [{"bearerAuth": []}],
    }


def document() -> Schema:
    """The OpenAPI 3.1 document of ``/api/v1`` (a fresh copy)."""
    return copy.deepcopy(_document())
