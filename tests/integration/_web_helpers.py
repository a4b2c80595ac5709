"""Helpers for tests that run ``matinee server`` as a real process over a seeded store.

Everything talks to 127.0.0.1 only. :func:`seed` fills a MATINEE_HOME with a
run (a task, an artifact, metrics), a registered model with an alias, and
tokens; :class:`WebServer` starts ``matinee server --port 0`` on it and reads
the URL from its first line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _web_server
from matinee.core.artifacts.store import ArtifactStore
from matinee.core.storage.blobs import open_blob_store
from matinee.core.storage.metadata import MetadataStore
from matinee.web.auth import create_token

MODEL = "matrix-model"
ALIAS = "champion"
FLOW = "MatrixFlow"


def env_for(home: Path) -> dict[str, str]:
    return _web_server.server_env(home)


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


class WebServer(_web_server.WebServer):
    """``matinee server --host 127.0.0.1 --port 0`` over ``home``, its log beside it."""

    def __init__(self, home: Path, *args: str) -> None:
        super().__init__(env_for(home), *args, log_path=home.parent / f"server-{home.name}.log")
        self.home = home
