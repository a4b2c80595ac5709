"""Access control for the dashboard and the REST API: tokens, roles, sessions, CSRF, audit.

Access control is off only when the server is bound to a loopback address and
no active token exists (a laptop, one user). Otherwise every request needs a
bearer token, or the session cookie a token login gave a browser.

* **Tokens** look like ``mt_<id>_<secret>``: 12 hex digits that name the token
  and 43 random URL-safe characters (256 bits). Only the SHA-256 of the secret
  is stored (a slow password hash buys nothing against 256 random bits), and
  it is compared with :func:`hmac.compare_digest`.
* **Roles**: ``reader`` reads everything; ``writer`` also creates runs, logs,
  uploads artifacts and registers model versions; ``admin`` also moves aliases
  and manages tokens. Every handler declares the role it needs with
  :func:`requires` (or :func:`public`), so no route is reachable by accident.
* **Sessions**: ``/login`` trades a token for an HttpOnly, SameSite=Strict
  cookie signed with the server's secret; the token is checked again on every
  request, so revoking it ends its sessions at once.
* **CSRF**: a double-submit cookie. A state-changing request authenticated by
  cookie (or made to a page with access control off) must echo the cookie's
  value in ``X-CSRF-Token`` or a ``csrf`` form field.
* **Audit**: every denied request and every admin action is a row in
  ``audit_log`` (``matinee audit``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from matinee.core.storage.metadata import MetadataStore
from matinee.core.timespan import parse_span
from matinee.errors import MatineeError, ParameterError

ROLES = ("reader", "writer", "admin")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "matinee_session"
CSRF_COOKIE = "matinee_csrf"
SESSION_SECONDS = 12 * 3600
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

_TOKEN = re.compile(r"mt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")

Handler = Callable[[Request], Awaitable[Response]]


class HttpError(MatineeError):
    """An HTTP answer other than success: 401, 403, 413, 415, ... with a message naming the fix."""

    def __init__(self, status: int, message: str, field: str | None = None, **fields: Any) -> None:
        if field is not None:
            fields["field"] = field
        super().__init__(message, **fields)
        self.status = status


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a token's name and role, or ``local`` (admin) with access control off."""

    name: str
    role: str
    token_id: str | None
    via: str  # "token" | "session" | "local"

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


LOCAL = Principal("local", "admin", None, "local")


# -- tokens -----------------------------------------------------------------------------
def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_role(role: Any) -> str:
    if role not in ROLES:
        raise ParameterError(f"role must be one of {', '.join(ROLES)}, not {role!r}", parameter="role")
    return str(role)


def parse_duration(text: str | None) -> float | None:
    """Seconds in ``30d``, ``12h``, ``90m``, ``1w2d`` (None for ``never`` or nothing)."""
    if text is None or str(text).strip().lower() in ("", "never", "none"):
        return None
    return parse_span(str(text), "expires", positive=True)


def check_token_name(name: Any) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}", name):
        raise ParameterError(
            f"a token name is 1-64 letters, digits, '_', '.', '@' or '-', not {name!r}", parameter="name"
        )
    return name


def create_token(meta: MetadataStore, name: str, role: str, created_by: str,
                 expires_in: float | None = None) -> tuple[str, dict[str, Any]]:
    """Create a token; returns ``(token, its row)``. The token is shown this once and never stored."""
    check_token_name(name)
    check_role(role)
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    expires_at = time.time() + expires_in if expires_in is not None else None
    meta.add_token(token_id, name, role, hash_secret(secret), created_by, expires_at)
    row = next(t for t in meta.list_tokens() if t["id"] == token_id)
    return f"mt_{token_id}_{secret}", row


def token_state(row: dict[str, Any], now: float | None = None) -> str:
    """``active``, ``expired`` or ``revoked``."""
    now = time.time() if now is None else now
    if row.get("revoked_at") is not None:
        return "revoked"
    if row.get("expires_at") is not None and row["expires_at"] <= now:
        return "expired"
    return "active"


