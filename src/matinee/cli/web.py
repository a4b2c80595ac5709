"""``matinee ui``, ``matinee server``, ``matinee tokens`` and ``matinee audit``."""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from typing import Any

import click

from matinee.cli.output import emit_json, json_option


def _run(command: str, host: str, port: int, max_upload_mb: int, log_level: str) -> None:
    import signal

    from matinee.config import load_settings
    from matinee.core.serving._worker import DrainingServer, config
    from matinee.errors import ConfigError
    from matinee.web.app import create_app

    if max_upload_mb < 1:
        raise ConfigError(f"--max-upload-mb must be at least 1, not {max_upload_mb}", parameter="max-upload-mb")
    settings = load_settings()
    if settings.tracking_uri:
        raise ConfigError(f"MATINEE_TRACKING_URI is set ({settings.tracking_uri}): a server serves a local "
                          "store; unset it to run one", setting="tracking_uri")
    app = create_app(settings, host=host, max_upload_bytes=max_upload_mb << 20)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port",
                          parameter="port") from None
    sock.listen(1024)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    auth = app.state.auth
    if auth.enabled():
        mode = "tokens required"
    else:
        mode = "no access control on loopback; `matinee tokens create` turns it on"
    click.echo(f"matinee {command}: serving http://{shown}:{bound} ({mode})", nl=True)
    if not auth.loopback and not auth.enabled():
        click.echo("warning: no token exists, so every request will be refused; "
                   "create one with `matinee tokens create --name NAME --role admin`", err=True)
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C once it has drained
        DrainingServer(config(app, log_level, access_log=False)).run(sockets=[sock])


def _server_options(default_port: int) -> Any:
    def decorate(fn: Any) -> Any:
        fn = click.option("--log-level", default="warning", show_default=True,
                          type=click.Choice(["critical", "error", "warning", "info", "debug"]),
                          help="uvicorn's log level.")(fn)
        fn = click.option("--max-upload-mb", default=1024, show_default=True,
                          help="Largest artifact a client may upload, in MiB.")(fn)
        fn = click.option("--port", default=default_port, show_default=True,
                          help="Port to listen on (0 picks a free one).")(fn)
        fn = click.option("--host", default="127.0.0.1", show_default=True,
                          help="Address to listen on. Anything but loopback requires tokens.")(fn)
        return fn

    return decorate


@click.command()
@_server_options(5173)
def ui(host: str, port: int, max_upload_mb: int, log_level: str) -> None:
    """Open the dashboard: runs, metrics, models, experiments, bandits and events in a browser.

    On 127.0.0.1 with no token created, nothing needs logging in. The same
    server answers the REST API under /api/v1 (see `matinee server`).
    """
    _run("ui", host, port, max_upload_mb, log_level)


@click.command()
@_server_options(5173)
def server(host: str, port: int, max_upload_mb: int, log_level: str) -> None:
    """Serve this store to a team: the REST API under /api/v1 and the dashboard.

    Clients set MATINEE_TRACKING_URI=http://HOST:PORT and MATINEE_TOKEN; their
    flows, tracking and registry then work against this server's store.
    Bound to anything but loopback, every request needs a token
    (`matinee tokens create`).
    """
    _run("server", host, port, max_upload_mb, log_level)


@click.group()
def tokens() -> None:
    """Access tokens for the REST API and the dashboard (roles: reader, writer, admin)."""


def _token_row(row: dict[str, Any]) -> dict[str, Any]:
    from matinee.web.auth import token_state

    return {"id": row["id"], "name": row["name"], "role": row["role"], "state": token_state(row),
            "created_at": row["created_at"], "created_by": row["created_by"], "expires_at": row["expires_at"],
            "revoked_at": row["revoked_at"], "last_used_at": row["last_used_at"]}


@tokens.command("create")
@click.option("--name", required=True, help="A name for the token (who or what uses it).")
@click.option("--role", required=True, type=click.Choice(["reader", "writer", "admin"]),
              help="reader: read; writer: + runs, logging, uploads, model versions; admin: + aliases, tokens.")
