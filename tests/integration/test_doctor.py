"""``matinee doctor``: the configuration in force, masked, and a check per backend."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from matinee.cli.doctor import mask_url


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "matinee.cli.main", "doctor", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_a_fresh_home_passes_every_check(home: Path) -> None:
    result = doctor("--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses == {"metadata store": "ok", "artifact store": "ok", "ray": "skip", "event log": "ok"}
    assert report["config"]["home"] == str(home)
    assert report["config"]["metadata_url"] == f"sqlite:///{home / 'matinee.db'}"
    table = doctor()
    assert table.returncode == 0 and "Backends" in table.stdout and "metadata store" in table.stdout


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the socket closes


def test_failures_are_named_and_exit_1_while_the_rest_is_still_checked(home: Path, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    port = _closed_port()
    env = {"MATINEE_BLOB_URL": str(not_a_folder / "blobs"), "MATINEE_EXECUTOR": "ray",
           "MATINEE_RAY_ADDRESS": f"ray://127.0.0.1:{port}"}
    result = doctor("--json", env=env)
    assert result.returncode == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["metadata store"]["status"] == "ok"
    assert checks["artifact store"]["status"] == "fail"
    assert checks["ray"]["status"] == "fail"
    assert f"127.0.0.1:{port}" in checks["ray"]["detail"] and "ray_address" in checks["ray"]["detail"]
    text = doctor(env=env)
    assert text.returncode == 1
    assert text.stderr.count("\n") == 1 and "2 check(s) failed" in text.stderr


def test_secrets_are_masked_in_the_output(home: Path) -> None:
    port = _closed_port()
    url = f"postgresql://ana:hunter2@127.0.0.1:{port}/matinee"
    result = doctor("--json", env={"MATINEE_METADATA_URL": url})
    assert "hunter2" not in result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["config"]["metadata_url"] == f"postgresql://ana:***@127.0.0.1:{port}/matinee"
    if report["config"]["packages"]["psycopg"] is not None:  # with the driver, the server is really tried
        assert result.returncode == 1
        assert {c["name"]: c["status"] for c in report["checks"]}["metadata store"] == "fail"


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://ana:pw@db:5432/m", "postgresql://ana:***@db:5432/m"),
    ("postgresql://ana@db/m", "postgresql://ana@db/m"),
    ("s3://b/p?secret_key=abc&region=x", "s3://b/p?secret_key=***&region=x"),
    ("sqlite:////tmp/m.db", "sqlite:////tmp/m.db"),
    ("/local/path", "/local/path"),
])
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
