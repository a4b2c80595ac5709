"""Hostile input against a real ``matinee server`` on 127.0.0.1.

Path tricks on every route that names a blob, an artifact or a static file;
uploads over the limit; malformed, mistyped and oversized JSON; SQL
metacharacters in every filter; markup in everything a user can name; the
security headers; DNS rebinding and cross-origin writes.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from _web_helpers import MODEL, Seeded, WebServer, audit_rows, seed

from matinee.core.artifacts.hashing import ContentHasher

XSS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')
SQL = ("' OR 1=1 --", "%", "_", ";DROP TABLE runs", "x'; DELETE FROM runs; --", '" OR ""="', "\\", "*")
LIMIT_MB = 1


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Seeded, WebServer, str]]:
    root = tmp_path_factory.mktemp("hostile")
    home = root / "home"
    secret = f"TOP-SECRET-{uuid.uuid4().hex}"
    data = seed(home, tags=("nightly", *XSS), params={XSS[0]: XSS[1], "note": XSS[0]},
                description=f"desc {XSS[0]} {XSS[1]}", model_tags=json.dumps(list(XSS)))
    # secrets next to the blob store, above it, and inside it under a name that is not a key
    (home / "secret.txt").write_text(secret)
    (root / "secret.txt").write_text(secret)
    (home / "blobs" / "secret.txt").write_text(secret)
    with WebServer(home, "--max-upload-mb", str(LIMIT_MB)) as server:
        writer = {"authorization": f"Bearer {data.tokens['writer']}"}
        with httpx.Client(base_url=server.url, headers=writer, timeout=30) as client:
            made = client.post("/api/v1/runs", json={"flow_name": XSS[0], "tags": list(XSS)})
            assert made.status_code == 201, made.text
            client.post(f"/api/v1/runs/{made.json()['run_id']}/metrics",
                        json={"points": [[None, XSS[1], 0, 1.0, None]]}).raise_for_status()
            version = client.post(f"/api/v1/models/{quote(XSS[1], safe='')}/versions",
                                  json={"run_id": data.run_id, "artifact_key": data.blob_key, "codec": "bytes",
                                        "size": 1, "description": XSS[0], "tags": json.dumps([XSS[1]])})
            assert version.status_code in (201, 400), version.text  # a markup model name may be refused
        yield data, server, secret


def auth(data: Seeded, role: str = "admin") -> dict[str, str]:
    return {"authorization": f"Bearer {data.tokens[role]}"}


def raw_request(url: str, method: str, target: str, headers: dict[str, str] | None = None,
                body: bytes = b"", host: str | None = None) -> tuple[int, bytes]:
    """Send ``target`` byte for byte (no client normalises ``../`` away), with ``host`` as the Host
    header (default the URL's); returns (status, whole response)."""
    parts = urlsplit(url)
    headers = {"Content-Length": str(len(body)), **(headers or {})}
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host or parts.netloc}", "Connection: close",
             *[f"{k}: {v}" for k, v in headers.items()]]
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=30) as sock:
        sock.sendall("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    match = re.match(rb"HTTP/1\.[01] (\d{3})", response)
    assert match, response[:200]
    return int(match.group(1)), response


# -- paths -----------------------------------------------------------------------------------------------
TRAVERSALS = [
    "../secret.txt", "..%2fsecret.txt", "..%2Fsecret.txt", "%2e%2e%2fsecret.txt", "%2E%2E%2Fsecret.txt",
    "%252e%252e%252fsecret.txt", "..%5csecret.txt", "..\\secret.txt", "....//secret.txt", "..%c0%afsecret.txt",
    "%2e%2e/%2e%2e/secret.txt", "../../secret.txt", "..%252f..%252fsecret.txt", "secret.txt",
    "%2fetc%2fpasswd", "/etc/passwd", "..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "secret.txt%00",
    "%00", "a%00b", "%e2%80%a4%e2%80%a4%2fsecret.txt", "%ef%bc%8e%ef%bc%8e%ef%bc%8fsecret.txt",
    "%c0%ae%c0%ae%2fsecret.txt", "~", ".", "..", "%2e", "%2e%2e", "a" * 5000, "0" * 64 + "/../secret.txt",
    "file:%2f%2f%2fetc%2fpasswd", "%20",
]


def _leaks(response: bytes, secret: str) -> bool:
    return secret.encode() in response or b"root:x:0:0" in response


def test_blob_routes_never_reach_a_file_by_path(hostile: tuple[Seeded, WebServer, str]) -> None:
    data, server, secret = hostile
    upper = data.blob_key.upper()
    wrong = []
    for trick in [*TRAVERSALS, upper, data.blob_key[:-1], data.blob_key + "0", data.blob_key[:2] + "/" + data.blob_key]:
        for method, suffix in (("GET", ""), ("HEAD", ""), ("POST", "/claim"), ("PUT", "")):
            headers = {**auth(data), "Content-Type": "application/octet-stream"}
            status, response = raw_request(server.url, method, f"/api/v1/blobs/{trick}{suffix}", headers,
                                           secret.encode() if method == "PUT" else b"")
            if status not in (400, 404, 405) or _leaks(response, secret):
                wrong.append(f"{method} /api/v1/blobs/{trick[:60]}{suffix}: {status} {response[-200:]!r}")
    assert not wrong, "\n".join(wrong)
    # the real key still works, and nothing was written outside the store
    status, response = raw_request(server.url, "GET", f"/api/v1/blobs/{data.blob_key}", auth(data))
    assert status == 200 and data.blob_bytes in response
    outside = [p for p in data.home.parent.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert sorted(p.relative_to(data.home.parent).as_posix() for p in outside) == [
        "home/blobs/secret.txt", "home/secret.txt", "secret.txt"]


def test_artifact_and_static_routes_never_reach_a_file_by_path(hostile: tuple[Seeded, WebServer, str]) -> None:
    data, server, secret = hostile
    base = f"/api/v1/runs/{data.run_id}/tasks/{data.task_id}/artifacts"
    wrong = []
    for trick in TRAVERSALS:
        for target in (f"{base}/{trick}", f"{base}/{trick}/download", f"/static/{trick}",
                       f"/runs/{trick}", f"/models/{trick}", f"/api/v1/models/{trick}/versions"):
            status, response = raw_request(server.url, "GET", target, auth(data))
            # a model name is a database value, not a path: an unknown one may list no versions
            allowed = (200, 400, 404) if target.startswith("/api/v1/models/") else (400, 404)
            if status not in allowed or _leaks(response, secret):
                wrong.append(f"GET {target[:90]}: {status} {response[-160:]!r}")
    assert not wrong, "\n".join(wrong)
    for name in ("app.py", "../pages.py", "..%2fpages.py", "style.css%00.py", "../../config.py", "APP.JS"):
        status, response = raw_request(server.url, "GET", f"/static/{name}")
        assert status in (400, 404) and b"import " not in response, (name, status)
    status, _ = raw_request(server.url, "GET", "/static/app.js")
    assert status == 200


# -- uploads ----------------------------------------------------------------------------------------------
def _key(content: bytes) -> str:
    hasher = ContentHasher()
    hasher.update(content)
    return hasher.hexdigest()


def test_oversized_uploads_are_refused_and_the_server_stays_up(hostile: tuple[Seeded, WebServer, str]) -> None:
    data, server, _ = hostile
    big = b"x" * ((LIMIT_MB << 20) + 1)
    headers = {**auth(data, "writer"), "content-type": "application/octet-stream"}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        declared = client.put(f"/api/v1/blobs/{_key(big)}", content=big, headers=headers)
        assert declared.status_code == 413 and declared.json()["field"] == "body"

        def stream() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            for start in range(0, len(big), 64 << 10):
                yield big[start:start + (64 << 10)]

        chunked = client.put(f"/api/v1/blobs/{_key(big)}", content=stream(), headers=headers)
        assert chunked.status_code == 413
        status, _ = raw_request(server.url, "PUT", f"/api/v1/blobs/{_key(big)}",
                                {**headers, "Content-Length": str(10 << 30)})  # a lie, no body sent
        assert status == 413
        json_body = b'{"flow_name": "' + b"a" * (33 << 20) + b'"}'
        too_much = client.post("/api/v1/runs", content=json_body,
                               headers={**auth(data, "writer"), "content-type": "application/json"})
        assert too_much.status_code == 413
        assert client.get("/api/v1/health").status_code == 200
        small = b"fits in the limit"
        fine = client.put(f"/api/v1/blobs/{_key(small)}", content=small, headers=headers)
        assert fine.status_code == 201
    assert server.alive()
    assert not list((data.home / "blobs").rglob(f"*{_key(big)}*"))


# -- JSON ------------------------------------------------------------------------------------------------
def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


BAD_BODIES: list[tuple[str, str, Any, int, str]] = [
    # (method, path under /api/v1 ({run} is a run id), body: bytes sent as JSON or a value to encode,
    #  status, field the answer names)
    ("POST", "/runs", b"{", 400, "body"),
    ("POST", "/runs", b"", 400, "body"),
    ("POST", "/runs", b"[1, 2]", 400, "body"),
    ("POST", "/runs", b'"text"', 400, "body"),
    ("POST", "/runs", b'{"flow_name": NaN}', 400, "body"),
    ("POST", "/runs", b'{"flow_name": "a", "params": {"x": Infinity}}', 400, "body"),
    ("POST", "/runs", b"[" * 100_000 + b"]" * 100_000, 400, "body"),
    ("POST", "/runs", b"\xff\xfe{}", 400, "body"),
    ("POST", "/runs", {}, 400, "flow_name"),
    ("POST", "/runs", {"flow_name": 5}, 400, "flow_name"),
    ("POST", "/runs", {"flow_name": ""}, 400, "flow_name"),
    ("POST", "/runs", {"flow_name": "a\u0000b"}, 400, "flow_name"),
    ("POST", "/runs", {"flow_name": "x" * 100_000}, 400, "flow_name"),
    ("POST", "/runs", {"flow_name": "f", "tags": "nightly"}, 400, "tags"),
    ("POST", "/runs", {"flow_name": "f", "tags": [1]}, 400, "tags.0"),
    ("POST", "/runs", {"flow_name": "f", "origin_run_id": 10**30}, 400, "origin_run_id"),
    ("POST", "/runs", {"flow_name": "f", "origin_run_id": -1}, 400, "origin_run_id"),
    ("POST", "/runs", {"flow_name": "f", "origin_run_id": True}, 400, "origin_run_id"),
    ("POST", "/runs", {"flow_name": "f", "origin_run_id": "1"}, 400, "origin_run_id"),
    ("POST", "/runs", {"flow_name": "f", "params": [1]}, 400, "params"),
    ("POST", "/runs", {"flow_name": "f", "params": _nested(200)}, 400, "params.a.a.a."),
    ("POST", "/runs", {"flow_name": "f", "params": {"n": 10**40}}, 400, "params.n"),
    ("POST", "/runs/{run}/metrics", {"points": "x"}, 400, "points"),
    ("POST", "/runs/{run}/metrics", b'{"points": [[null, "m", 0, 1e400, null]]}', 400, "points.0.value"),
    ("POST", "/runs/{run}/metrics", {"points": [[None, "m", 0, "1.0", None]]}, 400, "points.0.value"),
    ("POST", "/runs/{run}/metrics", {"points": [[None, "m", 10**30, 1.0, None]]}, 400, "points.0.step"),
    ("POST", "/runs/{run}/metrics", {"points": [[None, "m", 0, 1.0, -5.0]]}, 400, "points.0.ts"),
    ("POST", "/runs/{run}/metrics", {"points": [[None, 7, 0, 1.0, None]]}, 400, "points.0.name"),
    ("POST", "/runs/{run}/metrics", {"points": [[1, 2]]}, 400, "points.0"),
    ("POST", "/runs/{run}/metrics", {"points": [[10**30, "m", 0, 1.0, None]]}, 400, "points.0.task_id"),
    ("POST", "/runs/{run}/finish", {"status": "done"}, 400, "status"),
    ("POST", "/runs/{run}/finish", {"status": ["completed"]}, 400, "status"),
    ("POST", "/runs/{run}/tags", {"add": [""]}, 400, "add.0"),
    ("POST", "/runs/tags", {"run_ids": ["1"]}, 400, "run_ids.0"),
    ("POST", "/runs/tags", {"run_ids": 1}, 400, "run_ids"),
    ("POST", "/metrics/latest", {"run_ids": [1.5]}, 400, "run_ids.0"),
    ("PUT", "/models/" + MODEL + "/aliases/champion", {"version": "2"}, 400, "version"),
    ("PUT", "/models/" + MODEL + "/aliases/champion", {"version": 0}, 400, "version"),
    ("PUT", "/models/" + MODEL + "/aliases/champion", {"version": 10**30}, 400, "version"),
    ("PUT", "/models/" + MODEL + "/aliases/champion", {"version": 1, "action": "Drop Table"}, 400, "action"),
    ("PUT", "/models/" + MODEL + "/aliases/champion", {"version": 1, "action": "rollback"}, 400, "action"),
    ("POST", "/tokens", {"name": "x", "role": "root"}, 400, "role"),
    ("POST", "/tokens", {"name": "../x", "role": "reader"}, 400, "name"),
    ("POST", "/tokens", {"name": "ok-name", "role": "reader", "expires": "forever"}, 400, "expires"),
]


@pytest.mark.parametrize(("method", "path", "payload", "status", "field"), BAD_BODIES,
                         ids=[f"{m} {p} {i}" for i, (m, p, *_) in enumerate(BAD_BODIES)])
def test_bad_json_is_a_4xx_naming_the_field(hostile: tuple[Seeded, WebServer, str], method: str, path: str,
                                            payload: Any, status: int, field: str) -> None:
    data, server, _ = hostile
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = httpx.request(method, server.url + "/api/v1" + path.replace("{run}", str(data.run_id)),
                             content=content, timeout=30,
                             headers={**auth(data), "content-type": "application/json"})
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] and body["detail"]
    assert str(body.get("field")).startswith(field), body


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                   "application/jsonp", "application/octet-stream", "text/json"])
def test_api_bodies_must_be_json(hostile: tuple[Seeded, WebServer, str], ctype: str | None) -> None:
    data, server, _ = hostile
    headers = {**auth(data), **({"content-type": ctype} if ctype else {})}
    response = httpx.post(f"{server.url}/api/v1/runs", content=b'{"flow_name": "f"}', headers=headers)
    assert response.status_code == 415
    assert response.json()["field"] == "content-type"


