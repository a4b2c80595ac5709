"""The REST API under /api/v1: in-process through Starlette's TestClient, and a real server process.

Covers the round trips a dashboard and a remote client make, the validation that
names the offending field, hostile input (path tricks on blob routes, SQL
metacharacters in filters, oversized and malformed bodies), and the remote
client store against ``matinee server`` with tokens of each role.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from _web_server import create_token, matinee_server, server_env
from matinee.config import load_settings
from matinee.core.artifacts.hashing import content_key
from matinee.core.artifacts.store import ArtifactStore
from matinee.core.storage.remote import Client, RemoteBlobStore, RemoteMetadataStore, open_remote
from matinee.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    NotSupportedError,
    ParameterError,
)
from matinee.web import api
from matinee.web._api_io import MAX_JSON_BYTES
from matinee.web.app import create_app
from matinee.web.openapi import document

JSON = {"content-type": "application/json"}


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings(), max_upload_bytes=1 << 16), base_url="http://127.0.0.1") as c:
        yield c


def new_run(client: TestClient, **fields: Any) -> int:
    answer = client.post("/api/v1/runs", json={"flow_name": "TrainFlow", "user": "alice", **fields})
    assert answer.status_code == 201, answer.text
    return int(answer.json()["run_id"])


def error_field(answer: Any) -> str:
    return str(answer.json()["field"])


# -- the route table and its document ----------------------------------------------------------------
def test_every_route_is_guarded_and_documented() -> None:
    spec = document()["paths"]
    seen = set()
    for route in api.routes():
        assert isinstance(route, Route) and route.path.startswith("/api/v1/")
        assert hasattr(route.endpoint, "required_role"), route.path
        path = route.path[len("/api/v1"):].replace(":int}", "}")
        for method in route.methods or ():
            if method == "HEAD" and "head" not in spec[path]:
                continue  # Starlette answers HEAD on every GET route; only the blob route documents it
            operation = spec[path][method.lower()]
            assert operation["x-required-role"] == route.endpoint.required_role, (method, path)
            seen.add((method.lower(), path))
    documented = {(m, p) for p, ops in spec.items() for m in ops}
    assert documented == seen


def test_health_and_the_document_are_public(client: TestClient) -> None:
    assert client.get("/api/v1/health").json()["status"] == "ok"
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1") and "bearerAuth" in doc["components"]["securitySchemes"]


# -- runs, params, tags, metrics --------------------------------------------------------------------
def test_a_run_round_trip(client: TestClient) -> None:
    run_id = new_run(client, tags=["nightly"], params={"lr": 0.1, "layers": [64, 32]})
    assert client.post(f"/api/v1/runs/{run_id}/params", json={"params": {"lr": 0.01}}).status_code == 200
    assert client.post(f"/api/v1/runs/{run_id}/tags", json={"add": ["best"], "remove": ["nightly"]}).status_code == 200
    points = [[None, "loss", step, 1.0 / (step + 1), None] for step in range(5)] + [[None, "acc", 0, 0.5, 12.0]]
    logged = client.post(f"/api/v1/runs/{run_id}/metrics", json={"points": points})
    assert logged.json() == {"run_id": run_id, "logged": 6}
    assert client.post(f"/api/v1/runs/{run_id}/heartbeat", json={}).status_code == 200
    assert client.post(f"/api/v1/runs/{run_id}/finish", json={"status": "completed"}).status_code == 200

    got = client.get(f"/api/v1/runs/{run_id}").json()
    assert (got["run"]["status"], got["run"]["user_name"]) == ("completed", "alice")
    assert got["params"] == {"layers": [64, 32], "lr": 0.01}
    assert [t["tag"] for t in got["tags"] if not t["system"]] == ["best"]
    assert got["metrics"] == {"acc": 0.5, "loss": 0.2}
    loss = client.get(f"/api/v1/runs/{run_id}/metrics", params={"name": "loss"}).json()["metrics"]
    assert [m["step"] for m in loss] == [0, 1, 2, 3, 4]
    assert client.get("/api/v1/flows").json()["flows"][0]["flow_name"] == "TrainFlow"
    assert client.get("/api/v1/metrics/names").json()["names"] == ["acc", "loss"]


def test_search_filters_sorts_and_pages(client: TestClient) -> None:
    ids = [new_run(client, flow_name="A" if i % 2 else "B", tags=["even"] if i % 2 == 0 else []) for i in range(6)]
    for i, run_id in enumerate(ids):
        client.post(f"/api/v1/runs/{run_id}/metrics", json={"points": [[None, "ndcg", 0, i / 10, None]]})
    top = client.get("/api/v1/runs", params={"sort": "metric:ndcg", "limit": 3}).json()
    assert [r["id"] for r in top["runs"]] == ids[::-1][:3] and top["total"] == 6
    assert [r["metrics"]["ndcg"] for r in top["runs"]] == [0.5, 0.4, 0.3]
    low = client.get("/api/v1/runs", params={"sort": "metric:ndcg", "order": "asc", "limit": 2, "offset": 1}).json()
    assert [r["id"] for r in low["runs"]] == ids[1:3]
    assert {r["id"] for r in client.get("/api/v1/runs", params={"flow": "A"}).json()["runs"]} == set(ids[1::2])
    assert {r["id"] for r in client.get("/api/v1/runs", params={"tag": "even"}).json()["runs"]} == set(ids[0::2])
    assert client.get("/api/v1/runs", params={"user": "alice", "status": "running"}).json()["total"] == 6
    future = client.get("/api/v1/runs", params={"since": str(time.time() + 3600)}).json()
    assert future["total"] == 0
    assert client.get("/api/v1/runs", params={"since": "2020-01-01T00:00:00"}).json()["total"] == 6


@pytest.mark.parametrize("value", ["' OR 1=1 --", "A'; DROP TABLE runs; --", '" OR ""="', "%", "_", "\\"])
def test_sql_metacharacters_in_filters_are_plain_values(client: TestClient, value: str) -> None:
    new_run(client, flow_name="Plain")
    tricky = new_run(client, flow_name=value, tags=[value])
    for name in ("flow", "tag", "user"):
        answer = client.get("/api/v1/runs", params={name: value})
        assert answer.status_code == 200
        expected = [] if name == "user" else [tricky]
        assert [r["id"] for r in answer.json()["runs"]] == expected, name
    assert client.get("/api/v1/runs", params={"sort": f"metric:{value}"}).json()["total"] == 0
    assert client.get("/api/v1/runs").json()["total"] == 2


@pytest.mark.parametrize("points, field", [
    ("nope", "points"),
    ([[None, "loss", 0, 1.0]], "points.0"),
    ([[None, "loss", 0, 1.0, None], [None, "loss", 1, 1.0, None], [None, "", 0, 1.0, None]], "points.2.name"),
    ([[None, "a", 0, 1.0, None]] * 3 + [[None, "loss", 0, "high", None]], "points.3.value"),
    ([[None, "loss", 0, True, None]], "points.0.value"),
    ([[None, "loss", 1.5, 1.0, None]], "points.0.step"),
    ([[-1, "loss", 0, 1.0, None]], "points.0.task_id"),
    ([[None, "loss", 0, 1.0, -5]], "points.0.ts"),
    ([[None, "loss", 2**70, 1.0, None]], "points.0.step"),
    ([[424242, "loss", 0, 1.0, None]], "points.task_id"),
])
def test_bad_metric_points_name_the_field(client: TestClient, points: Any, field: str) -> None:
    run_id = new_run(client)
    answer = client.post(f"/api/v1/runs/{run_id}/metrics", json={"points": points})
    assert answer.status_code == 400, answer.text
    assert error_field(answer) == field
    assert client.get(f"/api/v1/runs/{run_id}/metrics").json()["metrics"] == []


def test_a_bare_nan_literal_is_not_json(client: TestClient) -> None:
    run_id = new_run(client)
    answer = client.post(f"/api/v1/runs/{run_id}/metrics", content=b'{"points": [[null, "x", 0, NaN, null]]}',
                         headers=JSON)
    assert answer.status_code == 400 and error_field(answer) == "body"


def test_nan_and_infinities_round_trip_as_text(client: TestClient) -> None:
    """A diverged metric is logged as "NaN" (and "Infinity", "-Infinity") and read back the same way."""
    run_id = new_run(client)
    points = [[None, "loss", 0, 0.5, None], [None, "loss", 1, "Infinity", None], [None, "loss", 2, "NaN", None],
              [None, "grad", 0, "-Infinity", None]]
    assert client.post(f"/api/v1/runs/{run_id}/metrics", json={"points": points}).json()["logged"] == 4
    answer = client.get(f"/api/v1/runs/{run_id}/metrics", params={"name": "loss"})
    assert json.loads(answer.text, parse_constant=refuse) and [m["value"] for m in answer.json()["metrics"]] == [
        0.5, "Infinity", "NaN"]
    assert client.get(f"/api/v1/runs/{run_id}").json()["metrics"] == {"grad": "-Infinity", "loss": "NaN"}
    latest = client.post("/api/v1/metrics/latest", json={"run_ids": [run_id]}).json()["latest"]
    assert latest == {str(run_id): {"grad": "-Infinity", "loss": "NaN"}}
    other = new_run(client)
    client.post(f"/api/v1/runs/{other}/metrics", json={"points": [[None, "loss", 0, 9.0, None]]})
    for order in ("desc", "asc"):
        runs = client.get("/api/v1/runs", params={"sort": "metric:loss", "order": order}).json()["runs"]
        assert [(r["id"], r["sort_value"]) for r in runs] == [(other, 9.0), (run_id, "NaN")]
        assert runs[1]["metrics"]["loss"] == "NaN"
    bad_value = client.post(f"/api/v1/runs/{run_id}/metrics", json={"points": [[None, "loss", 3, "nan", None]]})
    assert bad_value.status_code == 400 and error_field(bad_value) == "points.0.value"


def refuse(name: str) -> None:
    raise AssertionError(f"{name} in a JSON answer")


@pytest.mark.parametrize("body, headers, status, field", [
    (b"{not json", JSON, 400, "body"),
    (b"[1, 2]", JSON, 400, "body"),
    (b'{"flow_name": "F"}', {"content-type": "text/plain"}, 415, "content-type"),
    (b'{"flow_name": "F"}', {}, 415, "content-type"),
    (b'{"flow_name": 5}', JSON, 400, "flow_name"),
    (b'{"flow_name": "F", "tags": ["user:root"]}', JSON, 400, "tag"),
    (b'{"flow_name": "F", "tags": [""]}', JSON, 400, "tags.0"),
    (b'{"flow_name": "F", "origin_run_id": 99999}', JSON, 404, "origin_run_id"),
    (b'{"flow_name": "F\\u0000"}', JSON, 400, "flow_name"),
    (b'{"flow_name": "\\ud800"}', JSON, 400, "flow_name"),
])
def test_bad_bodies_are_4xx_naming_the_field(client: TestClient, body: bytes, headers: dict[str, str], status: int,
                                             field: str) -> None:
    answer = client.post("/api/v1/runs", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert error_field(answer) == field


def test_a_json_body_over_the_limit_is_413(client: TestClient) -> None:
    answer = client.post("/api/v1/runs", content=b" " * (MAX_JSON_BYTES + 1), headers=JSON)
    assert answer.status_code == 413


@pytest.mark.parametrize("query, field", [
    ({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"offset": "-1"}, "offset"), ({"sort": "name"}, "sort"),
    ({"order": "up"}, "order"), ({"status": "done"}, "status"), ({"since": "yesterday"}, "since"),
])
def test_bad_query_values_name_the_parameter(client: TestClient, query: dict[str, str], field: str) -> None:
    answer = client.get("/api/v1/runs", params=query)
    assert answer.status_code == 400 and error_field(answer) == field


def test_missing_things_are_404(client: TestClient) -> None:
    for path in ("/api/v1/runs/999", "/api/v1/tasks/999", "/api/v1/models/m/versions/1", "/api/v1/models/m/versions/latest",
                 "/api/v1/models/m/aliases/prod", f"/api/v1/runs/{2**70}", "/api/v1/experiments/nope"):
        assert client.get(path).status_code == 404, path


# -- tasks and artifacts -------------------------------------------------------------------------------
def test_tasks_attempts_artifacts_and_clones(client: TestClient) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    ref = store.artifacts.save(np.arange(12, dtype=np.int32).reshape(3, 4))
    run_id = new_run(client)
    task_id = client.post(f"/api/v1/runs/{run_id}/tasks", json={"step": "train", "foreach_stack": [["fold", 2]]}
                          ).json()["task_id"]
    assert client.post(f"/api/v1/tasks/{task_id}/attempts", json={"attempt": 0}).status_code == 201
    assert client.post(f"/api/v1/tasks/{task_id}/attempts/0/finish", json={"status": "completed"}).status_code == 200
    artifacts = {"model": {"key": ref.key, "codec": ref.codec, "size": ref.size}}
    done = client.post(f"/api/v1/tasks/{task_id}/finish", json={"status": "completed", "transition": {"next": []},
                                                                "artifacts": artifacts})
    assert done.status_code == 200, done.text
    assert client.get(f"/api/v1/tasks/{task_id}/artifacts").json()["artifacts"] == artifacts
    assert client.get(f"/api/v1/tasks/{task_id}").json()["task"]["foreach_key"] == "fold:2"
    assert [a["status"] for a in client.get(f"/api/v1/tasks/{task_id}/attempts").json()["attempts"]] == ["completed"]
    assert len(client.get(f"/api/v1/runs/{run_id}/tasks", params={"step": "train"}).json()["tasks"]) == 1

    preview = client.get(f"/api/v1/runs/{run_id}/tasks/{task_id}/artifacts/model").json()
    assert (preview["preview"]["kind"], preview["preview"]["shape"], preview["preview"]["dtype"]) == (
        "array", [3, 4], "int32")
    raw = client.get(f"/api/v1/runs/{run_id}/tasks/{task_id}/artifacts/model/download")
    assert raw.status_code == 200 and content_key(raw.content) == ref.key
    other = new_run(client)
    assert client.get(f"/api/v1/runs/{other}/tasks/{task_id}/artifacts/model").status_code == 404
    assert client.get(f"/api/v1/runs/{run_id}/tasks/{task_id}/artifacts/nope").status_code == 404

    resumed = new_run(client, origin_run_id=run_id)
    clone = client.post(f"/api/v1/runs/{resumed}/tasks/clone",
                        json={"origin_task_id": task_id, "foreach_stack": [["fold", 2]], "input_paths": []})
    assert clone.status_code == 201
    assert client.get(f"/api/v1/tasks/{clone.json()['task_id']}/artifacts").json()["artifacts"] == artifacts
    again = client.post(f"/api/v1/runs/{run_id}/tasks", json={"step": "train", "foreach_stack": [["fold", 2]]})
    assert again.status_code == 409 and error_field(again) == "step"  # one task per run, step and foreach position
    assert client.post("/api/v1/runs/424242/tasks", json={"step": "x"}).status_code == 409


def test_a_pickled_object_is_named_in_its_preview_never_loaded(client: TestClient, tmp_path: Path) -> None:
    import pickle

    class Boom:
        def __reduce__(self) -> Any:
            return (Path.touch, (tmp_path / "ran",))

    store = client.app.state.store  # type: ignore[attr-defined]
    ref = store.artifacts.save_bytes(pickle.dumps(Boom()))
    run_id = new_run(client)
    task_id = client.post(f"/api/v1/runs/{run_id}/tasks", json={"step": "s"}).json()["task_id"]
    refs = {"evil": {"key": ref.key, "codec": "pickle", "size": ref.size}}
    assert client.post(f"/api/v1/tasks/{task_id}/finish", json={"status": "completed", "artifacts": refs}
                       ).status_code == 200
    shown = client.get(f"/api/v1/runs/{run_id}/tasks/{task_id}/artifacts/evil").json()["preview"]
    assert shown["kind"] in ("object", "unavailable")
    assert not (tmp_path / "ran").exists()  # the pickle's code never ran in the server


def test_a_stored_key_that_is_not_a_content_key_never_reaches_the_blob_store(client: TestClient) -> None:
    run_id = new_run(client)
    task_id = client.post(f"/api/v1/runs/{run_id}/tasks", json={"step": "s"}).json()["task_id"]
    bad = {"x": {"key": "../../etc/passwd", "codec": "bytes", "size": 1}}
    refused = client.post(f"/api/v1/tasks/{task_id}/finish", json={"status": "completed", "artifacts": bad})
    assert refused.status_code == 400 and error_field(refused) == "artifacts.x.key"
    odd = {"x": {"key": "z" * 64, "codec": "bytes", "size": 1}}  # letters, stored, but not a content key
    assert client.post(f"/api/v1/tasks/{task_id}/finish", json={"status": "completed", "artifacts": odd}).status_code == 200
    assert client.get(f"/api/v1/runs/{run_id}/tasks/{task_id}/artifacts/x/download").status_code == 404


# -- blobs -------------------------------------------------------------------------------------------------
def test_blobs_by_content_key(client: TestClient) -> None:
    data = b"hello blob" * 100
    key = content_key(data)
    assert client.head(f"/api/v1/blobs/{key}").status_code == 404
    put = client.put(f"/api/v1/blobs/{key}", content=data)
    assert (put.status_code, put.json()["created"]) == (201, True)
    assert client.put(f"/api/v1/blobs/{key}", content=data).json()["created"] is False
    assert client.head(f"/api/v1/blobs/{key}").status_code == 200
    got = client.get(f"/api/v1/blobs/{key}")
    assert got.content == data and got.headers["content-length"] == str(len(data))
    assert client.post(f"/api/v1/blobs/{key}/claim", json={}).json()["exists"] is True


def test_an_upload_that_does_not_hash_to_its_key_is_refused(client: TestClient) -> None:
    key = content_key(b"expected")
    answer = client.put(f"/api/v1/blobs/{key}", content=b"something else")
    assert answer.status_code == 400 and error_field(answer) == "key"
    assert client.head(f"/api/v1/blobs/{key}").status_code == 404


def test_an_upload_over_the_limit_is_413(client: TestClient) -> None:
    data = b"x" * ((1 << 16) + 1)
    answer = client.put(f"/api/v1/blobs/{content_key(data)}", content=data)
    assert answer.status_code == 413
    streamed = client.put(f"/api/v1/blobs/{content_key(data)}", content=iter([data[:1000], data[1000:]]))
    assert streamed.status_code == 413  # no Content-Length: counted as it arrives


@pytest.mark.parametrize("path", [
    "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%252F..%252Fetc",
    "A" * 64, "g" * 64, "a" * 63, "a" * 65, "%00" + "a" * 61, "a" * 64 + "%2F..", "....//....//etc/passwd",
    "%c0%ae%c0%ae%c0%af", "aa/" + "a" * 64, ".%2e/" + "a" * 64,
])
def test_path_tricks_on_blob_routes_never_read_a_file(client: TestClient, path: str) -> None:
    for method in ("GET", "HEAD", "PUT"):
        answer = client.request(method, f"/api/v1/blobs/{path}", content=b"x" if method == "PUT" else None)
        assert answer.status_code in (400, 404, 405), (method, path, answer.status_code)
        if answer.status_code == 400 and method != "HEAD":
            assert error_field(answer) == "key"
        assert b"root:" not in answer.content


# -- models and aliases --------------------------------------------------------------------------------------
def test_models_versions_aliases_and_audit(client: TestClient) -> None:
    run_id = new_run(client)
    for _ in range(3):
        answer = client.post("/api/v1/models/recs/versions", json={"run_id": run_id, "metrics": '{"ndcg": 0.3}',
                                                                  "artifact_key": "a" * 64, "description": "ease"})
        assert answer.status_code == 201, answer.text
    assert answer.json()["version"] == 3
    assert [v["version"] for v in client.get("/api/v1/models/recs/versions").json()["versions"]] == [1, 2, 3]
    assert client.get("/api/v1/models/recs/versions/latest").json()["version"]["version"] == 3
    assert client.get("/api/v1/models").json()["models"][0]["versions"] == 3

    assert client.put("/api/v1/models/recs/aliases/prod", json={"version": 1}).json()["previous"] is None
    assert client.put("/api/v1/models/recs/aliases/prod", json={"version": 2, "expected": 1}).json()["previous"] == 1
    stale = client.put("/api/v1/models/recs/aliases/prod", json={"version": 3, "expected": 1})
    assert stale.status_code == 409 and error_field(stale) == "expected"
    missing = client.put("/api/v1/models/recs/aliases/prod", json={"version": 9})
    assert missing.status_code == 404 and error_field(missing) == "version"
    assert client.post("/api/v1/models/recs/aliases/prod/rollback", json={}).json() == {
        "name": "recs", "alias": "prod", "from": 2, "to": 1}
    assert client.get("/api/v1/models/recs/aliases/prod").json()["alias"]["version"] == 1
    actions = [h["action"] for h in client.get("/api/v1/models/recs/history", params={"alias": "prod"}).json()["history"]]
    assert actions == ["set", "move", "rollback"]
    assert client.delete("/api/v1/models/recs/aliases/prod").json()["previous"] == 1
    assert client.get("/api/v1/models/recs/aliases").json()["aliases"] == []
    audit = client.get("/api/v1/audit").json()["entries"]
    moves = [(e["action"], e["outcome"]) for e in audit if e["action"].startswith("alias.")]
    assert moves[::-1] == [("alias.move", "ok"), ("alias.move", "ok"), ("alias.move", "refused"),
                           ("alias.move", "refused"), ("alias.rollback", "ok"), ("alias.delete", "ok")]


@pytest.mark.parametrize("fields, field", [
    ({"tags": "not json"}, "tags"), ({"metrics": "{"}, "metrics"), ({"metrics": '{"a": "high"}'}, "metrics"),
    ({"tags": '{"a": 1}'}, "tags"), ({"tags": "[1]"}, "tags"), ({"package_versions": "[]"}, "package_versions"),
    ({"metrics": '{"a": NaN}'}, "metrics"), ({"artifact_key": None}, "artifact_key"),
    ({"artifact_key": "../x"}, "artifact_key"), ({"codec": "x" * 17}, "codec"), ({"run_id": 424242}, "run_id"),
])
def test_a_model_version_is_checked_field_by_field(client: TestClient, fields: dict[str, Any], field: str) -> None:
    answer = client.post("/api/v1/models/recs/versions", json={"artifact_key": "a" * 64, **fields})
    assert answer.status_code in (400, 404) and error_field(answer) == field, answer.text
    assert client.get("/api/v1/models").json()["models"] == []


@pytest.mark.parametrize("path, field", [("/api/v1/models/has space/versions", "name"),
                                         ("/api/v1/models/.hidden/versions", "name")])
def test_model_names_the_registry_would_refuse_are_refused(client: TestClient, path: str, field: str) -> None:
    answer = client.post(path, json={"artifact_key": "a" * 64})
    assert answer.status_code == 400 and error_field(answer) == field
    client.post("/api/v1/models/ok/versions", json={"artifact_key": "a" * 64})
    moved = client.put("/api/v1/models/ok/aliases/9lives", json={"version": 1})
    assert moved.status_code == 400 and error_field(moved) == "alias"


def test_a_large_metric_batch_goes_in_several_requests(client: TestClient, served: tuple[str, dict[str, str]]) -> None:
    url, tokens = served
    writer = RemoteMetadataStore(Client(url, tokens["writer"]))
    run_id = writer.create_run("Big", "u")
    points = 120_000  # more than one request holds: the client splits the batch (its speed is in benchmarks/web)
    writer.log_metrics([(run_id, None, "x", i, float(i), 1.0) for i in range(points)])
    stored = writer.metrics(run_id, "x")
    assert [row["step"] for row in stored] == list(range(points))


# -- events, experiments, tokens ------------------------------------------------------------------------------
def test_recent_events_filtered(client: TestClient, home: Path) -> None:
    from matinee.core.events import EventLog

    with EventLog(home / "events" / "events.db") as log:
        for i in range(6):
            log.append_decision({"decision_id": f"d{i}", "ts": 1_700_000_000.0 + i, "unit_id": f"m{i % 2}", "endpoint": "recs", "model": "recs",
                                 "arm": "a" if i < 3 else "b", "context": [0.1], "candidates": [0, 1], "action": 1,
                                 "propensity": 0.5})
        log.append_feedback({"decision_id": "d4", "ts": 1_700_000_100.0, "event": "play", "reward": 1.0})
    recent = client.get("/api/v1/events", params={"limit": 4}).json()["events"]
    assert [e["decision_id"] for e in recent] == ["d5", "d4", "d3", "d2"]
    assert [e["decision_id"] for e in client.get("/api/v1/events", params={"arm": "a", "unit": "m0"}
                                                 ).json()["events"]] == ["d2", "d0"]
    feedback = client.get("/api/v1/events", params={"kind": "feedback", "arm": "b"}).json()["events"]
    assert [(f["decision_id"], f["reward"]) for f in feedback] == [("d4", 1.0)]
    assert client.get("/api/v1/events", params={"kind": "feedback", "arm": "a"}).json()["events"] == []
    assert client.get("/api/v1/events", params={"kind": "exposure"}).status_code == 400
    assert [e["decision_id"] for e in client.get("/api/v1/events", params={"decision": "d3"}).json()["events"]] == ["d3"]
    assert client.get("/api/v1/experiments").json() == {"experiments": []}
    # what the bandits page shows: decisions and reward per policy (model@arm)
    summary = client.get("/api/v1/bandits").json()["summary"]
    by_name = {p["name"]: p for p in summary["policies"]}
    assert by_name["recs@a"]["decisions"] == 3 and by_name["recs@b"]["decisions"] == 3
    assert by_name["recs@b"]["reward"] == pytest.approx(1 / 3) and by_name["recs@a"]["reward"] == 0
    assert client.get("/api/v1/bandits", params={"endpoint": "artwork"}).json()["summary"] is None  # none there
    assert client.get("/api/v1/bandits", params={"since": "yesterday-ish"}).status_code == 400


def test_bandits_without_an_event_log_is_an_empty_summary(client: TestClient) -> None:
    assert client.get("/api/v1/bandits").json() == {"summary": None}


def test_experiments_and_their_analysis(client: TestClient) -> None:
    from matinee.core.experiments.model import Experiment
    from matinee.core.experiments.store import create_experiment, start_experiment

    create_experiment(Experiment.build("ab1", ["recs@champion", "recs@challenger"], endpoint="recs"),
                      check_aliases=False)
    start_experiment("ab1")
    listed = client.get("/api/v1/experiments").json()["experiments"]
    assert [(e["name"], e["status"]) for e in listed] == [("ab1", "running")]
    assert client.get("/api/v1/experiments/ab1").json()["experiment"]["control"] == "champion"
    empty = client.get("/api/v1/experiments/ab1/analysis")
    assert empty.status_code == 404 and error_field(empty) == "name" and "no exposures" in empty.json()["detail"]
    missing = client.get("/api/v1/experiments/nope")
    assert missing.status_code == 404 and error_field(missing) == "name"


def test_tokens_are_shown_once_and_revoked(client: TestClient) -> None:
    made = client.post("/api/v1/tokens", json={"name": "ci", "role": "writer", "expires": "30d"})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token.startswith("mt_") and "secret_hash" not in made.json()
    listed = client.get("/api/v1/tokens", headers={"authorization": f"Bearer {token}"})
    assert listed.status_code == 403  # a writer cannot manage tokens; and now access control is on
    bad = client.post("/api/v1/tokens", json={"name": "x y", "role": "writer"})
    assert bad.status_code == 401  # no token: refused outright once a token exists
    writer_can = client.get("/api/v1/runs", headers={"authorization": f"Bearer {token}"})
    assert writer_can.status_code == 200


# -- a real server and the remote store -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    home = tmp_path_factory.mktemp("served")
    env = server_env(home)
    tokens = {role: create_token(env, role, role) for role in ("reader", "writer", "admin")}
    with matinee_server(env) as url:
        yield url, tokens


def test_a_server_without_a_token_refuses(served: tuple[str, dict[str, str]]) -> None:
    url, _tokens = served
    meta = RemoteMetadataStore(Client(url))
    with pytest.raises(ConfigError, match="MATINEE_TOKEN"):
        meta.list_runs()
    forged = RemoteMetadataStore(Client(url, "mt_000000000000_" + "A" * 43))
    with pytest.raises(ConfigError, match="MATINEE_TOKEN"):
        forged.list_flows()


def test_the_remote_store_by_role(served: tuple[str, dict[str, str]]) -> None:
    url, tokens = served
    reader = RemoteMetadataStore(Client(url, tokens["reader"]))
    writer = RemoteMetadataStore(Client(url, tokens["writer"]))
    admin = RemoteMetadataStore(Client(url, tokens["admin"]))
    with pytest.raises(ConfigError, match="MATINEE_TOKEN"):
        reader.create_run("F", "u")
    run_id = writer.create_run("F", "u", params={"p": 1})
    writer.log_metrics([(run_id, None, "m", i, float(i), time.time()) for i in range(10)])
    assert [r["id"] for r in reader.list_runs("F")] == [run_id]
    rows, total = reader.search_runs(flow="F", sort="metric:m")
    assert total == 1 and rows[0]["sort_value"] == 9.0 and "metrics" not in rows[0]
    assert reader.latest_metrics([run_id]) == {run_id: {"m": 9.0}}
    writer.log_metrics([(run_id, None, "edge", 0, float("inf"), 1.0), (run_id, None, "edge", 1, -np.inf, 2.0)])
    assert [r["value"] for r in reader.metrics(run_id, "edge")] == [float("inf"), float("-inf")]
    assert reader.latest_metrics([run_id])[run_id]["edge"] == float("-inf")
    writer.log_metrics([(run_id, None, "edge", 2, float("nan"), 3.0), (run_id, None, "diverged", 0, np.nan, 1.0)])
    assert math.isnan(reader.metrics(run_id, "edge")[2]["value"])
    assert math.isnan(reader.latest_metrics([run_id])[run_id]["edge"])
    rows, _ = reader.search_runs(sort="metric:diverged")
    assert [r["id"] for r in rows] == [run_id] and math.isnan(rows[0]["sort_value"])
    with pytest.raises(ParameterError, match="points.0.value"):
        writer.log_metrics([(run_id, None, "edge", 3, "high", 3.0)])
    assert "m" in reader.metric_names() and reader.metric_names([run_id]) == ["diverged", "edge", "m"]
    assert reader.metric_names([424242]) == []
    version = writer.add_model_version("recs", {"run_id": run_id, "artifact_key": "b" * 64})
    with pytest.raises(ConfigError, match="MATINEE_TOKEN"):
        writer.move_alias("recs", "prod", version, "set", "u")
    assert admin.move_alias("recs", "prod", version, "set", "u") is None
    with pytest.raises(ConflictError):
        admin.move_alias("recs", "prod", version, "move", "u", expected=version + 5)
    with pytest.raises(NotFoundError):
        admin.rollback_alias("recs", "prod", "u")
    with pytest.raises(ParameterError):
        writer.add_tags(run_id, ["user:root"])
    with pytest.raises(NotSupportedError, match="server"):
        admin.referenced_keys()


def test_remote_blobs_round_trip_and_verify(served: tuple[str, dict[str, str]]) -> None:
    url, tokens = served
    settings = load_settings(tracking_uri=url, token=tokens["writer"])
    _meta, blobs = open_remote(settings)
    artifacts = ArtifactStore(blobs)
    value = {"weights": np.linspace(0, 1, 50_000), "name": "ease"}
    ref = artifacts.save(value)
    assert blobs.exists(ref.key) and blobs.claim(ref.key)
    loaded = ArtifactStore(RemoteBlobStore(Client(url, tokens["reader"]))).load(ref)
    assert loaded["name"] == "ease" and np.array_equal(loaded["weights"], value["weights"])
    import pandas as pd

    for other in (np.arange(100_000, dtype=np.float32).reshape(1000, 100)[:, ::2],  # not contiguous
                  pd.DataFrame({"a": range(1000), "b": ["x"] * 1000}), b"raw bytes"):
        again = ArtifactStore(RemoteBlobStore(Client(url, tokens["reader"]))).load(artifacts.save(other))
        if isinstance(other, np.ndarray):
            assert np.array_equal(again, other)
        elif isinstance(other, pd.DataFrame):
            assert again.equals(other)
        else:
            assert again == other
    with pytest.raises(NotFoundError):
        blobs.open(content_key(b"never stored"))
    with pytest.raises(ParameterError, match="key"):
        blobs.put(content_key(b"a"), [b"b"])
    with pytest.raises(NotSupportedError):
        blobs.delete(ref.key)


WRITER = """
import sys, time
from matinee.core.storage.remote import Client, RemoteMetadataStore
url, token, run_id, worker = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
meta = RemoteMetadataStore(Client(url, token))
for i in range(300):
    meta.log_metrics([(run_id, None, "w%d" % worker, i, float(i), time.time()),
                      (run_id, None, "w%d.sq" % worker, i, float(i * i), time.time())])