# -- the server's side --------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_secret(home: Path) -> bytes:
    """The key sessions are signed with: 32 random bytes in ``<home>/web-secret`` (mode 0600)."""
    path = home / "web-secret"
    with contextlib.suppress(OSError):  # none yet: make one
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    home.mkdir(parents=True, exist_ok=True)
    data = secrets.token_bytes(32)
    tmp = path.with_name(f".web-secret.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    try:
        os.link(tmp, path)  # the first server to get here wins; the others read its secret
    except FileExistsError:
        data = path.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    return data


class Auth:
    """Authenticates requests against the store's tokens for one server."""

    def __init__(self, meta: MetadataStore, host: str, secret: bytes) -> None:
        self.meta = meta
        self.loopback = is_loopback(host)
        self.secret = secret
        self._touched: dict[str, float] = {}

    def enabled(self) -> bool:
        """Off only on a loopback address with no active token."""
        return not self.loopback or self.meta.count_active_tokens(time.time()) > 0

    def verify(self, token: str) -> Principal:
        """The principal of a bearer token; HttpError 401 saying why it is refused."""
        match = _TOKEN.fullmatch(token.strip())
        row = self.meta.get_token(match.group(1)) if match else None
        # compare even when there is no such token, so timing does not tell ids apart
        expected = row["secret_hash"] if row else hash_secret("")
        given = hash_secret(match.group(2)) if match else hash_secret(token)
        if not hmac.compare_digest(expected, given) or row is None:
            raise HttpError(401, "the token is not valid; create one with `matinee tokens create`",
                            reason="invalid")
        state = token_state(row)
        if state != "active":
            raise HttpError(401, f"the token {row['name']!r} is {state}; ask an admin for a new one",
                            reason=state)
        self._touch(row["id"])
        return Principal(row["name"], row["role"], row["id"], "token")

    def _touch(self, token_id: str) -> None:
        now = time.time()
        if now - self._touched.get(token_id, 0.0) > 60:
            self._touched[token_id] = now
            self.meta.touch_token(token_id, now)

    # sessions: "<token id>.<expiry>.<signature>", checked against the token on every request
    def _sign(self, payload: str) -> str:
        digest = hmac.new(self.secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def session_value(self, principal: Principal) -> tuple[str, int]:
        assert principal.token_id is not None
        row = self.meta.get_token(principal.token_id) or {}
        expires = time.time() + SESSION_SECONDS
        if row.get("expires_at") is not None:
            expires = min(expires, row["expires_at"])
        payload = f"{principal.token_id}.{int(expires)}"
        return f"{payload}.{self._sign(payload)}", max(0, int(expires - time.time()))

    def verify_session(self, value: str) -> Principal:
        parts = value.split(".")
        if len(parts) != 3 or not hmac.compare_digest(self._sign(f"{parts[0]}.{parts[1]}"), parts[2]):
            raise HttpError(401, "the session is not valid; log in again", reason="invalid")
        if not parts[1].isdigit() or int(parts[1]) <= time.time():
            raise HttpError(401, "the session has expired; log in again", reason="expired")
        row = self.meta.get_token(parts[0])
        if row is None or token_state(row) != "active":
            state = "revoked" if row is None else token_state(row)
            raise HttpError(401, f"the session's token is {state}; log in with a new token", reason=state)
        return Principal(row["name"], row["role"], row["id"], "session")

    def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise HttpError(401, "the Authorization header must be `Bearer <token>`", reason="invalid")
            return self.verify(value)
        if not self.enabled():
            return LOCAL
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            return self.verify_session(session)
        raise HttpError(401, "this server needs a token: send `Authorization: Bearer <token>` "
                             "(MATINEE_TOKEN for the client) or log in at /login", reason="missing")


def csrf_value(request: Request) -> str:
    """The CSRF value of this browser (its cookie), or a new one the response will set."""
    value = request.cookies.get(CSRF_COOKIE)
    if not value or not re.fullmatch(r"[A-Za-z0-9_-]{20,64}", value):
        value = getattr(request.state, "new_csrf", None) or secrets.token_urlsafe(24)
        request.state.new_csrf = value
    return value


async def csrf_ok(request: Request) -> bool:
    """Whether a state-changing browser request carries this browser's CSRF value (header or form field)."""
    expected = request.cookies.get(CSRF_COOKIE)
    if not expected:
        return False
    given = request.headers.get("x-csrf-token")
    if given is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        # the dashboard's forms are urlencoded; the body stays cached for the handler to read again
        body = await request.body()
        if len(body) <= 1 << 20:
            fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            given = fields.get("csrf")
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _auth(request: Request) -> Auth:
    return request.app.state.auth


async def audit(request: Request, action: str, target: str | None, outcome: str = "ok",
                status: int | None = None, detail: str | None = None) -> None:
    """Record an admin action (or a denial) in the audit log."""
    principal: Principal | None = getattr(request.state, "principal", None)
    client = request.client.host if request.client else None
    await run_in_threadpool(
        _auth(request).meta.audit, principal.name if principal else "anonymous",
        principal.role if principal else None, action, target, outcome, status, client, detail,
    )


def requires(role: str) -> Callable[[Handler], Handler]:
    """Let a handler run only for principals with at least ``role`` (401/403 otherwise, audited)."""
    check_role(role)

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            request.state.csrf = csrf_value(request)
            try:
                principal = await run_in_threadpool(_auth(request).authenticate, request)
            except HttpError as exc:
                await audit(request, f"{request.method} {request.url.path}", request.url.path, "denied",
                            exc.status, exc.fields.get("reason"))
                raise
            request.state.principal = principal
            if not principal.can(role):
                await audit(request, f"{request.method} {request.url.path}", request.url.path, "denied", 403,
                            f"needs {role}")
                raise HttpError(403, f"this needs the {role} role; the token {principal.name!r} is a "
                                     f"{principal.role}", reason="role")
            if request.method not in SAFE_METHODS and _needs_csrf(request, principal) \
                    and not await csrf_ok(request):
                await audit(request, f"{request.method} {request.url.path}", request.url.path, "denied", 403,
                            "csrf")
                raise HttpError(403, "the form is stale or came from another site (CSRF token missing or "
                                     "wrong); reload the page and try again", field="csrf", reason="csrf")
            return await handler(request)

        guarded.required_role = role  # type: ignore[attr-defined]
        return guarded

    return decorate


def _needs_csrf(request: Request, principal: Principal) -> bool:
    if principal.via == "session":
        return True
    return principal.via == "local" and not request.url.path.startswith("/api/")


def public(handler: Handler) -> Handler:
    """Mark a handler that needs no credentials (the login page, static files, health)."""

    @functools.wraps(handler)
    async def open_handler(request: Request) -> Response:
        request.state.csrf = csrf_value(request)
        request.state.principal = None
        return await handler(request)

    open_handler.required_role = None  # type: ignore[attr-defined]
    return open_handler


async def login(request: Request, token: str, response: Response) -> Principal:
    """Check ``token`` and set the session cookie on ``response``; HttpError 401 if refused (audited)."""
    auth = _auth(request)
    try:
        principal = await run_in_threadpool(auth.verify, token)
    except HttpError as exc:
        await audit(request, "login", None, "denied", 401, exc.fields.get("reason"))
        raise
    value, max_age = await run_in_threadpool(auth.session_value, principal)
    response.set_cookie(SESSION_COOKIE, value, max_age=max_age, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    request.state.principal = principal
    await audit(request, "login", principal.name, "ok", 200)
    return principal


def logout(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