def test_a_model_version_missing_its_artifact_key_names_the_field(hostile: tuple[Seeded, WebServer, str]) -> None:
    """A required field left out is the client's mistake: 400 naming it, not a database error."""
    data, server, _ = hostile
    response = httpx.post(f"{server.url}/api/v1/models/{MODEL}/versions", json={"run_id": data.run_id},
                          headers=auth(data))
    assert response.status_code == 400, response.text
    assert response.json().get("field") == "artifact_key"
    assert "constraint" not in response.text.lower()


@pytest.mark.parametrize(("query", "field"), [
    ("limit=abc", "limit"), ("limit=-1", "limit"), ("limit=100000000000000000000000", "limit"),
    ("offset=-5", "offset"), ("sort=bogus", "sort"), ("sort=metric:", "sort"), ("order=sideways", "order"),
    ("status=done", "status"), ("since=yesterday", "since"), ("until=1e400", "until"), ("since=nan", "since"),
    ("flow=a%00b", "flow"),
])
def test_bad_query_values_name_the_parameter(hostile: tuple[Seeded, WebServer, str], query: str, field: str) -> None:
    data, server, _ = hostile
    response = httpx.get(f"{server.url}/api/v1/runs?{query}", headers=auth(data, "reader"))
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


def test_a_model_version_with_unreadable_json_fields_does_not_break_its_page(
        hostile: tuple[Seeded, WebServer, str]) -> None:
    """A writer's odd ``tags``/``metrics`` text must not take the model page down for everyone."""
    data, server, _ = hostile
    for model, extra in (("broken-tags", {"tags": "not json"}), ("broken-metrics", {"metrics": "{"})):
        made = httpx.post(f"{server.url}/api/v1/models/{model}/versions", headers=auth(data, "writer"),
                          json={"run_id": data.run_id, "artifact_key": data.blob_key, "codec": "bytes", "size": 1,
                                **extra})
        assert made.status_code in (201, 400), made.text
        if made.status_code == 400:
            assert made.json()["field"] in extra  # refused at the door, naming the field: fine too
            continue
        page = httpx.get(f"{server.url}/models/{model}", headers=auth(data, "reader"))
        assert page.status_code == 200, (model, page.status_code)
        assert httpx.get(f"{server.url}/models", headers=auth(data, "reader")).status_code == 200