"""


def test_four_processes_log_through_one_server_at_once(served: tuple[str, dict[str, str]]) -> None:
    url, tokens = served
    meta = RemoteMetadataStore(Client(url, tokens["writer"]))
    run_id = meta.create_run("Busy", "u")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, tokens["writer"], str(run_id), str(w)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(4)]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert len(meta.metrics(run_id)) == 4 * 300 * 2
    for w in range(4):
        assert [r["step"] for r in meta.metrics(run_id, f"w{w}")] == list(range(300))


def test_the_client_keeps_one_connection_per_thread(served: tuple[str, dict[str, str]]) -> None:
    url, tokens = served
    client = Client(url, tokens["reader"])
    client.call("GET", "flows")
    first = client._local.conn[1]
    for _ in range(20):
        client.call("GET", "flows")
    assert client._local.conn[1] is first and first.sock is not None
    first.sock.shutdown(socket.SHUT_RDWR)  # the idle connection is gone: the request goes again on a new one
    assert client.call("GET", "health")["status"] == "ok"


def test_an_unreachable_server_is_one_clear_error() -> None:
    meta = RemoteMetadataStore(Client("http://127.0.0.1:9"))
    with pytest.raises(Exception, match="MATINEE_TRACKING_URI"):
        meta.list_flows()
    with pytest.raises(ConfigError, match="http://host:port"):
        Client("ftp://example")

