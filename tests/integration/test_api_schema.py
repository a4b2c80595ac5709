"""Schemathesis against the served OpenAPI document: no request it generates gets a 5xx.

A real ``matinee server`` with an admin token (so every operation is reachable),
seeded with a run, tasks, metrics, a blob, a model with an alias and a few
events, so generated ids and names land on real rows as well as missing ones.
Every operation is fuzzed with valid (positive) and invalid (negative) requests,
derandomized and bounded, and checked with ``not_a_server_error``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from _web_server import create_token, matinee_server, server_env
from matinee.core.artifacts.store import ArtifactStore
from matinee.core.storage.remote import Client, RemoteBlobStore, RemoteMetadataStore

EXAMPLES = 12  # per operation and mode: ~51 operations x 2 modes in ~20 s on two cores
ADMIN = "schema-admin-4f1c9e"  # a name generated token names will not revoke by accident


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    home = tmp_path_factory.mktemp("schema") / "home"
    env = server_env(home)
    token = create_token(env, ADMIN, "admin")
    with matinee_server(env) as url:
        seed(Client(url, token), home)
        yield url, token


def seed(client: Client, home: Path) -> None:
    meta = RemoteMetadataStore(client)
    ref = ArtifactStore(RemoteBlobStore(client)).save({"weights": [1, 2, 3]})
    run_id = meta.create_run("F", "u", tags=["t"], params={"p": 1})
    task_id = meta.create_task(run_id, "start")
    meta.start_attempt(task_id, 0)
    meta.finish_attempt(task_id, 0, "completed")
    meta.finish_task(task_id, "completed", artifacts={"model": ref})
    meta.log_metrics([(run_id, task_id, "loss", i, 1.0 / (i + 1), time.time()) for i in range(5)])
    version = meta.add_model_version("m", {"run_id": run_id, "task_id": task_id, "artifact_key": ref.key})
    meta.move_alias("m", "prod", version, "set", "u")

    from matinee.core.events import EventLog

    with EventLog(home / "events" / "events.db") as log:
        log.append_decision({"decision_id": "d1", "unit_id": "u1", "endpoint": "recs", "model": "m", "arm": "a",
                             "context": [0.1], "candidates": [0, 1], "action": 1, "propensity": 0.5})
        log.append_feedback({"decision_id": "d1", "event": "play", "reward": 1.0})


def test_no_generated_request_gets_a_server_error(served: tuple[str, str]) -> None:
    url, token = served
    schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[Any] = []
    calls = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 50
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: Any) -> None:
                nonlocal calls
                calls += 1
                response = case.call(base_url=f"{url}/api/v1", headers=headers, timeout=30)
                try:
                    case.validate_response(response, checks=[not_a_server_error])
                except Exception as exc:  # noqa: BLE001 -- gathered, reported together below
                    failures.append((case.method, case.path, response.status_code, response.text[:300],
                                     str(exc)[:300]))

            try:
                call()
            except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
                assert mode is GenerationMode.NEGATIVE, (operation.method, operation.path)
    assert calls > 500
    assert not failures, "\n".join(map(str, failures[:20]))
    assert Client(url, token).call("GET", "health")["status"] == "ok"  # the server is still up