def test_huge_ids_in_paths_are_not_found(hostile: tuple[Seeded, WebServer, str]) -> None:
    data, server, _ = hostile
    wrong = []
    for path in ("/api/v1/runs/99999999999999999999999999", "/api/v1/tasks/9223372036854775808",
                 f"/api/v1/models/{MODEL}/versions/99999999999999999999", "/runs/99999999999999999999999",
                 "/runs/-1", "/runs/abc", "/compare?runs=1&runs=99999999999999999999999",
                 "/api/v1/runs?offset=99999999999999999999"):
        response = httpx.get(server.url + path, headers=auth(data, "reader"))
        if response.status_code not in (400, 404):
            wrong.append(f"{path}: {response.status_code} {response.text[:100]!r}")
    assert not wrong, "\n".join(wrong)


# -- SQL metacharacters ------------------------------------------------------------------------------------
def test_sql_metacharacters_in_filters_are_plain_values(hostile: tuple[Seeded, WebServer, str]) -> None:
    data, server, _ = hostile
    reader = auth(data, "reader")
    with httpx.Client(base_url=server.url, headers=reader, timeout=30) as client:
        everything = client.get("/api/v1/runs?limit=1000").json()["total"]
        marked = client.post("/api/v1/runs", json={"flow_name": "SqlFlow", "tags": [SQL[0]]},
                             headers=auth(data, "writer"))
        assert marked.status_code == 201
        marked_id = marked.json()["run_id"]
        for value in SQL:
            for name in ("flow", "tag", "user"):
                response = client.get("/api/v1/runs", params={name: value, "limit": 1000})
                assert response.status_code == 200, (name, value, response.text)
                ids = [r["id"] for r in response.json()["runs"]]
                assert ids == ([marked_id] if (name, value) == ("tag", SQL[0]) else []), (name, value, ids)
            response = client.get("/api/v1/runs", params={"sort": f"metric:{value}"})
            assert response.status_code == 200 and response.json()["total"] == 0, (value, response.text)
            assert client.get("/api/v1/runs", params={"status": value}).status_code == 400
            metrics = client.get(f"/api/v1/runs/{data.run_id}/metrics", params={"name": value})
            assert metrics.status_code == 200 and metrics.json()["metrics"] == []
            history = client.get(f"/api/v1/models/{MODEL}/history", params={"alias": value})
            assert history.status_code == 200 and history.json()["history"] == []
            tasks = client.get(f"/api/v1/runs/{data.run_id}/tasks", params={"step": value})
            assert tasks.status_code == 200 and tasks.json()["tasks"] == []
            assert client.get("/api/v1/events", params={"model": value, "arm": value}).status_code == 200
            for page in ("/runs", "/events"):
                shown = client.get(page, params={"flow": value, "tag": value, "user": value, "model": value})
                assert shown.status_code == 200, (page, value, shown.status_code)
                assert f'href="/runs/{marked_id}"' not in shown.text
            assert client.get("/runs", params={"sort": f"metric:{value}"}).status_code in (200, 400)
        after = client.get("/api/v1/runs?limit=1000").json()["total"]
    assert after == everything + 1  # nothing dropped, nothing deleted


