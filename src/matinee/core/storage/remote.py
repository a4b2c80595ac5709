"""The remote store: the metadata and blob store protocols over a matinee server's REST API.

With ``MATINEE_TRACKING_URI=http://host:port`` (and ``MATINEE_TOKEN``), flows,
tracking and the registry talk to a ``matinee server`` instead of a local
database: :class:`RemoteMetadataStore` offers the methods of
:class:`~matinee.core.storage.metadata.MetadataStore` and returns rows with the
same keys; :class:`RemoteBlobStore` offers the :class:`~matinee.core.storage.blobs.BlobStore`
protocol, addressing blobs by content key only. Errors the server answers come
back as the same :class:`~matinee.errors.MatineeError` subclasses the local store
raises. Garbage collection runs on the server, never through this store.

The client is the standard library's :mod:`http.client`, one keep-alive
connection per thread (and per process: a forked worker opens its own).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import matinee.errors as errors
from matinee.core.artifacts.store import ArtifactRef
from matinee.core.storage.blobs import BlobInfo, Chunks
from matinee.core.storage.metadata import HOSTNAME
from matinee.errors import (
    ConfigError,
    ConflictError,
    MatineeError,
    NotFoundError,
    NotSupportedError,
    ParameterError,
    StorageError,
)

if TYPE_CHECKING:
    from matinee.config import Settings

Row = dict[str, Any]
API = "/api/v1"
#: Metric points sent in one request (about 3 MB of JSON).
MAX_POINTS = 50_000
_RETRYABLE = (http.client.RemoteDisconnected, http.client.CannotSendRequest, BrokenPipeError,
              ConnectionResetError, ConnectionAbortedError)


def open_remote(settings: Settings) -> tuple[RemoteMetadataStore, RemoteBlobStore]:
    """The metadata and blob stores of the server at ``settings.tracking_uri``, sharing one client.

    Parameters
    ----------
    settings
        Settings with ``tracking_uri`` (``MATINEE_TRACKING_URI``) and, when the
        server has access control on, ``token`` (``MATINEE_TOKEN``).

    Returns
    -------
    tuple
        ``(RemoteMetadataStore, RemoteBlobStore)``; nothing is sent until the first call.

    Raises
    ------
    ConfigError
        ``tracking_uri`` is not an ``http://`` or ``https://`` URL.

    Examples
    --------
    >>> from matinee.config import load_settings
    >>> meta, blobs = open_remote(load_settings(tracking_uri="http://127.0.0.1:5173"))
    >>> blobs.url
    'http://127.0.0.1:5173/api/v1/blobs'
    """
    client = Client(str(settings.tracking_uri), getattr(settings, "token", None))
    return RemoteMetadataStore(client), RemoteBlobStore(client)


class Client:
    """JSON over HTTP to one matinee server, with a persistent connection per thread.

    Parameters
    ----------
    url
        ``http://host:port`` (or ``https://``), the server's address (``MATINEE_TRACKING_URI``).
    token
        The bearer token (``MATINEE_TOKEN``), or None when the server needs none.
    timeout
        Seconds to wait for the server on each request.
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 120.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"MATINEE_TRACKING_URI must look like http://host:port, not {url!r}",
                              setting="tracking_uri")
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        self.timeout = timeout
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._local = threading.local()

    # -- connections --------------------------------------------------------------------
    def connect(self) -> http.client.HTTPConnection:
        """A new connection (for a download that holds it until its stream is read)."""
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.timeout)

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection and whether it was used before."""
        held = getattr(self._local, "conn", None)
        if held is not None and held[0] == os.getpid():
            return held[1], True
        conn = self.connect()
        self._local.conn = (os.getpid(), conn)
        return conn, False

    def _drop(self) -> None:
        held = getattr(self._local, "conn", None)
        self._local.conn = None
        if held is not None and held[0] == os.getpid():
            held[1].close()

    def close(self) -> None:
        self._drop()

    # -- requests -------------------------------------------------------------------------
    def path(self, *segments: Any, query: Mapping[str, Any] | None = None) -> str:
        path = self._base + API + "".join("/" + quote(str(s), safe="") for s in segments)
        if query:
            args = {k: v for k, v in query.items() if v is not None}
            if args:
                path += "?" + urlencode(args)
        return path

    def send(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None,
             ) -> tuple[int, bytes, http.client.HTTPResponse]:
        """One request on this thread's connection: ``(status, body bytes, response)``.

        A connection the server closed while idle is replaced and the request sent
        again once (the server never saw it).
        """
        all_headers = {**self._headers, **(headers or {})}
        for attempt in (0, 1):
            conn, reused = self._connection()
            try:
                conn.request(method, path, body=body, headers=all_headers)
                response = conn.getresponse()
                data = response.read()
            except _RETRYABLE as exc:
                self._drop()
                if reused and attempt == 0 and not isinstance(body, Iterator):
                    continue
                raise StorageError(f"the matinee server at {self.url} dropped the connection: {exc}"
                                   " (MATINEE_TRACKING_URI)", url=self.url) from exc
            except OSError as exc:
                self._drop()
                raise StorageError(f"cannot reach the matinee server at {self.url}: {exc}"
                                   " (check MATINEE_TRACKING_URI and that `matinee server` runs)",
                                   url=self.url) from exc
            if response.will_close:
                self._drop()
            return response.status, data, response
        raise AssertionError("unreachable")  # pragma: no cover

    def call(self, method: str, *segments: Any, query: Mapping[str, Any] | None = None,
             json_body: Any = None) -> Any:
        """A JSON request; the decoded JSON answer, or the server's error raised as a MatineeError."""
        body = None
        headers = None
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":"), allow_nan=False).encode()
            headers = {"Content-Type": "application/json"}
        path = self.path(*segments, query=query)
        status, data, _ = self.send(method, path, body, headers)
        if status >= 400:
            raise self.error(status, data, method, path)
        return json.loads(data) if data else None

    def error(self, status: int, data: bytes, method: str, path: str) -> MatineeError:
        """The MatineeError for an error answer, of the class the server raised where it is one of ours."""
        try:
            payload = json.loads(data)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            payload = {"detail": data[:200].decode("utf-8", "replace") or f"HTTP {status}"}
        detail = str(payload.get("detail") or payload.get("error") or f"HTTP {status}")
        fields = {k: v for k, v in payload.items() if k not in ("error", "detail", "status", "message", "fields")}
        if status in (401, 403):
            return ConfigError(
                f"the matinee server at {self.url} refused {method} {path.split('?')[0]}: {detail} "
                "(set MATINEE_TOKEN to a token with the role this needs)", setting="token", http_status=status,
            )
        cls = getattr(errors, str(payload.get("error")), None)
        if isinstance(cls, type) and issubclass(cls, MatineeError):
            return cls(detail, **fields)
        by_status: dict[int, type[MatineeError]] = {
            400: ParameterError, 404: NotFoundError, 409: ConflictError, 413: ParameterError,
            415: ParameterError, 422: ParameterError, 501: NotSupportedError,
        }
        return by_status.get(status, StorageError)(f"{detail} (from {self.url})", http_status=status, **fields)


