"""The authorization matrix, against one real ``matinee server`` on 127.0.0.1.

Every route the app declares x every kind of caller (none, reader, writer, admin,
expired, revoked, forged, garbage) -> exactly the expected class of answer:
public routes never 401/403; no or a bad credential 401 (a page GET: 303 to
/login); a role below the route's 403; a sufficient role neither. Every
denial is in the audit log. Then the browser session: login, CSRF, revocation.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from _web_helpers import MODEL, Seeded, WebServer, audit_rows, cli, seed
from starlette.routing import Mount, Route

import _web_server
from matinee.config import load_settings
from matinee.core.storage.metadata import MetadataStore
from matinee.core.store import close_stores
from matinee.web.auth import ROLES, create_token

CALLERS = ("none", "reader", "writer", "admin", "expired", "revoked", "forged", "garbage")
BAD = ("none", "expired", "revoked", "forged", "garbage")


@dataclass(frozen=True)
class Endpoint:
    method: str
    template: str
    role: str | None  # None: public

    @property
    def api(self) -> bool:
        return self.template.startswith("/api/")

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def endpoints(home: Path) -> list[Endpoint]:
    """Every (method, path) the app routes, with the role its handler declares; fails on an unguarded one."""
    from matinee.web.app import create_app

    app = create_app(load_settings(home=str(home)), host="127.0.0.1")
    out: list[Endpoint] = []
    unguarded = []
    for route in app.routes:
        if isinstance(route, Mount):
            target = route.app
            if not hasattr(target, "required_role"):
                unguarded.append(f"mount {route.path}")
            continue
        assert isinstance(route, Route), route
        if not hasattr(route.endpoint, "required_role"):
            unguarded.append(f"{sorted(route.methods or [])} {route.path}")
            continue
        role = route.endpoint.required_role
        assert role is None or role in ROLES, (route.path, role)
        for method in sorted(route.methods or []):
            out.append(Endpoint(method, route.path, role))
    close_stores()
    assert not unguarded, f"routes without access control (no @requires/@public): {unguarded}"
    return out


def concrete(template: str, seeded: Seeded) -> str:
    """``template`` with real path parameters from the seeded store."""
    values = {"run_id": seeded.run_id, "task_id": seeded.task_id, "attempt": 0, "version": 1,
              "key": seeded.blob_key, "alias": seeded.alias}
    if template.startswith("/api/v1/runs/"):
        values["name"] = seeded.artifact
    elif template.startswith(("/api/v1/models", "/models")):
        values["name"] = seeded.model
    elif template.startswith("/api/v1/tokens"):
        values["name"] = "spare"
    elif template.startswith("/static/"):
        values["name"] = "app.js"
    else:
        values["name"] = "matrix-exp"  # an experiment
    path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: str(values[m.group(1)]), template)
    assert "{" not in path, template
    return path + ("?runs=" + str(seeded.run_id) if template == "/compare" else "")


# -- the server ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Seeded, WebServer, list[Endpoint]]]:
    home = tmp_path_factory.mktemp("matrix") / "home"
    data = seed(home)
    created = json.loads(cli(home, "tokens", "create", "--name", "expired", "--role", "admin",
                             "--expires", "1s", "--json").stdout)
    data.tokens["expired"] = created["token"]
    meta = MetadataStore.open(f"sqlite:///{home / 'matinee.db'}")
    for name in ("browser", "forms"):  # admins for the session tests (the browser one gets revoked)
        data.tokens[name] = create_token(meta, name, "admin", "tester")[0]
    meta.close()
    cli(home, "experiments", "create", "matrix-exp", "--arm", f"{MODEL}@champion", "--arm", f"{MODEL}@challenger")
    cli(home, "experiments", "start", "matrix-exp")
    routes = endpoints(home.parent / "listing")
    with WebServer(home) as server:
        time.sleep(max(0.0, created["expires_at"] - time.time() + 0.05))
        yield data, server, routes


#: The CSRF value the matrix's login posts carry in both the cookie and the form.
LOGIN_CSRF = "matrix-login-csrf-value-0123"


def headers_for(caller: str, data: Seeded) -> dict[str, str]:
    return {} if caller == "none" else {"authorization": f"Bearer {data.tokens[caller]}"}


def request_for(endpoint: Endpoint, caller: str, data: Seeded) -> dict[str, Any]:
    """A request each route can parse (the handler may still refuse its content: that is not the point)."""
    kwargs: dict[str, Any] = {"headers": headers_for(caller, data)}
    if endpoint.method in ("POST", "PUT", "DELETE", "PATCH"):
        if endpoint.template == "/login":  # a browser's own login form: its CSRF cookie and field
            kwargs["data"] = {"token": data.tokens.get(caller, ""), "next": "/runs", "csrf": LOGIN_CSRF}
            kwargs["headers"]["cookie"] = f"matinee_csrf={LOGIN_CSRF}"
        elif endpoint.api and endpoint.template.startswith("/api/v1/blobs/") and endpoint.method == "PUT":
            kwargs["content"] = b"not the key's bytes"
            kwargs["headers"]["content-type"] = "application/octet-stream"
        elif endpoint.api:
            kwargs["json"] = {}
        else:
            kwargs["data"] = {"alias": "staging", "version": "1"}
    return kwargs


def expected(endpoint: Endpoint, caller: str) -> str:
    """``ok`` (neither 401 nor 403), ``401``, ``login`` (a page GET: 303 to /login) or ``403``."""
    if endpoint.role is None:
        return "ok"
    if caller in BAD:
        return "login" if not endpoint.api and endpoint.method == "GET" else "401"
    return "ok" if ROLES.index(caller) >= ROLES.index(endpoint.role) else "403"


def outcome(response: httpx.Response) -> str:
    if response.status_code == 303 and response.headers.get("location", "").startswith("/login"):
        return "login"
    if response.status_code in (401, 403):
        return str(response.status_code)
    return "ok"


def test_every_route_declares_a_role(seeded: tuple[Seeded, WebServer, list[Endpoint]]) -> None:
    _, _, routes = seeded
    templates = {e.template for e in routes}
    # the surface the contract names is there (so an empty or renamed table fails loudly)
    for path in ("/api/v1/health", "/api/v1/runs", "/api/v1/blobs/{key}", "/api/v1/models/{name}/aliases/{alias}",
                 "/api/v1/tokens", "/login", "/runs", "/runs/{run_id}", "/models/{name}/promote"):
        assert path in templates
    public = {str(e) for e in routes if e.role is None}
    assert public <= {"GET /api/v1/health", "HEAD /api/v1/health", "GET /api/v1/openapi.json",
                      "HEAD /api/v1/openapi.json", "GET /login", "HEAD /login", "POST /login", "POST /logout",
                      "GET /static/{name}", "HEAD /static/{name}"}, public
    admin = {str(e) for e in routes if e.role == "admin"}
    for needed in ("PUT /api/v1/models/{name}/aliases/{alias}", "DELETE /api/v1/models/{name}/aliases/{alias}",
                   "POST /api/v1/models/{name}/aliases/{alias}/rollback", "GET /api/v1/tokens",
                   "POST /api/v1/tokens", "DELETE /api/v1/tokens/{name}", "POST /models/{name}/promote",
                   "POST /models/{name}/rollback"):
        assert needed in admin
    # POSTs that only read (a list of ids in the body) may be reader's; every other write needs writer or more
    reads = {"POST /api/v1/runs/tags", "POST /api/v1/metrics/latest", "POST /api/v1/metrics/names"}
    writes = [e for e in routes if e.method not in ("GET", "HEAD") and e.role is not None and str(e) not in reads]
    assert [str(e) for e in writes if e.role == "reader"] == []


def test_authorization_matrix(seeded: tuple[Seeded, WebServer, list[Endpoint]]) -> None:
    data, server, routes = seeded
    before = {row["id"] for row in audit_rows(data.home)}
    wrong: list[str] = []
    denials: Counter[tuple[str, int]] = Counter()
    logins: Counter[str] = Counter()
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as client:
        for endpoint in routes:
            path = concrete(endpoint.template, data)
            for caller in CALLERS:
                client.cookies.clear()
                response = client.request(endpoint.method, path, **request_for(endpoint, caller, data))
                want, got = expected(endpoint, caller), outcome(response)
                if endpoint.role is None and got == "login":
                    got = "ok"  # a public route may send anyone to the login page (logout does)
                if endpoint.template == "/login" and endpoint.method == "POST":
                    # the form's token is the credential here: a bad one is a 401 page, a good one a session
                    want = "401" if caller in BAD else "login-ok"
                    got = "login-ok" if response.status_code == 303 else got
                    logins[caller] += 1
                if got != want or response.status_code >= 500:
                    wrong.append(f"{endpoint} as {caller}: {response.status_code} (expected {want}) "
                                 f"{response.text[:160]!r}")
                elif want in ("401", "403", "login") and endpoint.template != "/login":
                    denials[(f"{endpoint.method} {path.split('?')[0]}", 302 if want == "login" else int(want))] += 1
                if want in ("401", "login") and endpoint.api and endpoint.method != "HEAD":
                    assert response.headers.get("content-type", "").startswith("application/json")
                    assert response.json().get("error")
    assert not wrong, f"{len(wrong)} wrong answers:\n" + "\n".join(wrong)
    assert server.alive()

    # every denial is in the audit log, with its status
    rows = [r for r in audit_rows(data.home) if r["id"] not in before and r["outcome"] == "denied"]
    logged = Counter((r["action"], r["status"]) for r in rows if r["action"] != "login")
    assert logged == Counter({(action, 401 if status == 302 else status): n for (action, status), n in denials.items()})
    assert sum(1 for r in rows if r["action"] == "login") == sum(logins[c] for c in BAD)
    reasons = {r["detail"] for r in rows if r["status"] == 401}
    assert {"missing", "expired", "revoked", "invalid"} <= reasons


def test_sufficient_roles_get_2xx_for_well_formed_requests(
        seeded: tuple[Seeded, WebServer, list[Endpoint]]) -> None:
    data, server, routes = seeded
    from matinee.core.artifacts.hashing import ContentHasher

    content = b"bytes uploaded by the matrix test"
    hasher = ContentHasher()
    hasher.update(content)
    key = hasher.hexdigest()
    run, task = data.run_id, data.task_id
    admin, writer = headers_for("admin", data), headers_for("writer", data)
    with httpx.Client(base_url=server.url, timeout=30) as setup:  # a second run, and an alias with a history
        other = setup.post("/api/v1/runs", json={"flow_name": "SecondFlow"}, headers=writer).json()["run_id"]
        for version in (1, 2):
            moved = setup.put(f"/api/v1/models/{MODEL}/aliases/history", json={"version": version}, headers=admin)
            assert moved.status_code == 200, moved.text
        draft = {"name": "api-draft", "model": MODEL, "endpoint": "artwork",
                 "arms": [{"alias": "history", "weight": 0.5}, {"alias": "challenger", "weight": 0.5}]}
        made = setup.post("/api/v1/experiments", json={"experiment": draft}, headers=writer)
        assert made.status_code == 201, made.text
    version_fields = {"run_id": run, "task_id": task, "artifact_name": "model", "artifact_key": data.blob_key,
                      "codec": "bytes", "size": len(data.blob_bytes), "description": "v3"}
    # (method, template) -> (path, request kwargs, acceptable statuses); run in this order
    recipes: dict[tuple[str, str], tuple[str, dict[str, Any], tuple[int, ...]]] = {}

    def add(method: str, template: str, path: str | None = None, expect: tuple[int, ...] = (200,),
            **kwargs: Any) -> None:
        recipes[(method, template)] = (path or concrete(template, data), kwargs, expect)

    add("GET", "/api/v1/health")
    add("GET", "/api/v1/openapi.json")
    add("POST", "/api/v1/runs", expect=(201,), json={"flow_name": "OtherFlow", "tags": ["x"], "params": {"a": 1}})
    add("GET", "/api/v1/runs", "/api/v1/runs?sort=metric:auc&limit=10")
    add("POST", "/api/v1/runs/tags", json={"run_ids": [run]})
    add("GET", "/api/v1/runs/{run_id:int}")
    add("POST", "/api/v1/runs/{run_id:int}/heartbeat")
    add("GET", "/api/v1/runs/{run_id:int}/tags")
    add("POST", "/api/v1/runs/{run_id:int}/tags", json={"add": ["added"], "remove": ["nope"]})
    add("GET", "/api/v1/runs/{run_id:int}/params")
    add("POST", "/api/v1/runs/{run_id:int}/params", json={"params": {"k": [1, 2]}})
    add("GET", "/api/v1/runs/{run_id:int}/metrics")
    add("POST", "/api/v1/runs/{run_id:int}/metrics", json={"points": [[None, "loss", 0, 0.25, None]]})
    add("GET", "/api/v1/runs/{run_id:int}/tasks")
    add("POST", "/api/v1/runs/{run_id:int}/tasks", expect=(201,), json={"step": "train"})
    add("POST", "/api/v1/runs/{run_id:int}/tasks/clone", f"/api/v1/runs/{other}/tasks/clone", expect=(201,),
        json={"origin_task_id": task})
    add("GET", "/api/v1/runs/{run_id:int}/tasks/{task_id:int}/artifacts/{name}")
    add("GET", "/api/v1/runs/{run_id:int}/tasks/{task_id:int}/artifacts/{name}/download")
    add("POST", "/api/v1/runs/{run_id:int}/finish", json={"status": "completed"})
    add("GET", "/api/v1/flows")
    add("POST", "/api/v1/metrics/latest", json={"run_ids": [run]})
    add("GET", "/api/v1/metrics/names")
    add("POST", "/api/v1/metrics/names", json={"run_ids": [run]})
    add("GET", "/api/v1/tasks/{task_id:int}")
    add("GET", "/api/v1/tasks/{task_id:int}/attempts")
    add("POST", "/api/v1/tasks/{task_id:int}/attempts", expect=(201,), json={"attempt": 1})
    add("POST", "/api/v1/tasks/{task_id:int}/attempts/{attempt:int}/finish",
        f"/api/v1/tasks/{task}/attempts/1/finish", json={"status": "completed"})
    add("POST", "/api/v1/tasks/{task_id:int}/finish", json={"status": "completed"})
    add("GET", "/api/v1/tasks/{task_id:int}/artifacts")
    add("PUT", "/api/v1/blobs/{key}", f"/api/v1/blobs/{key}", expect=(201,), content=content,
        headers={"content-type": "application/octet-stream"})
    add("GET", "/api/v1/blobs/{key}", f"/api/v1/blobs/{key}")
    add("HEAD", "/api/v1/blobs/{key}", f"/api/v1/blobs/{key}")
    add("POST", "/api/v1/blobs/{key}/claim", f"/api/v1/blobs/{key}/claim")
    add("GET", "/api/v1/models")
    add("GET", "/api/v1/models/{name}/versions")
    add("POST", "/api/v1/models/{name}/versions", expect=(201,), json=version_fields)
    add("GET", "/api/v1/models/{name}/versions/latest")
    add("GET", "/api/v1/models/{name}/versions/{version:int}")
    add("GET", "/api/v1/models/{name}/aliases")
    history = f"/api/v1/models/{MODEL}/aliases/history"
    add("GET", "/api/v1/models/{name}/aliases/{alias}", history)
    add("PUT", "/api/v1/models/{name}/aliases/{alias}", history, json={"version": 1})
    add("POST", "/api/v1/models/{name}/aliases/{alias}/rollback", f"{history}/rollback", json={})
    add("DELETE", "/api/v1/models/{name}/aliases/{alias}", f"/api/v1/models/{MODEL}/aliases/history")
    add("GET", "/api/v1/models/{name}/history")
    add("GET", "/api/v1/experiments")
    add("GET", "/api/v1/experiments/{name}")
    add("GET", "/api/v1/experiments/{name}/analysis", expect=(404,))  # started, but no exposures logged yet
    # the alias recipes above deleted 'history' by now: this one asks for no alias check
    add("POST", "/api/v1/experiments", expect=(201,), json={"experiment": {**draft, "name": "api-exp"},
                                                            "check_aliases": False})
    add("POST", "/api/v1/experiments/{name}/start", "/api/v1/experiments/api-exp/start", json={})
    add("POST", "/api/v1/experiments/{name}/stop", "/api/v1/experiments/api-exp/stop", json={"at": time.time() + 1})
    add("DELETE", "/api/v1/experiments/{name}", "/api/v1/experiments/api-draft")
    add("GET", "/api/v1/events")
    add("GET", "/api/v1/bandits")
    add("GET", "/api/v1/tokens")
    add("POST", "/api/v1/tokens", expect=(201,), json={"name": "made-by-api", "role": "reader", "expires": "1d"})
    add("DELETE", "/api/v1/tokens/{name}", "/api/v1/tokens/made-by-api")
    add("GET", "/api/v1/audit")
    for page in ("/", "/runs", "/runs/{run_id}", "/compare", "/models", "/models/{name}", "/experiments",
                 "/bandits", "/events", "/login", "/static/{name}"):
        path = concrete(page, data) + (f"&runs={other}" if page == "/compare" else "")
        add("GET", page, path, expect=(200, 302, 303, 307) if page == "/" else (200,))
    add("GET", "/experiments/{name}")
    add("POST", "/models/{name}/promote", expect=(303,), data={"alias": "staging", "version": "2"})
    recipes[("POST", "/models/{name}/promote-again")] = (f"/models/{MODEL}/promote",
                                                         {"data": {"alias": "staging", "version": "1"}}, (303,))
    add("POST", "/models/{name}/rollback", expect=(303,), data={"alias": "staging"})
    add("POST", "/logout", expect=(303,))
    add("POST", "/login", expect=(303,), data={"token": data.tokens["reader"], "next": "/runs", "csrf": LOGIN_CSRF},
        headers={"cookie": f"matinee_csrf={LOGIN_CSRF}"})

    by_key = {(e.method, e.template): e for e in routes}
    missing = [f"{m} {t}" for (m, t) in by_key if (m, t) not in recipes and m != "HEAD"]
    assert not missing, f"routes with no well-formed request in this test: {missing}"
    wrong = []
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as client:
        for (method, template), (path, kwargs, expect) in recipes.items():
            endpoint = by_key.get((method, template.replace("-again", "")))
            if endpoint is None:
                wrong.append(f"{method} {template}: not routed")
                continue
            caller = endpoint.role or "reader"  # the least role that may call it
            kwargs = {**kwargs, "headers": {**headers_for(caller, data), **kwargs.get("headers", {})}}
            client.cookies.clear()
            response = client.request(method, path, **kwargs)
            if response.status_code not in expect:
                wrong.append(f"{method} {path} as {caller}: {response.status_code} (expected {expect}) "
                             f"{response.text[:200]!r}")
    assert not wrong, "\n".join(wrong)
    moves = [r for r in audit_rows(data.home) if r["action"].startswith("alias.")]
    assert {(r["action"], r["actor"], r["outcome"]) for r in moves} >= {
        ("alias.move", "admin", "ok"), ("alias.rollback", "admin", "ok"), ("alias.delete", "admin", "ok"),
        ("alias.promote", "admin", "ok")}


def test_every_alias_move_by_an_admin_is_audited(seeded: tuple[Seeded, WebServer, list[Endpoint]]) -> None:
    data, server, _ = seeded
    admin = headers_for("admin", data)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        moved = client.put(f"/api/v1/models/{MODEL}/aliases/audited", json={"version": 2}, headers=admin)
        assert moved.status_code == 200, moved.text
        again = client.put(f"/api/v1/models/{MODEL}/aliases/audited", json={"version": 1, "expected": 9},
                           headers=admin)
        assert again.status_code == 409
        gone = client.delete(f"/api/v1/models/{MODEL}/aliases/audited", headers=admin)
        assert gone.status_code == 200
        denied = client.put(f"/api/v1/models/{MODEL}/aliases/audited", json={"version": 2},
                            headers=headers_for("writer", data))
        assert denied.status_code == 403
    rows = [r for r in audit_rows(data.home) if r["target"] and "audited" in r["target"]]
    seen = [(r["action"], r["outcome"], r["actor"]) for r in reversed(rows)]
    assert seen == [("alias.move", "ok", "admin"), ("alias.move", "refused", "admin"),
                    ("alias.delete", "ok", "admin"),
                    (f"PUT /api/v1/models/{MODEL}/aliases/audited", "denied", "writer")]
    assert rows[0]["status"] == 403 and rows[0]["role"] == "writer"


def test_tokens_turn_access_control_on_even_on_loopback(seeded: tuple[Seeded, WebServer, list[Endpoint]]) -> None:
    _, server, _ = seeded
    assert "(tokens required)" in server.first_line
    response = httpx.get(f"{server.url}/api/v1/runs")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].lower().startswith("bearer")


def test_without_tokens_on_loopback_everything_is_allowed(tmp_path: Path,
                                                           seeded: tuple[Seeded, WebServer, list[Endpoint]]) -> None:
    _, _, routes = seeded
    data = seed(tmp_path / "open", tokens=False)
    wrong = []
    with WebServer(data.home) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert "no access control" in server.first_line
        csrf = client.get("/login").cookies.get("matinee_csrf")
        assert csrf
        for endpoint in routes:
            if endpoint.template == "/login" and endpoint.method == "POST":
                continue  # nothing to log in to
            kwargs = request_for(endpoint, "none", data)
            if not endpoint.api and endpoint.method == "POST":
                kwargs["headers"]["x-csrf-token"] = csrf  # a browser page: CSRF still applies
            response = client.request(endpoint.method, concrete(endpoint.template, data), **kwargs)
            if response.status_code in (401, 403) or response.status_code >= 500 or (
                    outcome(response) == "login" and endpoint.role is not None):
                wrong.append(f"{endpoint}: {response.status_code} {response.text[:160]!r}")
        # a page POST without the CSRF value is still refused: another site cannot drive a local dashboard
        client.cookies.clear()
        refused = client.post(f"/models/{MODEL}/promote", data={"alias": "x", "version": "1"})
        assert refused.status_code == 403, server.log()[-3000:]
    assert not wrong, "\n".join(wrong)


def test_browser_session_login_csrf_and_revocation(seeded: tuple[Seeded, WebServer, list[Endpoint]]) -> None:
    data, server, _ = seeded
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as browser:
        page = browser.get("/login?next=/models")
        assert page.status_code == 200
        csrf = browser.cookies.get("matinee_csrf")
        assert csrf and f'value="{csrf}"' in page.text
        assert any("httponly" in c.lower() and "samesite=strict" in c.lower()
                   for c in page.headers.get_list("set-cookie") if c.startswith("matinee_csrf="))

        bad = browser.post("/login", data={"token": data.tokens["forged"], "csrf": csrf, "next": "/models"})
        assert bad.status_code == 401 and "matinee_session" not in bad.headers.get("set-cookie", "")
        # login CSRF: a form another site posts (no field, or not this browser's value) logs nobody in
        for field in ({}, {"csrf": "y" * 32}):
            cross = browser.post("/login", data={"token": data.tokens["browser"], "next": "/models", **field})
            assert cross.status_code == 403 and "matinee_session" not in cross.headers.get("set-cookie", "")

        login = browser.post("/login", data={"token": data.tokens["browser"], "csrf": csrf, "next": "/models"})
        assert login.status_code == 303 and login.headers["location"] == "/models"
        cookie = next(c for c in login.headers.get_list("set-cookie") if c.startswith("matinee_session="))
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "path"} <= attributes and "samesite=strict" in cookie.lower()
        assert data.tokens["browser"].split("_", 2)[2] not in cookie

        runs = browser.get("/runs")
        assert runs.status_code == 200 and runs.headers["cache-control"] == "no-store"
        tags = f"/api/v1/runs/{data.run_id}/tags"
        assert browser.get(tags).status_code == 200
        # cookie-authenticated writes need the CSRF value; Bearer ones do not
        assert browser.post(tags, json={"add": ["s1"]}).status_code == 403
        assert browser.post(tags, json={"add": ["s1"]}, headers={"x-csrf-token": "x" * 32}).status_code == 403
        assert browser.post(tags, json={"add": ["s1"]}, headers={"x-csrf-token": csrf}).status_code == 200

        cli(data.home, "tokens", "revoke", "browser")
        after = browser.get("/runs")
        assert after.status_code == 303 and after.headers["location"].startswith("/login")
        assert browser.get(tags).status_code == 401
        assert browser.post(tags, json={"add": ["s2"]}, headers={"x-csrf-token": csrf}).status_code == 401
    denied = [r for r in audit_rows(data.home, 200) if r["outcome"] == "denied" and r["detail"] == "revoked"]
    assert any(r["action"] == f"GET {tags}" for r in denied)
    csrf_denials = [r for r in audit_rows(data.home, 200) if r["detail"] == "csrf"]
    assert len(csrf_denials) >= 4
    assert sum(r["action"] == "POST /login" for r in csrf_denials) == 2


def test_servers_given_one_web_secret_share_sessions(tmp_path: Path) -> None:
    """Two servers on one store with the same ``web_secret`` accept each other's sessions; one
    keeping its own random key does not."""
    import _web_server

    data = seed(tmp_path / "a")
    shared = "k" * 16 + "-shared-session-key"
    store = {"MATINEE_METADATA_URL": f"sqlite:///{data.home / 'matinee.db'}",
             "MATINEE_BLOB_URL": str(data.home / "blobs")}
    first = _web_server.WebServer(_web_server.server_env(data.home, MATINEE_WEB_SECRET=shared))
    second = _web_server.WebServer(_web_server.server_env(tmp_path / "b", MATINEE_WEB_SECRET=shared, **store))
    own_key = _web_server.WebServer(_web_server.server_env(tmp_path / "c", **store))
    with first, second, own_key, httpx.Client(base_url=first.url, timeout=30) as browser:
        csrf = browser.get("/login").cookies.get("matinee_csrf")
        login = browser.post("/login", data={"token": data.tokens["reader"], "csrf": csrf, "next": "/runs"})
        assert login.status_code == 303, login.text
        cookies = {"matinee_session": browser.cookies["matinee_session"]}
        assert httpx.get(f"{second.url}/runs", cookies=cookies, timeout=30).status_code == 200
        elsewhere = httpx.get(f"{own_key.url}/runs", cookies=cookies, timeout=30)
        assert elsewhere.status_code == 303 and elsewhere.headers["location"].startswith("/login")
    assert not (tmp_path / "b" / "web-secret").exists()
    assert (tmp_path / "c" / "web-secret").exists()


def test_ctrl_c_stops_the_server_with_status_0(tmp_path: Path) -> None:
    import signal

    server = _web_server.WebServer(_web_server.server_env(tmp_path / "home"), command="ui").start()
    try:
        assert httpx.get(f"{server.url}/runs", timeout=30).status_code == 200
        assert server.process is not None
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(timeout=30) == 0, server.log()[-3000:]
        assert "Traceback" not in server.log() and "Aborted" not in server.log()
    finally:
        server.stop()


def test_a_short_web_secret_is_refused_naming_the_setting(tmp_path: Path) -> None:
    env = _web_server.server_env(tmp_path / "short", MATINEE_WEB_SECRET="too-short")
    done = subprocess.run([sys.executable, "-m", "matinee.cli.main", "ui", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: web_secret must be at least 32 characters")
    assert done.stderr.count("\n") == 1


def test_browser_forms_carry_the_csrf_field(seeded: tuple[Seeded, WebServer, list[Endpoint]]) -> None:
    """The promote form of a logged-in browser: refused without its hidden ``csrf`` field, done with it."""
    data, server, _ = seeded
    close = {"connection": "close"}  # a refused form must not take the next request down with it
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False, headers=close) as browser:
        browser.get("/login")
        csrf = browser.cookies.get("matinee_csrf")
        login = browser.post("/login", data={"token": data.tokens["forms"], "csrf": csrf, "next": "/models"})
        assert login.status_code == 303
        no_field = browser.post(f"/models/{MODEL}/promote", data={"alias": "session", "version": "2"})
        wrong = browser.post(f"/models/{MODEL}/promote", data={"alias": "session", "version": "2",
                                                                "csrf": "x" * 32})
        promoted = browser.post(f"/models/{MODEL}/promote", data={"alias": "session", "version": "2", "csrf": csrf})
    assert (no_field.status_code, wrong.status_code, promoted.status_code) == (403, 403, 303), server.log()[-2000:]
    alias = httpx.get(f"{server.url}/api/v1/models/{MODEL}/aliases/session", headers=headers_for("reader", data))
    assert alias.json()["alias"]["version"] == 2