# -- markup ------------------------------------------------------------------------------------------------
def _no_live_markup(html: str, where: str) -> None:
    for payload in XSS:
        assert payload not in html, f"{where} shows {payload!r} unescaped"
    assert "<img src=x" not in html.lower() and "<script>alert" not in html.lower(), where
    for tag in re.findall(r"<script\b[^>]*>", html, flags=re.I):
        assert "src=" in tag or 'type="application/json"' in tag, f"{where}: inline script {tag}"
    for block in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, flags=re.S):
        assert "<" not in block, f"{where}: a JSON block carries a raw '<'"


def test_markup_in_names_tags_params_and_descriptions_is_escaped(hostile: tuple[Seeded, WebServer, str]) -> None:
    data, server, _ = hostile
    reader = auth(data, "reader")
    with httpx.Client(base_url=server.url, headers=reader, timeout=30) as client:
        runs = client.get("/api/v1/runs?limit=1000").json()["runs"]
        ids = [r["id"] for r in runs][:5]
        pages = ["/runs", f"/runs?tag={quote(XSS[0])}", f"/runs?sort=metric:{quote(XSS[1])}",
                 f"/runs?flow={quote(XSS[0])}", *[f"/runs/{i}" for i in ids],
                 "/compare?" + "&".join(f"runs={i}" for i in ids[:3]), "/models", f"/models/{MODEL}",
                 f"/login?next={quote(XSS[1])}", "/events", "/experiments", "/bandits",
                 f"/runs/{quote(XSS[1])}", f"/models/{quote(XSS[1])}"]
        seen = 0
        for page in pages:
            response = client.get(page)
            assert response.status_code in (200, 400, 404), (page, response.status_code)
            _no_live_markup(response.text, page)
            seen += response.text.count("alert(1)")
        assert seen >= 10  # the payloads are shown (escaped), so the checks above are not vacuous
        run_page = client.get(f"/runs/{data.run_id}").text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run_page or "\\u003cscript\\u003e" in run_page
        model_page = client.get(f"/models/{MODEL}").text
        assert "alert(1)" in model_page  # the description is shown, escaped