def _or_none(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except NotFoundError:
        return None


def _number(value: Any) -> Any:
    """A float for JSON (numpy scalars too; NaN or an infinity as its text); anything else as is, for the server to refuse."""
    if value is None or isinstance(value, bool):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return "NaN" if math.isnan(number) else number


def _float(value: Any) -> Any:
    """A metric value as the server sent it, back to a float (``"Infinity"`` ...)."""
    return _TEXT_FLOATS.get(value, value) if isinstance(value, str) else value


_TEXT_FLOATS = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def _gc_only(what: str) -> NotSupportedError:
    return NotSupportedError(f"{what} runs on the server: run `matinee gc` there, not through MATINEE_TRACKING_URI")


def _jsonable(value: Any) -> Any:
    """``value`` as the local store keeps it (``json.dumps(..., default=str)``)."""
    return json.loads(json.dumps(value, default=str))


class RemoteMetadataStore:
    """:class:`~matinee.core.storage.metadata.MetadataStore`'s methods, answered by a matinee server."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.url = client.url

    @property
    def db(self) -> Any:
        raise NotSupportedError(
            "this needs the metadata database itself, which is on the server "
            f"({self.url}); run it there (unset MATINEE_TRACKING_URI)"
        )

    def close(self) -> None:
        self.client.close()

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, flow_name: str, user: str, *, kind: str = "flow", code_hash: str | None = None,
                   origin_run_id: int | None = None, executor: str | None = None, tags: Iterable[str] = (),
                   system_tags: Iterable[str] = (), params: Mapping[str, Any] | None = None) -> int:
        body = dict(flow_name=flow_name, user=user, pid=os.getpid(), hostname=HOSTNAME, kind=kind, code_hash=code_hash, origin_run_id=origin_run_id,
                    executor=executor, tags=list(tags), system_tags=list(system_tags),
                    params=_jsonable(dict(params)) if params else None)
        return int(self.client.call("POST", "runs", json_body=body)["run_id"])

    def add_tags(self, run_id: int, tags: Iterable[str]) -> None:
        self.client.call("POST", "runs", run_id, "tags", json_body={"add": list(tags)})

    def remove_tags(self, run_id: int, tags: Iterable[str]) -> None:
        self.client.call("POST", "runs", run_id, "tags", json_body={"remove": list(tags)})

    def log_params(self, run_id: int, params: Mapping[str, Any]) -> None:
        self.client.call("POST", "runs", run_id, "params", json_body={"params": _jsonable(dict(params))})

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        self.client.call("POST", "runs", run_id, "finish", json_body={"status": status, "error": error})

    def heartbeat(self, run_id: int) -> None:
        self.client.call("POST", "runs", run_id, "heartbeat", json_body={})

    def get_run(self, run_id: int) -> Row | None:
        answer = _or_none(self.client.call, "GET", "runs", int(run_id))
        return None if answer is None else dict(answer["run"])

    def list_runs(self, flow_name: str | None = None, *, tag: str | None = None, kind: str | None = None,
                  limit: int | None = None, before: int | None = None) -> list[Row]:
        query = dict(plain=1, flow=flow_name, tag=tag, kind=kind, limit=limit, before=before)
        return list(self.client.call("GET", "runs", query=query)["runs"])

    def list_flows(self) -> list[Row]:
        return list(self.client.call("GET", "flows")["flows"])

    def run_tags(self, run_id: int) -> list[Row]:
        answer = _or_none(self.client.call, "GET", "runs", run_id, "tags")
        return [] if answer is None else list(answer["tags"])

    def tags_of_runs(self, run_ids: Iterable[int]) -> dict[int, list[Row]]:
        answer = self.client.call("POST", "runs", "tags", json_body={"run_ids": sorted(set(run_ids))})
        return {int(k): v for k, v in answer["tags"].items()}

    def run_params(self, run_id: int) -> dict[str, Any]:
        answer = _or_none(self.client.call, "GET", "runs", run_id, "params")
        return {} if answer is None else dict(answer["params"])

    def search_runs(self, *, flow: str | None = None, status: str | None = None, tag: str | None = None,
                    user: str | None = None, since: float | None = None, until: float | None = None,
                    sort: str = "id", order: str = "desc", limit: int = 50, offset: int = 0,
                    ) -> tuple[list[Row], int]:
        query = dict(flow=flow, status=status, tag=tag, user=user, since=since, until=until, sort=sort,
                     order=order, limit=limit, offset=offset, metrics=0)
        answer = self.client.call("GET", "runs", query=query)
        rows = list(answer["runs"])
        for row in rows:
            if isinstance(row.get("sort_value"), str):
                row["sort_value"] = _float(row["sort_value"])
        return rows, int(answer["total"])

    # -- tasks -------------------------------------------------------------------------------
    def create_task(self, run_id: int, step: str, foreach_stack: Sequence[Sequence[Any]] = (),
                    input_paths: Sequence[int] = ()) -> int:
        body = dict(step=step, foreach_stack=_jsonable([list(f) for f in foreach_stack]),
                    input_paths=list(input_paths))
        return int(self.client.call("POST", "runs", run_id, "tasks", json_body=body)["task_id"])

    def start_attempt(self, task_id: int, attempt: int) -> None:
        self.client.call("POST", "tasks", task_id, "attempts", json_body={"attempt": attempt})

    def finish_attempt(self, task_id: int, attempt: int, status: str, *, exception: str | None = None,
                       traceback: str | None = None, stdout_key: str | None = None,
                       stderr_key: str | None = None) -> None:
        body = dict(status=status, exception=exception, traceback=traceback, stdout_key=stdout_key,
                    stderr_key=stderr_key)
        self.client.call("POST", "tasks", task_id, "attempts", attempt, "finish", json_body=body)

    def finish_task(self, task_id: int, status: str, *, transition: Mapping[str, Any] | None = None,
                    artifacts: Mapping[str, ArtifactRef] | None = None) -> None:
        refs = {name: {"key": r.key, "codec": r.codec, "size": r.size} for name, r in (artifacts or {}).items()}
        body = dict(status=status, transition=None if transition is None else _jsonable(dict(transition)),
                    artifacts=refs)
        self.client.call("POST", "tasks", task_id, "finish", json_body=body)

    def clone_task(self, run_id: int, origin: Row, foreach_stack: Sequence[Sequence[Any]],
                   input_paths: Sequence[int]) -> int:
        body = dict(origin_task_id=origin["id"], foreach_stack=_jsonable([list(f) for f in foreach_stack]),
                    input_paths=list(input_paths))
        return int(self.client.call("POST", "runs", run_id, "tasks", "clone", json_body=body)["task_id"])

    def get_task(self, task_id: int) -> Row | None:
        answer = _or_none(self.client.call, "GET", "tasks", int(task_id))
        return None if answer is None else dict(answer["task"])

    def list_tasks(self, run_id: int, step: str | None = None) -> list[Row]:
        answer = _or_none(self.client.call, "GET", "runs", run_id, "tasks", query={"step": step})
        return [] if answer is None else list(answer["tasks"])

    def task_artifacts(self, task_id: int) -> dict[str, ArtifactRef]:
        answer = _or_none(self.client.call, "GET", "tasks", task_id, "artifacts")
        if answer is None:
            return {}
        return {name: ArtifactRef(r["key"], r["codec"], r["size"]) for name, r in answer["artifacts"].items()}

    def task_attempts(self, task_id: int) -> list[Row]:
        answer = _or_none(self.client.call, "GET", "tasks", task_id, "attempts")
        return [] if answer is None else list(answer["attempts"])

    # -- metrics -----------------------------------------------------------------------------
    def log_metrics(self, rows: Sequence[tuple[int, int | None, str, int | None, float, float]]) -> None:
        """Send points ``(run_id, task_id, name, step, value, ts)``: one request per run in the batch."""
        by_run: dict[int, list[list[Any]]] = {}
        for run_id, task_id, name, step, value, ts in rows:
            by_run.setdefault(run_id, []).append([
                task_id, name, step, value if type(value) is float and value - value == 0 else _number(value),
                ts if type(ts) is float else _number(ts),
            ])
        for run_id, points in by_run.items():
            for start in range(0, len(points), MAX_POINTS):  # each request well under the server's JSON limit
                self.client.call("POST", "runs", run_id, "metrics", json_body={"points": points[start:start + MAX_POINTS]})

    def metrics(self, run_id: int, name: str | None = None) -> list[Row]:
        answer = _or_none(self.client.call, "GET", "runs", run_id, "metrics", query={"name": name})
        rows = [] if answer is None else list(answer["metrics"])
        for row in rows:
            if isinstance(row["value"], str):
                row["value"] = _float(row["value"])
        return rows

    def latest_metrics(self, run_ids: Iterable[int]) -> dict[int, dict[str, float]]:
        answer = self.client.call("POST", "metrics", "latest", json_body={"run_ids": [int(r) for r in run_ids]})
        return {int(k): {name: _float(v) for name, v in values.items()} for k, values in answer["latest"].items()}

    def metric_names(self, run_ids: Iterable[int] | None = None) -> list[str]:
        body = {"run_ids": None if run_ids is None else [int(r) for r in run_ids]}
        return list(self.client.call("POST", "metrics", "names", json_body=body)["names"])

    # -- model registry -------------------------------------------------------------------------
    def add_model_version(self, name: str, fields: Mapping[str, Any], attempts: int = 20) -> int:
        body = {k: v for k, v in fields.items() if v is not None}
        return int(self.client.call("POST", "models", name, "versions", json_body=body)["version"])

    def model_version(self, name: str, version: int | None = None) -> Row | None:
        answer = _or_none(self.client.call, "GET", "models", name, "versions",
                          "latest" if version is None else int(version))
        return None if answer is None else dict(answer["version"])

    def model_versions(self, name: str) -> list[Row]:
        return list(self.client.call("GET", "models", name, "versions")["versions"])

    def list_models(self) -> list[Row]:
        return list(self.client.call("GET", "models")["models"])

    def model_aliases(self, name: str) -> list[Row]:
        return list(self.client.call("GET", "models", name, "aliases")["aliases"])

    def model_alias(self, name: str, alias: str) -> Row | None:
        answer = _or_none(self.client.call, "GET", "models", name, "aliases", alias)
        return None if answer is None else dict(answer["alias"])

    def alias_history(self, name: str, alias: str | None = None) -> list[Row]:
        return list(self.client.call("GET", "models", name, "history", query={"alias": alias})["history"])

    def move_alias(self, name: str, alias: str, version: int, action: str, user: str,
                   expected: int | None = None) -> int | None:
        body = dict(version=version, action=action, user=user, expected=expected)
        previous = self.client.call("PUT", "models", name, "aliases", alias, json_body=body)["previous"]
        return None if previous is None else int(previous)

    def delete_alias(self, name: str, alias: str, user: str) -> int:
        return int(self.client.call("DELETE", "models", name, "aliases", alias, query={"user": user})["previous"])

    def rollback_alias(self, name: str, alias: str, user: str) -> tuple[int, int]:
        answer = self.client.call("POST", "models", name, "aliases", alias, "rollback", json_body={"user": user})
        return int(answer["from"]), int(answer["to"])

    # -- server-side only --------------------------------------------------------------------------
    def delete_runs(self, run_ids: Iterable[int]) -> None:
        raise _gc_only("deleting runs")

    def protected_run_ids(self) -> set[int]:
        raise _gc_only("garbage collection")

    def referenced_keys(self, excluding_runs: Iterable[int] = ()) -> set[str]:
        raise _gc_only("garbage collection")


class RemoteBlobStore:
    """The :class:`~matinee.core.storage.blobs.BlobStore` protocol over ``/api/v1/blobs/{key}``."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.url = f"{client.url}{API}/blobs"

    def exists(self, key: str) -> bool:
        path = self.client.path("blobs", key)
        status, data, _ = self.client.send("HEAD", path)
        if status in (200, 404):
            return status == 200
        raise self.client.error(status, data, "HEAD", path)

    def claim(self, key: str) -> bool:
        return bool(self.client.call("POST", "blobs", key, "claim", json_body={})["exists"])

    def put(self, key: str, chunks: Chunks) -> int:
        parts = [memoryview(c).cast("B") if isinstance(c, memoryview) else c for c in chunks]
        size = sum(len(p) for p in parts)
        path = self.client.path("blobs", key)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        status, data, _ = self.client.send("PUT", path, _Body(parts), headers)
        if status >= 400:
            raise self.client.error(status, data, "PUT", path)
        return size

    def open(self, key: str) -> IO[bytes]:
        """The blob as a stream, on a connection of its own that closes with it."""
        path = self.client.path("blobs", key)
        conn = self.client.connect()
        try:
            conn.request("GET", path, headers=self.client._headers)
            response = conn.getresponse()
        except OSError as exc:
            conn.close()
            raise StorageError(f"cannot reach the matinee server at {self.client.url}: {exc}",
                               url=self.client.url) from exc
        if response.status >= 400:
            data = response.read()
            conn.close()
            raise self.client.error(response.status, data, "GET", path)
        return response  # closing it closes the connection (it is not kept alive)

    def delete(self, key: str) -> None:
        raise _gc_only("deleting blobs")

    def delete_many(self, keys: Iterable[str]) -> None:
        raise _gc_only("deleting blobs")

    def list(self) -> Iterator[BlobInfo]:
        raise _gc_only("listing blobs")


class _Body:
    """Chunks sent one after another (http.client reads a body from any iterable of bytes)."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def __iter__(self) -> Iterator[Any]:
        return iter(self.parts)
