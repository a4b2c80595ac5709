"""The web server: the dashboard and the ``/api/v1`` REST API in one ASGI app.

:func:`create_app` builds it over a store; ``matinee ui`` and ``matinee
server`` run it with uvicorn, the stack serving uses. What every response
shares lives here: access control (:mod:`matinee.web.auth`, per handler),
security headers, the DNS-rebinding and cross-origin checks, and errors as
JSON (API) or a page (dashboard), always naming the field and the fix.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from matinee.config import Settings, load_settings
from matinee.core.store import open_store
from matinee.errors import MatineeError
from matinee.web.auth import CSRF_COOKIE, SAFE_METHODS, Auth, HttpError, is_loopback, server_secret

__all__ = ["HttpError", "create_app"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def create_app(settings: Settings | None = None, *, host: str = "127.0.0.1",
               max_upload_bytes: int = 1 << 30) -> Starlette:
    """The dashboard and REST API over the store ``settings`` name.

    Parameters
    ----------
    settings
        Where the store is (default: :func:`~matinee.config.load_settings`).
    host
        The address the server is bound to. Access control is off only on a
        loopback address while no token exists.
    max_upload_bytes
        The largest artifact a client may upload (413 above it).

    Examples
    --------
    >>> from starlette.testclient import TestClient
    >>> from matinee.web.app import create_app
    >>> client = TestClient(create_app(), base_url="http://127.0.0.1")
    >>> client.get("/api/v1/health").json()["status"]
    'ok'
    """
    from matinee.web import api, pages

    settings = settings or load_settings()
    store = open_store(settings)
    app = Starlette(
        routes=[*api.routes(), *pages.routes()],
        exception_handlers={MatineeError: _error, HTTPException: _http_error},
    )
    app.state.settings = settings
    app.state.store = store
    app.state.max_upload_bytes = int(max_upload_bytes)
    secret = settings.web_secret.encode() if settings.web_secret else server_secret(settings.home)
    app.state.auth = Auth(store.metadata, host, secret)
    app.add_middleware(_Guard, auth=app.state.auth)
    return app


class _Guard:
    """Security headers on every response; DNS-rebinding and cross-origin refusals before any route."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        path = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(_HEADERS)
                if not path.startswith("/static/"):
                    extra.append((b"cache-control", b"no-store"))
                new_csrf = state.get("new_csrf")
                if new_csrf:
                    secure = "; Secure" if scope.get("scheme") == "https" else ""
                    extra.append((b"set-cookie", f"{CSRF_COOKIE}={new_csrf}; Path=/; HttpOnly; "
                                                 f"SameSite=Strict{secure}".encode()))
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *[(k, v) for k, v in extra if k not in present or k == b"set-cookie"]]
            await send(message)

        if refusal is not None:
            field = "host" if refusal.startswith("Host") else "origin"
            client = scope.get("client")
            await run_in_threadpool(self.auth.meta.audit, "anonymous", None, f"{scope['method']} {path}", path,
                                    "denied", 403, client[0] if client else None, field)
            response = _render(path, 403, refusal, field=field)
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> str | None:
        host = headers.get("host", "")
        hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        origin = headers.get("origin")
        if origin and scope["method"] not in SAFE_METHODS:
            own = {f"{scope.get('scheme', 'http')}://{host}"}
            if origin not in own:
                return f"a {scope['method']} from another origin ({origin}) is refused"
        if self.auth.loopback and not is_loopback(hostname) and not self.auth.enabled():
            return (f"Host {hostname!r} is not a loopback name: a server without access control answers "
                    "only requests to 127.0.0.1 or localhost (create a token to serve other names)")
        return None


def _wants_json(path: str) -> bool:
    return path.startswith("/api/")


def _render(path: str, status: int, message: str, field: str | None = None,
            extra: dict[str, Any] | None = None) -> Response:
    if _wants_json(path):
        body: dict[str, Any] = {"error": _ERROR_NAMES.get(status, "Error"), "detail": message}
        if field is not None:
            body["field"] = field
        body.update(extra or {})
        return JSONResponse(body, status_code=status)
    from matinee.web.pages import render_error

    return render_error(status, message, field)


_ERROR_NAMES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                405: "MethodNotAllowed", 409: "Conflict", 413: "PayloadTooLarge", 415: "UnsupportedMediaType",
                422: "Unprocessable"}


async def _error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MatineeError)
    path = request.url.path
    status = exc.status if 400 <= exc.status < 600 else 500
    field = exc.fields.get("field") or exc.fields.get("parameter")
    if isinstance(exc, HttpError) and status == 401 and not _wants_json(path) and request.method == "GET":
        from urllib.parse import quote

        return Response(status_code=303, headers={"location": f"/login?next={quote(path)}"})
    if _wants_json(path):
        body = exc.to_dict()
        body.pop("reason", None)
        if field is not None:
            body["field"] = field
        response: Response = JSONResponse(body, status_code=status)
    else:
        response = _render(path, status, exc.message, field)
    if status == 401:
        response.headers["www-authenticate"] = 'Bearer realm="matinee"'
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"nothing is served at {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
    return _render(request.url.path, exc.status_code, message, extra=None)