# -- headers, hosts and origins ------------------------------------------------------------------------------
def _csp(response: httpx.Response) -> dict[str, list[str]]:
    policy = response.headers.get("content-security-policy", "")
    out = {}
    for directive in filter(None, (d.strip() for d in policy.split(";"))):
        name, *values = directive.split()
        out[name] = values
    return out


def test_security_headers_on_pages_api_and_errors(hostile: tuple[Seeded, WebServer, str]) -> None:
    data, server, _ = hostile
    reader = auth(data, "reader")
    checks = [("/runs", reader, True), (f"/runs/{data.run_id}", reader, True), ("/models", reader, True),
              ("/login", {}, True), ("/runs", {}, True), ("/api/v1/runs", reader, True), ("/api/v1/runs", {}, True),
              ("/api/v1/health", {}, True), ("/api/v1/nothing-here", reader, True), ("/no-such-page", reader, True),
              (f"/api/v1/blobs/{data.blob_key}", reader, True), ("/static/app.js", {}, False)]
    for path, headers, no_store in checks:
        response = httpx.get(server.url + path, headers=headers, follow_redirects=False)
        csp = _csp(response)
        assert csp, (path, response.headers)
        script = csp.get("script-src", csp.get("default-src"))
        assert script is not None and "'unsafe-inline'" not in script and "'unsafe-eval'" not in script, path
        assert "*" not in script and not any(s.startswith(("http:", "https:", "data:")) for s in script), path
        assert csp.get("frame-ancestors") == ["'none'"], path
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers.get("referrer-policy") == "same-origin", path
        if no_store:
            assert response.headers.get("cache-control") == "no-store", path
        else:
            assert "no-store" not in response.headers.get("cache-control", "")


