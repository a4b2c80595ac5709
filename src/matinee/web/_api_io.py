"""Requests and answers of the REST API: values checked before they reach the store, JSON out.

Every check raises a 4xx naming the field (``points.3.value``); strings must be
text the database can store, integers fit its columns, content keys are 64 hex
digits. Store errors get the request field they are about (:func:`name_field`),
and a constraint the database refuses is a 409, never a 500 (:func:`write`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from matinee.core.artifacts.store import ArtifactRef
from matinee.core.plain import finite
from matinee.errors import MatineeError, NotFoundError, ParameterError, StorageError
from matinee.web.auth import HttpError

PREFIX = "/api/v1"
#: The largest JSON body accepted (a metric batch of ~500k points).
MAX_JSON_BYTES = 32 << 20
#: Ids and counts are SQL integers: nothing above this reaches the database.
MAX_INT = (1 << 63) - 1
#: Ids (runs, tasks, versions) are 32-bit integers in the schema.
MAX_ID = (1 << 31) - 1
MAX_STR = 10_000
KEY_CHARS = frozenset("0123456789abcdef")
STATUSES = ("running", "completed", "failed")
CHUNK = 1 << 20
ANALYSIS_TIMEOUT = 60.0
EVENT_KINDS = ("decision", "feedback")


# -- request parsing ----------------------------------------------------------------------
def bad(field: str, message: str) -> ParameterError:
    return ParameterError(f"{field}: {message}", field=field)


async def body(request: Request) -> dict[str, Any]:
    """The request's JSON object; 415 for another content type, 413 over the limit, 400 when malformed."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise HttpError(415, f"send JSON (Content-Type: application/json), not {ctype or 'nothing'!r}",
                        field="content-type")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_JSON_BYTES:
        raise HttpError(413, f"the JSON body is over {MAX_JSON_BYTES} bytes", field="body")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_JSON_BYTES:
            raise HttpError(413, f"the JSON body is over {MAX_JSON_BYTES} bytes", field="body")
    try:
        value = json.loads(data, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise bad("body", f"malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise bad("body", "must be a JSON object")
    return value


def refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def text(value: Any, field: str, *, required: bool = True, empty: bool = False, max_len: int = MAX_STR) -> Any:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise bad(field, "must be a string" if value is not None else "is required")
    if not empty and not value.strip():
        raise bad(field, "must not be empty")
    if len(value) > max_len:
        raise bad(field, f"must be at most {max_len} characters")
    if "\x00" in value:
        raise bad(field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(field, "must be valid Unicode text") from None
    return value


def integer(value: Any, field: str, *, required: bool = True, low: int = 0, high: int = MAX_ID) -> Any:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(field, "must be an integer" if value is not None else "is required")
    if not low <= value <= high:
        raise bad(field, f"must be between {low} and {high}")
    return value


def number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad(field, "must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise bad(field, "must be finite")
    return value


def texts(value: Any, field: str, *, required: bool = False, max_len: int = 255) -> list[str]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or len(value) > 1000:
        raise bad(field, "must be a list of at most 1000 strings")
    return [text(v, f"{field}.{i}", max_len=max_len) for i, v in enumerate(value)]


def ids(value: Any, field: str) -> list[int]:
    if not isinstance(value, list) or len(value) > 100_000:
        raise bad(field, "must be a list of at most 100000 ids")
    return [integer(v, f"{field}.{i}") for i, v in enumerate(value)]


def json_value(value: Any, field: str, depth: int = 0) -> Any:
    """Any JSON value whose strings the database can store."""
    if depth > 32:
        raise bad(field, "is nested too deeply")
    if isinstance(value, str):
        return text(value, field, empty=True, max_len=1 << 20)
    if isinstance(value, dict):
        return {text(k, field, empty=True): json_value(v, f"{field}.{k}", depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [json_value(v, f"{field}.{i}", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise bad(field, "is too large")
    return value


def query_int(request: Request, name: str, default: int | None, *, low: int = 0, high: int = MAX_INT) -> Any:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad(name, f"must be an integer, not {raw[:40]!r}") from None
    if not low <= value <= high:
        raise bad(name, f"must be between {low} and {high}")
    return value


def query_text(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    return str(text(raw, name))


def query_time(request: Request, name: str) -> float | None:
    """Epoch seconds, or an ISO 8601 date/time."""
    raw = query_text(request, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        from datetime import datetime, timezone

        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise bad(name, f"must be epoch seconds or an ISO 8601 time, not {raw[:40]!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        value = moment.timestamp()
    if not math.isfinite(value) or abs(value) > 1e11:
        raise bad(name, "is out of range")
    return value


def path_int(request: Request, name: str) -> int:
    value = int(request.path_params[name])
    if value > MAX_ID:
        raise NotFoundError(f"{name} {value} does not exist", field=name)
    return value


def content_key(request: Request) -> str:
    key = str(request.path_params["key"])
    if not is_content_key(key):
        raise bad("key", "a content key is 64 lowercase hex digits")
    return key


def is_content_key(key: Any) -> bool:
    return isinstance(key, str) and len(key) == 64 and KEY_CHARS.issuperset(key)


def stored_key(value: Any, field: str) -> str:
    """A key recorded in the database: letters, digits, ``_`` and ``-`` only.

    Only a real content key (64 hex digits) is ever looked up in the blob store:
    :func:`is_content_key` is checked again on every read.
    """
    key = str(text(value, field, max_len=64))
    if not key.replace("_", "").replace("-", "").isalnum() or not key.isascii():
        raise bad(field, "a key is letters and digits (a content key is 64 lowercase hex digits)")
    return key


def status_value(value: Any, field: str = "status") -> str:
    if value not in STATUSES:
        raise bad(field, f"must be one of {', '.join(STATUSES)}")
    return str(value)


# -- responses ------------------------------------------------------------------------------
#: How a float JSON cannot hold travels, both ways (a metric may be NaN or infinite).
NON_FINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def ok(data: Any, status: int = 200) -> Response:
    try:
        content = json.dumps(data, allow_nan=False, separators=(",", ":"))
    except ValueError:  # an infinity (or NaN) stored somewhere: sent as "Infinity", "-Infinity", "NaN"
        content = json.dumps(finite(data, spell=True), separators=(",", ":"))
    return Response(content, status_code=status, media_type="application/json")


#: The request field a store error is about, from the structured fields the store gives it.
FIELD_OF = (("version", "version"), ("alias", "alias"), ("model", "name"), ("experiment", "name"),
            ("key", "key"), ("run_id", "run_id"))


def name_field(exc: MatineeError, field: str | None = None) -> MatineeError:
    """Give a store's error the request field it is about (every 4xx names one)."""
    if "field" not in exc.fields and "parameter" not in exc.fields:
        guess = field or next((f for key, f in FIELD_OF if key in exc.fields), None)
        if guess is not None:
            exc.fields["field"] = guess
    return exc


async def write(fn: Callable[..., Any], *args: Any, field: str | None = None, **kwargs: Any) -> Any:
    """Run a store write off the event loop; a constraint the database refused is a 409 naming ``field``."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except StorageError as exc:
        if type(exc.__cause__).__name__ == "IntegrityError":
            exc.status = 409
            raise name_field(exc, field or "body") from exc.__cause__
        raise
    except MatineeError as exc:
        raise name_field(exc, field) from exc.__cause__


def meta(request: Request) -> Any:
    return request.app.state.store.metadata


def blobs(request: Request) -> Any:
    return request.app.state.store.artifacts.blobs


def principal_name(request: Request) -> str:
    principal = getattr(request.state, "principal", None)
    return str(principal.name) if principal is not None else "local"


def found(row: Any, what: str, field: str) -> Any:
    if row is None:
        raise NotFoundError(f"{what} does not exist", field=field)
    return row


def ref_dict(ref: ArtifactRef) -> dict[str, Any]:
    return {"key": ref.key, "codec": ref.codec, "size": ref.size}


def stored_task(request: Request, task_id: int, field: str = "task_id") -> dict[str, Any]:
    """The task ``task_id`` (404 naming ``field`` when it is not stored)."""
    return dict(found(meta(request).get_task(task_id), f"task {task_id}", field))
