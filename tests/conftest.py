"""Shared fixtures: a fresh store per test, and flows run as real processes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import matinee.core.client as client
from _postgres import any_meta, metadata_url, postgres, postgres_url  # noqa: F401  (fixtures)
from matinee.core.store import close_stores

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the remote-store variant of tests marked ``local_store``: that combination does not exist."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        remote = callspec is not None and callspec.params.get("url") == "remote"
        (dropped if remote and item.get_closest_marker("local_store") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own MATINEE_HOME (a real SQLite file and blob folder)."""
    home = tmp_path / "home"
    monkeypatch.setenv("MATINEE_HOME", str(home))
    monkeypatch.setenv("MATINEE_USER", "tester")
    for name in ("MATINEE_METADATA_URL", "MATINEE_BLOB_URL", "MATINEE_ARTIFACT_URL", "MATINEE_EXECUTOR",
                 "MATINEE_NAMESPACE", "MATINEE_TRACKING_URI", "MATINEE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    close_stores()
    client.default_namespace()
    yield home
    close_stores()
    client.default_namespace()


FlowRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def write_flow(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write flow source (dedented) to ``tmp_path/<name>`` and return its path."""

    def write(source: str, name: str = "flow.py") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source))
        return path

    return write


@pytest.fixture
def run_flow(tmp_path: Path) -> FlowRunner:
    """Run ``python <flow file> <args...>`` in a real process; returns the completed process."""

    def run(path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            [sys.executable, str(path), *args],
            cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=timeout,
        )

    return run


@pytest.fixture
def load_flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., type]:
    """Write flow source to a real module file (the graph is read from source), import it,
    and return its class ``cls`` (default ``F``)."""

    def load(source: str, cls: str = "F") -> type:
        name = f"flows_{uuid.uuid4().hex[:10]}"
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return getattr(module, cls)  # type: ignore[no-any-return]

    return load