def test_a_server_without_tokens_answers_only_loopback_host_names(tmp_path: Path) -> None:
    data = seed(tmp_path / "open", tokens=False)
    with WebServer(data.home) as server:
        port = urlsplit(server.url).port
        for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}", "10.0.0.1",
                     f"localhost.evil.example:{port}", "0.0.0.0", f"[::2]:{port}"):
            for path in ("/runs", "/api/v1/runs", "/api/v1/health"):
                status, response = _with_host(server.url, path, host)
                assert status == 403, (host, path, status, response[-200:])
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", "127.0.0.1"):
            status, _ = _with_host(server.url, "/api/v1/runs", host)
            assert status == 200, host


def _with_host(url: str, path: str, host: str, method: str = "GET") -> tuple[int, bytes]:
    return raw_request(url, method, path, host=host)


def test_cross_origin_writes_are_refused(hostile: tuple[Seeded, WebServer, str]) -> None:
    data, server, _ = hostile
    writer = auth(data, "writer")
    body = {"flow_name": "CrossOrigin"}
    with httpx.Client(base_url=server.url, headers=writer, timeout=30) as client:
        for origin in ("http://evil.example", "null", server.url.replace("127.0.0.1", "localhost"),
                       server.url + ".evil.example", server.url.replace("http:", "https:"), "http://127.0.0.1"):
            refused = client.post("/api/v1/runs", json=body, headers={"origin": origin})
            assert refused.status_code == 403, origin
            assert refused.json()["field"] == "origin"
            page = client.post(f"/models/{MODEL}/promote", data={"alias": "x", "version": "1"},
                               headers={"origin": origin, **auth(data)})
            assert page.status_code == 403, origin
        assert client.get("/api/v1/runs", headers={"origin": "http://evil.example"}).status_code == 200
        same = client.post("/api/v1/runs", json=body, headers={"origin": server.url})
        assert same.status_code == 201
        assert client.get("/api/v1/runs", params={"flow": "CrossOrigin"}).json()["total"] == 1


