"""matinee.web.auth in-process: tokens, durations, token states, verification, sessions, the server secret."""

from __future__ import annotations

import hashlib
import multiprocessing
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from matinee.core.storage.metadata import MetadataStore
from matinee.errors import ConflictError, MatineeError, ParameterError
from matinee.web.auth import (
    CSRF_COOKIE,
    LOCAL,
    ROLES,
    SESSION_COOKIE,
    Auth,
    HttpError,
    Principal,
    check_token_name,
    create_token,
    hash_secret,
    is_loopback,
    parse_duration,
    public,
    requires,
    server_secret,
    token_state,
)

TOKEN = re.compile(r"mt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "meta.db"


@pytest.fixture
def meta(db_path: Path) -> Iterator[MetadataStore]:
    store = MetadataStore.open(f"sqlite:///{db_path}")
    yield store
    store.close()


@pytest.fixture
def auth(meta: MetadataStore) -> Auth:
    return Auth(meta, "127.0.0.1", b"k" * 32)


def refused(call: Any, status: int = 401) -> HttpError:
    with pytest.raises(HttpError) as info:
        call()
    assert info.value.status == status
    return info.value


# -- tokens -----------------------------------------------------------------------------
def test_token_format_and_only_its_hash_is_stored(meta: MetadataStore, db_path: Path) -> None:
    token, row = create_token(meta, "ci-bot", "writer", "tester", None)
    match = TOKEN.fullmatch(token)
    assert match is not None, token
    token_id, secret = match.groups()
    assert row["id"] == token_id and row["role"] == "writer" and row["expires_at"] is None
    assert "secret_hash" not in row  # listings never carry even the hash
    stored = meta.get_token(token_id)
    assert stored is not None
    assert stored["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest() == hash_secret(secret)
    meta.close()
    files = [p for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)]
    raw = b"".join(p.read_bytes() for p in files)
    assert token_id.encode() in raw  # the id is stored: the check below is not vacuous
    assert secret.encode() not in raw
    assert token.encode() not in raw


def test_tokens_are_random_and_names_unique(meta: MetadataStore) -> None:
    first, _ = create_token(meta, "a", "reader", "tester")
    second, _ = create_token(meta, "b", "reader", "tester")
    assert first != second and first.split("_")[1] != second.split("_")[1]
    with pytest.raises(ConflictError):
        create_token(meta, "a", "admin", "tester")


@pytest.mark.parametrize("name", ["", "-lead", "a b", "x" * 65, "name/../x", "é", None, 3])
def test_bad_token_names_are_refused(name: Any) -> None:
    with pytest.raises(ParameterError, match="token name"):
        check_token_name(name)


@pytest.mark.parametrize("role", ["root", "", "Admin", None])
def test_unknown_roles_are_refused(meta: MetadataStore, role: Any) -> None:
    with pytest.raises(ParameterError, match="role"):
        create_token(meta, "x", role, "tester")


@pytest.mark.parametrize(("text", "seconds"), [
    ("30d", 30 * 86400), ("12h", 12 * 3600), ("90m", 90 * 60), ("45s", 45), ("1w", 7 * 86400),
    ("1w2d", 9 * 86400), ("1d 12h", 36 * 3600), (" 2H ", 7200), ("1.5h", 5400),
    ("never", None), ("Never", None), ("none", None), ("", None), (None, None),
])
def test_parse_duration(text: str | None, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "abc", "1x", "0s", "0d", "-1d", "1.5.5h", "3d and more", "d", "1e400d"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ParameterError, match="expires") as info:
        parse_duration(text)
    assert info.value.fields.get("parameter") == "expires"


@pytest.mark.parametrize(("row", "state"), [
    ({"revoked_at": None, "expires_at": None}, "active"),
    ({"revoked_at": None, "expires_at": 1001.0}, "active"),
    ({"revoked_at": None, "expires_at": 1000.0}, "expired"),
    ({"revoked_at": None, "expires_at": 10.0}, "expired"),
    ({"revoked_at": 5.0, "expires_at": None}, "revoked"),
    ({"revoked_at": 5.0, "expires_at": 10.0}, "revoked"),
])
def test_token_state(row: dict[str, Any], state: str) -> None:
    assert token_state(row, now=1000.0) == state


# -- verification ---------------------------------------------------------------------------
def test_verify_an_active_token(auth: Auth, meta: MetadataStore) -> None:
    token, row = create_token(meta, "reader1", "reader", "tester")
    principal = auth.verify(token)
    assert principal == Principal("reader1", "reader", row["id"], "token")
    assert auth.verify(f"  {token}\n") == principal
    used = meta.get_token(row["id"])
    assert used is not None and used["last_used_at"] is not None


def test_verify_expired_revoked_forged_and_garbage(auth: Auth, meta: MetadataStore) -> None:
    expired, _ = create_token(meta, "old", "admin", "tester", expires_in=0.05)
    revoked, _ = create_token(meta, "gone", "admin", "tester")
    good, row = create_token(meta, "good", "admin", "tester")
    meta.revoke_token("gone")
    time.sleep(0.1)
    assert refused(lambda: auth.verify(expired)).fields["reason"] == "expired"
    assert refused(lambda: auth.verify(revoked)).fields["reason"] == "revoked"
    forged = f"mt_{row['id']}_{'A' * 43}"  # the right id and format, the wrong secret
    assert refused(lambda: auth.verify(forged)).fields["reason"] == "invalid"
    unknown = f"mt_{'0' * 12}_{good.split('_', 2)[2]}"  # a real secret under an id that does not exist
    for bad in (forged, unknown, "garbage", "", good[:-1], good + "x", good.upper(), "mt__", "Bearer " + good):
        error = refused(lambda bad=bad: auth.verify(bad))
        assert error.fields["reason"] == "invalid"
        assert good.split("_", 2)[2] not in error.message


def test_enabled_only_with_an_active_token_or_off_loopback(meta: MetadataStore) -> None:
    local = Auth(meta, "127.0.0.1", b"k" * 32)
    public_host = Auth(meta, "0.0.0.0", b"k" * 32)
    assert not local.enabled() and public_host.enabled()
    create_token(meta, "brief", "reader", "tester", expires_in=0.05)
    assert local.enabled()
    time.sleep(0.1)
    assert not local.enabled()  # an expired token does not turn access control on
    create_token(meta, "kept", "reader", "tester")
    assert local.enabled()
    meta.revoke_token("kept")
    assert not local.enabled()


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("127.3.4.5", True),
    ("0.0.0.0", False), ("10.0.0.1", False), ("example.com", False), ("localhost.evil.com", False),
    ("", False), ("::", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("role", "allowed"), [
    ("reader", {"reader"}), ("writer", {"reader", "writer"}), ("admin", {"reader", "writer", "admin"}),
])
def test_principal_can(role: str, allowed: set[str]) -> None:
    principal = Principal("p", role, "id", "token")
    assert {r for r in ROLES if principal.can(r)} == allowed
    assert all(LOCAL.can(r) for r in ROLES)


# -- sessions --------------------------------------------------------------------------------
def test_session_round_trip(auth: Auth, meta: MetadataStore) -> None:
    token, row = create_token(meta, "w", "writer", "tester")
    value, max_age = auth.session_value(auth.verify(token))
    assert token.split("_", 2)[2] not in value  # the cookie never carries the secret
    assert 12 * 3600 - 5 <= max_age <= 12 * 3600
    assert auth.verify_session(value) == Principal("w", "writer", row["id"], "session")


def test_a_session_never_outlives_its_token(auth: Auth, meta: MetadataStore) -> None:
    token, _ = create_token(meta, "short", "reader", "tester", expires_in=120)
    _, max_age = auth.session_value(auth.verify(token))
    assert 110 <= max_age <= 120


def test_tampered_sessions_are_refused(auth: Auth, meta: MetadataStore) -> None:
    token, row = create_token(meta, "w", "admin", "tester")
    other, other_row = create_token(meta, "r", "reader", "tester")
    value, _ = auth.session_value(auth.verify(other))
    token_id, expiry, signature = value.split(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    tampered = [
        f"{token_id}.{expiry}.{flipped}",  # signature altered
        f"{row['id']}.{expiry}.{signature}",  # someone else's (admin) token id under the reader's signature
        f"{token_id}.{int(expiry) + 86400}.{signature}",  # extended expiry
        f"{token_id}.{expiry}",
        f"{token_id}.{expiry}.{signature}.x",
        "",
        "garbage",
    ]
    for bad in tampered:
        assert refused(lambda bad=bad: auth.verify_session(bad)).fields["reason"] == "invalid", bad
    stranger = Auth(meta, "127.0.0.1", b"s" * 32)  # another server's secret
    assert refused(lambda: stranger.verify_session(value)).fields["reason"] == "invalid"


def test_expired_and_revoked_sessions_are_refused(auth: Auth, meta: MetadataStore) -> None:
    token, row = create_token(meta, "w", "writer", "tester")
    payload = f"{row['id']}.{int(time.time()) - 1}"
    assert refused(lambda: auth.verify_session(f"{payload}.{auth._sign(payload)}")).fields["reason"] == "expired"
    value, _ = auth.session_value(auth.verify(token))
    meta.revoke_token(row["id"])
    assert refused(lambda: auth.verify_session(value)).fields["reason"] == "revoked"
    brief, brief_row = create_token(meta, "brief", "writer", "tester", expires_in=0.5)
    value, _ = auth.session_value(auth.verify(brief))
    time.sleep(0.6)
    # the cookie's own expiry is capped by the token's (rounded down to the second): either way refused
    assert refused(lambda: auth.verify_session(value)).fields["reason"] in ("expired",)


# -- the server secret ------------------------------------------------------------------------
def test_server_secret_is_private_and_stable(tmp_path: Path) -> None:
    home = tmp_path / "home"
    secret = server_secret(home)
    assert len(secret) == 32
    path = home / "web-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert server_secret(home) == secret == path.read_bytes()
    assert server_secret(tmp_path / "other") != secret
    assert not [p for p in home.iterdir() if p.name.startswith(".web-secret")]


def _secret_in_process(home: str, barrier: Any, out: Any) -> None:
    barrier.wait()
    out.put(server_secret(Path(home)))


def test_concurrent_first_creation_gives_one_secret(tmp_path: Path) -> None:
    home = tmp_path / "home"
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(6)
    out = context.Queue()
    workers = [context.Process(target=_secret_in_process, args=(str(home), barrier, out)) for _ in range(6)]
    for worker in workers:
        worker.start()
    secrets = {out.get(timeout=20) for _ in workers}
    for worker in workers:
        worker.join(timeout=20)
        assert worker.exitcode == 0
    assert secrets == {(home / "web-secret").read_bytes()}
    assert stat.S_IMODE((home / "web-secret").stat().st_mode) == 0o600


# -- requires / public on a small app ----------------------------------------------------------
def _app(meta: MetadataStore, host: str = "127.0.0.1") -> Starlette:
    @requires("writer")
    async def write(request: Request) -> Response:
        return JSONResponse({"who": request.state.principal.name, "via": request.state.principal.via})

    @requires("reader")
    async def read(request: Request) -> Response:
        return JSONResponse({"who": request.state.principal.name})

    @public
    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def as_json(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MatineeError)
        return JSONResponse({"detail": exc.message, **exc.fields}, status_code=exc.status)

    app = Starlette(routes=[Route("/api/v1/w", write, methods=["POST"]), Route("/api/v1/r", read),
                            Route("/page", write, methods=["POST"]), Route("/health", health)],
                    exception_handlers={MatineeError: as_json})
    app.state.auth = Auth(meta, host, b"k" * 32)
    return app


def test_requires_and_public_mark_handlers(meta: MetadataStore) -> None:
    roles = {route.path: getattr(route.endpoint, "required_role", "missing")
             for route in _app(meta).routes if isinstance(route, Route)}
    assert roles == {"/api/v1/w": "writer", "/api/v1/r": "reader", "/page": "writer", "/health": None}
    with pytest.raises(ParameterError):
        requires("superuser")


def test_requires_checks_roles_and_audits_denials(meta: MetadataStore) -> None:
    reader, _ = create_token(meta, "rd", "reader", "tester")
    writer, _ = create_token(meta, "wr", "writer", "tester")
    client = TestClient(_app(meta), base_url="http://127.0.0.1")
    bearer = {"rd": {"authorization": f"Bearer {reader}"}, "wr": {"authorization": f"Bearer {writer}"}}
    assert client.get("/health").status_code == 200
    assert client.get("/api/v1/r").status_code == 401
    assert client.get("/api/v1/r", headers={"authorization": "Basic abc"}).status_code == 401
    assert client.get("/api/v1/r", headers=bearer["rd"]).json() == {"who": "rd"}
    assert client.post("/api/v1/w", headers=bearer["rd"]).status_code == 403
    assert client.post("/api/v1/w", headers=bearer["wr"]).json() == {"who": "wr", "via": "token"}
    denials = meta.audit_log(outcome="denied")
    assert [(d["status"], d["actor"], d["action"]) for d in denials] == [
        (403, "rd", "POST /api/v1/w"), (401, "anonymous", "GET /api/v1/r"), (401, "anonymous", "GET /api/v1/r"),
    ]
    assert denials[0]["detail"] == "needs writer"


def test_cookie_sessions_need_csrf_and_bearer_does_not(meta: MetadataStore, auth: Auth) -> None:
    writer, _ = create_token(meta, "wr", "writer", "tester")
    session, _ = auth.session_value(auth.verify(writer))
    client = TestClient(_app(meta), base_url="http://127.0.0.1")
    client.cookies.set(SESSION_COOKIE, session)
    assert client.get("/api/v1/r").json() == {"who": "wr"}
    assert client.post("/api/v1/w").status_code == 403  # no CSRF cookie or header
    client.cookies.set(CSRF_COOKIE, "c" * 32)
    assert client.post("/api/v1/w").status_code == 403
    assert client.post("/api/v1/w", headers={"x-csrf-token": "d" * 32}).status_code == 403
    assert client.post("/api/v1/w", headers={"x-csrf-token": "c" * 32}).json()["via"] == "session"
    assert [d["detail"] for d in meta.audit_log(outcome="denied")][:3] == ["csrf", "csrf", "csrf"]
    bare = TestClient(_app(meta), base_url="http://127.0.0.1")
    assert bare.post("/api/v1/w", headers={"authorization": f"Bearer {writer}"}).status_code == 200


def test_local_mode_is_admin_but_pages_still_need_csrf(meta: MetadataStore) -> None:
    client = TestClient(_app(meta), base_url="http://127.0.0.1")
    assert client.post("/api/v1/w").json() == {"who": "local", "via": "local"}
    assert client.post("/page").status_code == 403  # a browser form posted from elsewhere
    client.cookies.set(CSRF_COOKIE, "c" * 32)
    assert client.post("/page", headers={"x-csrf-token": "c" * 32}).status_code == 200
    remote = TestClient(_app(meta, host="0.0.0.0"), base_url="http://127.0.0.1")
    assert remote.get("/api/v1/r").status_code == 401  # off loopback access control is on, token or not


def test_csrf_form_field(meta: MetadataStore, auth: Auth) -> None:
    """A plain HTML form (no JS) sends the CSRF value as the ``csrf`` field (urlencoded; a multipart
    post must send the ``X-CSRF-Token`` header: no dashboard form is multipart)."""
    writer, _ = create_token(meta, "wr", "writer", "tester")
    session, _ = auth.session_value(auth.verify(writer))
    client = TestClient(_app(meta), base_url="http://127.0.0.1", raise_server_exceptions=False)
    client.cookies.set(SESSION_COOKIE, session)
    client.cookies.set(CSRF_COOKIE, "c" * 32)
    assert client.post("/page", data={"csrf": "c" * 32}).status_code == 200
    assert client.post("/page", data={"csrf": "x" * 32}).status_code == 403
    assert client.post("/page", data={"other": "1"}).status_code == 403
    assert client.post("/page", files={"f": b"x"}, data={"csrf": "c" * 32}).status_code == 403
    assert client.post("/page", files={"f": b"x"}, headers={"X-CSRF-Token": "c" * 32}).status_code == 200


def test_authorization_header_forms(meta: MetadataStore, auth: Auth) -> None:
    reader, _ = create_token(meta, "rd", "reader", "tester")
    client = TestClient(_app(meta), base_url="http://127.0.0.1")
    for header, status in [(f"Bearer {reader}", 200), (f"bearer {reader}", 200), (f"BEARER {reader}", 200),
                           (f"Bearer  {reader} ", 200), ("Bearer", 401), ("Bearer ", 401), (f"Token {reader}", 401),
                           (reader, 401), ("Basic dXNlcjpwYXNz", 401), (f"Bearer {reader}, Bearer {reader}", 401),
                           (f"Bearer {reader}x", 401), (f"Bearer {reader[:-1]}", 401)]:
        assert client.get("/api/v1/r", headers={"authorization": header}).status_code == status, header
    # a wrong header is not rescued by a good session cookie, nor by a token in the URL
    session, _ = auth.session_value(auth.verify(reader))
    client.cookies.set(SESSION_COOKIE, session)
    assert client.get("/api/v1/r").status_code == 200
    assert client.get("/api/v1/r", headers={"authorization": "Bearer nope"}).status_code == 401
    client.cookies.clear()
    assert client.get("/api/v1/r", params={"token": reader}).status_code == 401


def test_a_wrong_token_is_refused_even_with_access_control_off(meta: MetadataStore) -> None:
    client = TestClient(_app(meta), base_url="http://127.0.0.1")
    assert client.get("/api/v1/r").json() == {"who": "local"}
    assert client.get("/api/v1/r", headers={"authorization": "Bearer mt_000000000000_" + "A" * 43}).status_code == 401
