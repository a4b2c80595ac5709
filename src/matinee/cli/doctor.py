"""``matinee doctor``: the configuration in force, and whether each backend answers.

Every check is quick and harmless: the metadata store is opened and counted, a
small probe blob (its key is its content's hash, like any artifact) is written
and read back, a Ray address is only connected to at the TCP level (no Ray is
started), and the event log folder is checked for writing. Secrets in URLs are
masked before anything is printed.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import click

from matinee.cli.output import json_option
from matinee.errors import MatineeError

__all__ = ["Check", "doctor", "mask_url", "run_checks"]

_SECRET_WORDS = ("password", "secret", "token", "key", "credential", "signature")
PROBE = b"matinee doctor probe\n"
_OPTIONAL = ("ray", "psycopg", "s3fs", "uvicorn", "starlette")


def mask_url(url: str) -> str:
    """``url`` with its password and secret-looking query values replaced by ``***``.

    Examples
    --------
    >>> mask_url("postgresql://ana:hunter2@db.internal:5432/matinee")
    'postgresql://ana:***@db.internal:5432/matinee'
    >>> mask_url("s3://bucket/prefix?aws_secret_access_key=abc&region=eu-west-1")
    's3://bucket/prefix?aws_secret_access_key=***&region=eu-west-1'
    >>> mask_url("/home/ana/.matinee/blobs")
    '/home/ana/.matinee/blobs'
    """
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None and not parts.query:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}"
    query = parts.query
    if query:
        pairs = [(k, "***" if any(w in k.lower() for w in _SECRET_WORDS) else v)
                 for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass
class Check:
    """One line of the report: what was checked, whether it passed, and what was seen."""

    name: str
    status: str  # "ok", "fail", "skip"
    detail: str
    seconds: float = 0.0


def _timed(name: str, probe: Callable[[], str]) -> Check:
    start = time.perf_counter()
    try:
        detail = probe()
        status = "ok"
    except _Skip as skip:
        detail, status = str(skip), "skip"
    except MatineeError as exc:
        detail, status = exc.message, "fail"
    except Exception as exc:  # a backend failing in its own way: report it, keep checking the rest
        detail, status = f"{type(exc).__name__}: {exc}", "fail"
    return Check(name, status, detail.splitlines()[0] if detail else "", time.perf_counter() - start)


class _Skip(Exception):
    """A check that does not apply to this configuration."""


def run_checks() -> tuple[dict[str, Any], list[Check]]:
    """The effective configuration (secrets masked) and every check's result."""
    from matinee import __version__
    from matinee.config import load_settings

    settings = load_settings()
    config: dict[str, Any] = {
        "matinee": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "home": str(settings.home),
        "metadata_url": mask_url(settings.metadata_url),
        "blob_url": mask_url(settings.blob_url),
        "executor": settings.executor,
        "max_workers": settings.max_workers,
        "ray_address": mask_url(settings.ray_address) if settings.ray_address else None,
        "user": settings.user,
        "namespace": settings.namespace or f"user:{settings.user}",
        "packages": {name: _version(name) for name in _OPTIONAL},
    }

    def metadata() -> str:
        from matinee.core.storage.metadata import MetadataStore

        store = MetadataStore.open(settings.metadata_url)
        try:
            runs = store.db.query("SELECT COUNT(*) AS n FROM runs")[0]["n"]
            models = store.db.query("SELECT COUNT(DISTINCT name) AS n FROM model_versions")[0]["n"]
        finally:
            store.close()
        return f"{store.db.dialect}: {runs} runs, {models} registered models; schema current"

    def blobs() -> str:
        from matinee.core.artifacts.hashing import content_key
        from matinee.core.storage.blobs import open_blob_store

        store = open_blob_store(settings.blob_url)
        key = content_key(PROBE)
        if not store.claim(key):
            store.put(key, iter([PROBE]))
        with store.open(key) as fh:
            if fh.read() != PROBE:
                raise MatineeError(f"the probe blob {key[:12]} read back different bytes")
        return f"{type(store).__name__}: wrote and read back a probe blob"

    def ray() -> str:
        if settings.executor != "ray" and not settings.ray_address:
            raise _Skip("not used (executor is not ray and no ray_address)")
        version = _version("ray")
        if version is None:
            raise MatineeError("ray is not installed: pip install 'matinee[ray]'")
        address = settings.ray_address
        if not address or address == "auto":
            return f"ray {version}; each run starts a local Ray" if not address else \
                f"ray {version}; address auto: the cluster this machine belongs to"
        parts = urlsplit(address if "://" in address else f"ray://{address}")
        host, port = parts.hostname or "127.0.0.1", parts.port or 10001
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError as exc:
            raise MatineeError(f"cannot connect to the Ray cluster at {host}:{port} (setting ray_address): "
                               f"{exc.strerror or exc}") from None
        return f"ray {version}; {host}:{port} accepts connections"

    def event_log() -> str:
        folder = settings.home / "events"
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-").close()  # created, then deleted
        return f"{folder} is writable"

    checks = [
        _timed("metadata store", metadata),
        _timed("artifact store", blobs),
        _timed("ray", ray),
        _timed("event log", event_log),
    ]
    return config, checks


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@click.command()
@json_option
def doctor(as_json: bool) -> None:
    """Show the configuration in force and check that every backend answers.

    Store URLs are printed with their secrets masked. Exits with status 1 when
    a check fails, so scripts can gate on it.
    """
    config, checks = run_checks()
    failed = [c for c in checks if c.status == "fail"]
    if as_json:
        click.echo(json.dumps({"config": config, "checks": [c.__dict__ for c in checks], "ok": not failed},
                              indent=2, default=str))
    else:
        from matinee.cli import views

        packages = config.pop("packages")
        config["packages"] = ", ".join(f"{k} {v}" if v else f"{k} (not installed)" for k, v in packages.items())
        views.print_table([{"setting": k, "value": "" if v is None else str(v)} for k, v in config.items()],
                          ["setting", "value"], title="Configuration")
        marks = {"ok": "ok", "fail": "FAIL", "skip": "-"}
        views.print_table([{"check": c.name, "status": marks[c.status], "detail": c.detail,
                            "seconds": f"{c.seconds:.2f}"} for c in checks],
                          ["check", "status", "detail", "seconds"], title="Backends")
        if failed:
            click.echo(f"{len(failed)} check(s) failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed),
                       err=True)
    if failed:
        raise SystemExit(1)