# -- redirects, headers and secrets ------------------------------------------------------------------------------
OFFSITE = ["//evil.example", "https://evil.example/", "/\\evil.example", "\\\\evil.example", "javascript:alert(1)",
           "/\t/evil.example", "/\n/evil.example", " //evil.example", "/%2F/evil.example", "http:evil.example",
           "//evil.example/%2e%2e", "/.//evil.example"]


@pytest.mark.parametrize("target", OFFSITE)
def test_login_never_redirects_off_site(hostile: tuple[Seeded, WebServer, str], target: str) -> None:
    data, server, _ = hostile
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as browser:
        form = browser.get("/login", params={"next": target})
        assert form.status_code == 200
        done = browser.post("/login", data={"token": data.tokens["reader"], "next": target,
                                            "csrf": browser.cookies["matinee_csrf"]})
    assert done.status_code == 303
    location = done.headers["location"]
    squeezed = "".join(c for c in location if c not in "\t\r\n ")
    assert squeezed.startswith("/") and not squeezed.startswith(("//", "/\\")), location
    assert "evil.example" not in location.split("?")[0][:2]


def test_artifact_names_cannot_inject_headers(hostile: tuple[Seeded, WebServer, str]) -> None:
    """A writer names an artifact with quotes and CRLF: the download's Content-Disposition stays one header."""
    data, server, _ = hostile
    writer = auth(data, "writer")
    name = 'x"\r\nSet-Cookie: pwned=1\r\nX-Evil: "1'
    with httpx.Client(base_url=server.url, headers=writer, timeout=30) as client:
        run = client.post("/api/v1/runs", json={"flow_name": "Named"}).json()["run_id"]
        task = client.post(f"/api/v1/runs/{run}/tasks", json={"step": "start"}).json()["task_id"]
        ref = {"key": data.blob_key, "codec": "bytes", "size": len(data.blob_bytes)}
        finished = client.post(f"/api/v1/tasks/{task}/finish", json={"status": "completed", "artifacts": {name: ref}})
        if finished.status_code == 400:  # refusing such a name at the door is fine too
            assert finished.json()["field"].startswith("artifacts")
            return
        assert finished.status_code == 200, finished.text
    status, response = raw_request(server.url, "GET", f"/api/v1/runs/{run}/tasks/{task}/artifacts/"
                                   f"{quote(name, safe='')}/download", auth(data, "reader"))
    head = response.split(b"\r\n\r\n", 1)[0].lower()
    assert status == 200 and data.blob_bytes in response
    lines = head.split(b"\r\n")
    assert not [line for line in lines if line.startswith((b"set-cookie: pwned", b"x-evil"))], head
    disposition = [line for line in head.split(b"\r\n") if line.startswith(b"content-disposition")]
    assert len(disposition) == 1 and disposition[0].count(b'"') == 2


def test_token_secrets_never_reach_logs_or_the_audit_log(hostile: tuple[Seeded, WebServer, str]) -> None:
    data, server, _ = hostile
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.get("/login")
        for token in data.tokens.values():
            client.get("/api/v1/tokens", headers={"authorization": f"Bearer {token}"})
            client.post("/login", data={"token": token, "next": "/runs", "csrf": client.cookies["matinee_csrf"]})
        client.cookies.clear()  # the logins above left a session: a token in the URL is not a credential
        assert client.get("/api/v1/runs", params={"token": data.tokens["admin"]}).status_code == 401
        entries = client.get("/api/v1/audit?limit=1000", headers=auth(data)).text
    secrets = [t.split("_", 2)[2] for t in data.tokens.values() if t.startswith("mt_")]
    for text in (entries, server.log()):
        for secret in secrets:
            assert secret not in text


def test_cross_origin_refusals_are_audited(hostile: tuple[Seeded, WebServer, str]) -> None:
    """A write from another origin is a denial like any other: it is in the audit log."""
    data, server, _ = hostile
    marker = f"/api/v1/runs/{data.run_id}/tags"
    refused = httpx.post(server.url + marker, json={"add": ["x"]},
                         headers={**auth(data, "writer"), "origin": "http://evil.example"})
    assert refused.status_code == 403
    rows = [r for r in audit_rows(data.home, 200) if r["outcome"] == "denied" and r["target"] == marker]
    assert rows and rows[0]["status"] == 403, rows[:3]