@click.option("--expires", default="never", show_default=True, help="Lifetime, e.g. 30d, 12h, 90m, or never.")
@json_option
def tokens_create(name: str, role: str, expires: str, as_json: bool) -> None:
    """Create a token. It is printed once and only a hash of it is kept."""
    from matinee.web.auth import create_token, parse_duration

    store = _local_store()
    token, row = create_token(store.metadata, name, role, store.settings.user, parse_duration(expires))
    store.metadata.audit(store.settings.user, "admin", "token.create", name, "ok", detail=f"cli, role {role}")
    if as_json:
        emit_json({**_token_row(row), "token": token})
        return
    click.echo(token)
    expiry = "never expires" if row["expires_at"] is None else f"expires {time.ctime(row['expires_at'])}"
    click.echo(f"token {name!r} ({role}, {expiry}) created; it is shown only now: keep it in a secret store",
               err=True)


@tokens.command("ls")
@json_option
def tokens_ls(as_json: bool) -> None:
    """List tokens (never their secrets)."""
    from matinee.cli import views

    rows = [_token_row(r) for r in _local_store().metadata.list_tokens()]
    if as_json:
        emit_json(rows)
        return
    views.print_table(
        [{**r, "created": views.when(r["created_at"]),
          "expires": "never" if r["expires_at"] is None else views.when(r["expires_at"]),
          "last used": views.when(r["last_used_at"]) if r["last_used_at"] else "-"} for r in rows],
        ["id", "name", "role", "state", "created", "expires", "last used"],
        title="Tokens",
    )


@tokens.command("revoke")
@click.argument("token")
@json_option
def tokens_revoke(token: str, as_json: bool) -> None:
    """Revoke a token by name or id: every request and session using it is refused from now on."""
    store = _local_store()
    row = store.metadata.revoke_token(token)
    store.metadata.audit(store.settings.user, "admin", "token.revoke", row["name"], "ok", detail="cli")
    if as_json:
        emit_json(_token_row(row))
    else:
        click.echo(f"revoked token {row['name']!r} ({row['id']})")


@click.command()
@click.option("--limit", default=50, show_default=True, help="How many entries, newest first.")
@click.option("--denied", is_flag=True, help="Only refused requests.")
@click.option("--prune-older-than", "prune", metavar="AGE",
              help="Delete entries older than AGE (e.g. 90d) instead of showing any; the pruning is audited.")
@json_option
def audit(limit: int, denied: bool, prune: str | None, as_json: bool) -> None:
    """The audit log: refused requests and admin actions of the web server.

    The log keeps everything until pruned: `matinee audit --prune-older-than 90d`
    from a scheduler keeps it to the last 90 days.
    """
    from matinee.cli import views

    store = _local_store()
    if prune is not None:
        from matinee.core.timespan import parse_span

        age = parse_span(prune, "prune-older-than")
        before = time.time() - age
        deleted = store.metadata.prune_audit(before)
        store.metadata.audit(store.settings.user, "admin", "audit.prune", None, "ok",
                             detail=f"cli, {deleted} entries before {views.when(before)}")
        if as_json:
            emit_json({"deleted": deleted, "before": before})
        else:
            click.echo(f"deleted {deleted} audit entries older than {prune}")
        return
    rows = store.metadata.audit_log(limit=limit, outcome="denied" if denied else None)
    if as_json:
        emit_json(rows)
        return
    views.print_table(
        [{**r, "when": views.when(r["at"]), "status": r["status"] or ""} for r in rows],
        ["id", "when", "actor", "role", "action", "target", "outcome", "status", "remote", "detail"],
        title="Audit log",
    )


def _local_store() -> Any:
    """Tokens and the audit log are managed on the server's own store, never through a remote one."""
    from matinee.config import load_settings
    from matinee.core.store import open_store
    from matinee.errors import ConfigError

    settings = load_settings()
    if settings.tracking_uri:
        raise ConfigError("tokens and the audit log are managed where the store is: run this on the server "
                          "(unset MATINEE_TRACKING_URI), or use the /api/v1/tokens API with an admin token",
                          setting="tracking_uri")
    return open_store(settings)
