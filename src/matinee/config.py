"""Settings, resolved once and passed explicitly.

Each setting is looked up, first match wins, in:

1. the environment, as ``MATINEE_<NAME>`` (e.g. ``MATINEE_HOME``);
2. the project file ``./matinee.toml`` (a ``[matinee]`` table);
3. the user file ``~/.config/matinee/config.toml`` (same layout);
4. the default in :data:`SETTINGS`.

Nothing is read at import time: call :func:`load_settings`.
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from matinee.errors import ConfigError

#: name -> (default, help). The default ``None`` means "derived", see :class:`Settings`.
SETTINGS: dict[str, tuple[Any, str]] = {
    "home": ("./.matinee", "Folder for the embedded store (SQLite file, blobs, logs)."),
    "metadata_url": (None, "Metadata store URL; default sqlite:///<home>/matinee.db."),
    "blob_url": (None, "Artifact blob store: a local path or any fsspec URL (s3://bucket/prefix); default <home>/blobs."),
    "user": (None, "User name recorded on runs; default the login name."),
    "executor": ("auto", "Default executor: auto, inline, process or ray."),
    "max_workers": (None, "Parallel tasks for the process and ray executors; default the CPU count."),
    "ray_address": (None, "Ray cluster for the ray executor (ray://host:10001 or auto); default a local Ray per run."),
    "namespace": (None, "Client namespace, e.g. user:alice; default user:<user>."),
    "tracking_uri": (None, "A matinee server (http://host:5173) to use instead of the local store; see docs/web.md."),
    "token": (None, "The access token sent to the tracking_uri server (`matinee tokens create`)."),
    "web_secret": (None, "Key (32+ characters) that signs dashboard sessions; give every server behind "
                         "one address the same; default a random key in <home>/web-secret."),
}


#: Other names a setting answers to (``MATINEE_ARTIFACT_URL`` is ``blob_url``); the setting's own name wins.
ALIASES: dict[str, str] = {"artifact_url": "blob_url"}


def _resolve_aliases(values: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in values.items() if k not in ALIASES}
    for alias, name in ALIASES.items():
        if values.get(alias) not in (None, "") and out.get(name) in (None, ""):
            out[name] = values[alias]
    return out


@dataclass(frozen=True)
class Settings:
    """The resolved settings. Build with :func:`load_settings`."""

    home: Path
    metadata_url: str
    blob_url: str
    user: str
    executor: str = "auto"
    max_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    namespace: str | None = None
    ray_address: str | None = None
    tracking_uri: str | None = None
    token: str | None = field(default=None, repr=False)
    web_secret: str | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: str(getattr(self, f.name)) for f in fields(self)}
        for secret in ("token", "web_secret"):
            if getattr(self, secret):
                out[secret] = "(set)"
        return out


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc}", path=str(path)) from exc
    table = data.get("matinee", {})
    unknown = sorted(set(table) - set(SETTINGS) - set(ALIASES))
    if unknown:
        raise ConfigError(
            f"unknown setting {unknown[0]!r} in {path}; known settings: {', '.join(SETTINGS)}",
            path=str(path),
        )
    return _resolve_aliases(dict(table))


def load_settings(**overrides: Any) -> Settings:
    """Resolve every setting; keyword ``overrides`` win over everything else."""
    sources = [
        overrides,
        _resolve_aliases({k: os.environ[f"MATINEE_{k.upper()}"] for k in [*SETTINGS, *ALIASES]
                          if f"MATINEE_{k.upper()}" in os.environ}),
        _read_toml(Path("matinee.toml")),
        _read_toml(Path.home() / ".config" / "matinee" / "config.toml"),
    ]
    raw: dict[str, Any] = {}
    for name, (default, _help) in SETTINGS.items():
        raw[name] = next((s[name] for s in sources if s.get(name) not in (None, "")), default)

    home = Path(raw["home"]).expanduser().absolute()
    user = raw["user"] or os.environ.get("USER") or _login_name()
    executor = str(raw["executor"])
    if executor not in ("auto", "inline", "process", "ray"):
        raise ConfigError(
            f"executor must be auto, inline, process or ray, not {executor!r} (setting MATINEE_EXECUTOR)",
            setting="executor",
        )
    try:
        max_workers = int(raw["max_workers"]) if raw["max_workers"] is not None else os.cpu_count() or 1
    except (TypeError, ValueError):
        raise ConfigError(
            f"max_workers must be a whole number, not {raw['max_workers']!r} (setting MATINEE_MAX_WORKERS)",
            setting="max_workers",
        ) from None
    return Settings(
        home=home,
        metadata_url=raw["metadata_url"] or f"sqlite:///{home / 'matinee.db'}",
        blob_url=raw["blob_url"] or str(home / "blobs"),
        user=str(user),
        executor=executor,
        max_workers=max(1, max_workers),
        namespace=raw["namespace"],
        ray_address=raw["ray_address"],
        tracking_uri=_tracking_uri(raw["tracking_uri"]),
        token=raw["token"],
        web_secret=_web_secret(raw["web_secret"]),
    )


def _web_secret(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    if len(text.strip()) < 32:
        raise ConfigError(
            f"web_secret must be at least 32 characters (it has {len(text.strip())}); make one with "
            "`python -c 'import secrets; print(secrets.token_hex(32))'` (setting MATINEE_WEB_SECRET)",
            setting="web_secret",
        )
    return text.strip()


def _tracking_uri(value: Any) -> str | None:
    if value in (None, ""):
        return None
    uri = str(value).rstrip("/")
    if not uri.startswith(("http://", "https://")):
        raise ConfigError(
            f"tracking_uri must be an http:// or https:// URL of a matinee server, not {value!r}"
            " (setting MATINEE_TRACKING_URI)",
            setting="tracking_uri",
        )
    return uri


def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"
