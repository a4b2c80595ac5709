"""Helpers for tests that run ``matinee server`` as a real process over a seeded store.

Everything talks to 127.0.0.1 only. :func:`seed` fills a MATINEE_HOME with a
run (a task, an artifact, metrics), a registered model with an alias, and
tokens; :class:`WebServer` starts ``matinee server --port 0`` on it and reads
the URL from its first line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from matinee.core.artifacts.store import ArtifactStore
from matinee.core.storage.blobs import open_blob_store
from matinee.core.storage.metadata import MetadataStore
from matinee.web.auth import create_token

MODEL = "matrix-model"
ALIAS = "champion"
FLOW = "MatrixFlow"


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MATINEE_TRACKING_URI", "MATINEE_TOKEN",
                                                            "MATINEE_METADATA_URL", "MATINEE_BLOB_URL",
                                                            "MATINEE_ARTIFACT_URL")}
    return {**env, "MATINEE_HOME": str(home), "MATINEE_USER": "tester"}


def cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``matinee ARGS`` in its own process over ``home``."""
    done = subprocess.run([sys.executable, "-m", "matinee.cli.main", *args], env=env_for(home),
                          capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"matinee {' '.join(args)} failed: {done.stdout}\n{done.stderr}")
    return done


def audit_rows(home: Path, limit: int = 10_000) -> list[dict[str, Any]]:
    """The audit log as ``matinee audit --json`` prints it."""
    rows = json.loads(cli(home, "audit", "--json", "--limit", str(limit)).stdout)
    assert isinstance(rows, list)
    return rows


@dataclass
class Seeded:
    """What :func:`seed` put in the store: ids for path parameters and tokens by role."""

    home: Path
    run_id: int
    task_id: int
    artifact: str
    blob_key: str
    blob_bytes: bytes
    model: str = MODEL
    alias: str = ALIAS
    tokens: dict[str, str] = field(default_factory=dict)
    token_ids: dict[str, str] = field(default_factory=dict)


def seed(home: Path, *, tokens: bool = True, tags: tuple[str, ...] = ("nightly",),
         params: dict[str, Any] | None = None, description: str | None = None,
         model_tags: str | None = None) -> Seeded:
    """Fill ``home`` with one finished run (a task, an artifact, metrics), a model with two versions and
    an alias, and (with ``tokens``) a reader, a writer, an admin, a revoked admin and a spare token."""
    home.mkdir(parents=True, exist_ok=True)
    meta = MetadataStore.open(f"sqlite:///{home / 'matinee.db'}")
    artifacts = ArtifactStore(open_blob_store(str(home / "blobs")))
    try:
        run_id = meta.create_run(FLOW, "tester", tags=list(tags), params=params or {"lr": 0.1, "depth": 3})
        task_id = meta.create_task(run_id, "start")
        meta.start_attempt(task_id, 0)
        ref = artifacts.save({"weights": [1, 2, 3]})
        meta.finish_attempt(task_id, 0, "completed")
        meta.finish_task(task_id, "completed", artifacts={"model": ref})
        now = time.time()
        meta.log_metrics([(run_id, task_id, "auc", step, 0.5 + step / 10, now + step) for step in range(3)])
        meta.finish_run(run_id, "completed")
        fields = {"run_id": run_id, "task_id": task_id, "artifact_name": "model", "artifact_key": ref.key,
                  "codec": ref.codec, "size": ref.size, "description": description, "tags": model_tags}
        meta.add_model_version(MODEL, fields)
        meta.add_model_version(MODEL, fields)
        meta.move_alias(MODEL, ALIAS, 1, "set", "tester")
        meta.move_alias(MODEL, "challenger", 2, "set", "tester")
        blob = artifacts.save_bytes(b"the blob's own bytes")
        seeded = Seeded(home, run_id, task_id, "model", blob.key, b"the blob's own bytes")
        if tokens:
            for role in ("reader", "writer", "admin"):
                token, row = create_token(meta, role, role, "tester")
                seeded.tokens[role], seeded.token_ids[role] = token, row["id"]
            token, row = create_token(meta, "revoked", "admin", "tester")
            meta.revoke_token("revoked")
            seeded.tokens["revoked"], seeded.token_ids["revoked"] = token, row["id"]
            token, row = create_token(meta, "spare", "reader", "tester")
            seeded.tokens["spare"], seeded.token_ids["spare"] = token, row["id"]
            # right format and a real id, wrong secret; and garbage
            seeded.tokens["forged"] = f"mt_{seeded.token_ids['admin']}_{'A' * 43}"
            seeded.tokens["garbage"] = "not-a-token"
    finally:
        meta.close()
    return seeded


class WebServer:
    """``matinee server --host 127.0.0.1 --port 0`` over ``home``; the URL comes from its first line."""

    def __init__(self, home: Path, *args: str) -> None:
        self.home = home
        self.args = list(args)
        self.url = ""
        self.first_line = ""
        self.log_path = home.parent / f"server-{home.name}.log"
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> WebServer:
        command = [sys.executable, "-m", "matinee.cli.main", "server", "--host", "127.0.0.1", "--port", "0",
                   *self.args]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(command, env=env_for(self.home), stdout=subprocess.PIPE,
                                            stderr=log, text=True)
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.process.stdout.readline()
        if not line.startswith("matinee server: serving http://127.0.0.1:"):
            self.stop()
            raise AssertionError(f"unexpected first line {line!r}; log:\n{self.log()}")
        self.first_line = line.strip()
        self.url = line.split()[3]
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"server at {self.url} never answered; log:\n{self.log()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None
